//! The store against a simple in-memory model of a POSIX file system, over
//! random operation sequences on one file system, by root and two ordinary
//! users. Every result (success, or the kind of error) is compared with
//! the model's prediction; at the end the whole tree is compared, fsck must
//! find nothing, and a reopened store must hold the identical state.

use std::collections::BTreeMap;

use crate::common::*;
use proptest::prelude::*;
#[allow(clippy::useless_attribute)]
use std::result::Result;
use tandem_store::fsck::{check_state, FsckReport};
use tandem_store::*;

const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];
/// Random paths use only the first few names, so that they collide often.
const RANDOM_NAMES: usize = 3;
const MODES: [u32; 11] = [
    0o755, 0o700, 0o644, 0o600, 0o777, 0o1777, 0o2775, 0o000, 0o711, 0o6755, 0o070,
];

fn creds() -> [Cred; 3] {
    [
        Cred::root(),
        user(1000, 1000, &[]),
        user(1001, 1001, &[1000]),
    ]
}

type R<T> = Result<T, &'static str>;

const R_OK: u32 = 4;
const W_OK: u32 = 2;
const X_OK: u32 = 1;

#[derive(Debug, Clone)]
enum Kind {
    File {
        data: Vec<u8>,
        verf: Option<[u8; 8]>,
    },
    Dir {
        entries: BTreeMap<Vec<u8>, Ino>,
        parent: Ino,
    },
    Symlink(Vec<u8>),
    Fifo,
}

#[derive(Debug, Clone)]
struct MNode {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl MNode {
    fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir { .. })
    }
    fn ftype(&self) -> FileType {
        match self.kind {
            Kind::File { .. } => FileType::Regular,
            Kind::Dir { .. } => FileType::Directory,
            Kind::Symlink(_) => FileType::Symlink,
            Kind::Fifo => FileType::Fifo,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum How {
    Unchecked { truncate: bool },
    Guarded,
    Exclusive(u8),
}

struct Model {
    nodes: BTreeMap<Ino, MNode>,
    root: Ino,
}

fn in_group(c: &Cred, gid: u32) -> bool {
    c.gid == gid || c.gids.contains(&gid)
}

/// POSIX mode-bit permissions; root may read and write anything and
/// execute what anyone may execute (directories are always searchable).
fn granted(c: &Cred, n: &MNode) -> u32 {
    if c.uid == 0 {
        let x = if n.mode & 0o111 != 0 || n.is_dir() {
            X_OK
        } else {
            0
        };
        return R_OK | W_OK | x;
    }
    let bits = if c.uid == n.uid {
        n.mode >> 6
    } else if in_group(c, n.gid) {
        n.mode >> 3
    } else {
        n.mode
    };
    bits & 7
}

fn need(c: &Cred, n: &MNode, want: u32) -> R<()> {
    if granted(c, n) & want == want {
        Ok(())
    } else {
        Err("Access")
    }
}

/// File data: its owner may always (NFS has no open).
fn need_data(c: &Cred, n: &MNode, want: u32) -> R<()> {
    if c.uid == n.uid && matches!(n.kind, Kind::File { .. }) {
        return Ok(());
    }
    need(c, n, want)
}

fn sticky_ok(c: &Cred, dir: &MNode, victim: &MNode) -> R<()> {
    if dir.mode & S_ISVTX == 0 || c.uid == 0 || c.uid == dir.uid || c.uid == victim.uid {
        Ok(())
    } else {
        Err("Access")
    }
}

impl Model {
    fn new(root: Ino) -> Model {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            root,
            MNode {
                kind: Kind::Dir {
                    entries: BTreeMap::new(),
                    parent: root,
                },
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        );
        Model { nodes, root }
    }

    fn node(&self, ino: Ino) -> &MNode {
        &self.nodes[&ino]
    }

    fn entries(&self, dir: Ino) -> R<&BTreeMap<Vec<u8>, Ino>> {
        match &self.node(dir).kind {
            Kind::Dir { entries, .. } => Ok(entries),
            _ => Err("NotDir"),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> &mut BTreeMap<Vec<u8>, Ino> {
        match &mut self.nodes.get_mut(&dir).unwrap().kind {
            Kind::Dir { entries, .. } => entries,
            _ => unreachable!(),
        }
    }

    fn lookup(&self, c: &Cred, dir: Ino, name: &[u8]) -> R<Ino> {
        let entries = self.entries(dir)?;
        need(c, self.node(dir), X_OK)?;
        entries.get(name).copied().ok_or("NoEnt")
    }

    fn links(&self, ino: Ino) -> u32 {
        self.nodes
            .values()
            .filter_map(|n| match &n.kind {
                Kind::Dir { entries, .. } => {
                    Some(entries.values().filter(|&&i| i == ino).count() as u32)
                }
                _ => None,
            })
            .sum()
    }

    fn nlink(&self, ino: Ino) -> u32 {
        match &self.node(ino).kind {
            Kind::Dir { entries, .. } => {
                2 + entries.values().filter(|i| self.node(**i).is_dir()).count() as u32
            }
            _ => self.links(ino),
        }
    }

    /// Drops `ino` if no entry names it any more.
    fn collect(&mut self, ino: Ino) {
        if self.node(ino).is_dir() || self.links(ino) == 0 {
            self.nodes.remove(&ino);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_node(
        &mut self,
        c: &Cred,
        dir: Ino,
        name: &[u8],
        kind: Kind,
        default_mode: u32,
        mode: Option<u32>,
        ino: Ino,
    ) -> R<()> {
        let entries = self.entries(dir)?;
        let p = self.node(dir);
        need(c, p, W_OK | X_OK)?;
        if entries.contains_key(name) {
            return Err("Exist");
        }
        let setgid_dir = p.mode & S_ISGID != 0;
        let gid = if setgid_dir { p.gid } else { c.gid };
        let mut mode = mode.unwrap_or(default_mode) & 0o7777;
        let is_dir = matches!(kind, Kind::Dir { .. });
        if is_dir && setgid_dir {
            mode |= S_ISGID;
        } else if c.uid != 0 && !in_group(c, gid) {
            mode &= !S_ISGID;
        }
        self.entries_mut(dir).insert(name.to_vec(), ino);
        self.nodes.insert(
            ino,
            MNode {
                kind,
                mode,
                uid: c.uid,
                gid,
            },
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        c: &Cred,
        dir: Ino,
        name: &[u8],
        how: How,
        mode: Option<u32>,
        ino: Ino,
    ) -> R<()> {
        if let Some(&existing) = self.entries(dir)?.get(name) {
            let n = self.node(existing);
            return match (how, &n.kind) {
                (How::Guarded, _) => Err("Exist"),
                (How::Exclusive(v), Kind::File { verf, .. }) if *verf == Some([v; 8]) => Ok(()),
                (How::Exclusive(_), _) => Err("Exist"),
                (How::Unchecked { truncate }, Kind::File { .. }) => {
                    if truncate {
                        need_data(c, n, W_OK)?;
                        if let Kind::File { data, .. } =
                            &mut self.nodes.get_mut(&existing).unwrap().kind
                        {
                            data.clear();
                        }
                    }
                    Ok(())
                }
                (How::Unchecked { .. }, _) => Err("Exist"),
            };
        }
        let verf = match how {
            How::Exclusive(v) => Some([v; 8]),
            _ => None,
        };
        self.new_node(
            c,
            dir,
            name,
            Kind::File {
                data: Vec::new(),
                verf,
            },
            0o644,
            mode,
            ino,
        )
    }

    fn data_target(&self, c: &Cred, ino: Ino, want: u32) -> R<()> {
        let n = self.node(ino);
        match n.kind {
            Kind::File { .. } => {}
            Kind::Dir { .. } => return Err("IsDir"),
            _ => return Err("Inval"),
        }
        need_data(c, n, want)
    }

    fn file_data(&mut self, ino: Ino) -> &mut Vec<u8> {
        match &mut self.nodes.get_mut(&ino).unwrap().kind {
            Kind::File { data, .. } => data,
            _ => unreachable!(),
        }
    }

    fn write(&mut self, c: &Cred, ino: Ino, offset: u64, bytes: &[u8]) -> R<()> {
        self.data_target(c, ino, W_OK)?;
        let data = self.file_data(ino);
        let end = offset as usize + bytes.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[offset as usize..end].copy_from_slice(bytes);
        if c.uid != 0 {
            let n = self.nodes.get_mut(&ino).unwrap();
            n.mode &= !S_ISUID;
            if n.mode & 0o010 != 0 {
                n.mode &= !S_ISGID;
            }
        }
        Ok(())
    }

    fn truncate(&mut self, c: &Cred, ino: Ino, size: u64) -> R<()> {
        self.data_target(c, ino, W_OK)?;
        self.file_data(ino).resize(size as usize, 0);
        Ok(())
    }

    fn read(&self, c: &Cred, ino: Ino, offset: u64, count: u32) -> R<(Vec<u8>, bool)> {
        self.data_target(c, ino, R_OK)?;
        let Kind::File { data, .. } = &self.node(ino).kind else {
            unreachable!()
        };
        let start = (offset as usize).min(data.len());
        let end = (start + count as usize).min(data.len());
        Ok((data[start..end].to_vec(), end >= data.len()))
    }

    fn chmod(&mut self, c: &Cred, ino: Ino, mode: u32) -> R<()> {
        let n = self.nodes.get_mut(&ino).unwrap();
        if c.uid != 0 && c.uid != n.uid {
            return Err("Perm");
        }
        n.mode = mode & 0o7777;
        if c.uid != 0 && !in_group(c, n.gid) {
            n.mode &= !S_ISGID;
        }
        Ok(())
    }

    fn unlink(&mut self, c: &Cred, dir: Ino, name: &[u8], want_dir: bool) -> R<()> {
        let victim = *self.entries(dir)?.get(name).ok_or("NoEnt")?;
        let v = self.node(victim);
        match (&v.kind, want_dir) {
            (Kind::Dir { entries, .. }, true) if !entries.is_empty() => return Err("NotEmpty"),
            (Kind::Dir { .. }, true) => {}
            (Kind::Dir { .. }, false) => return Err("IsDir"),
            (_, true) => return Err("NotDir"),
            (_, false) => {}
        }
        let p = self.node(dir);
        need(c, p, W_OK | X_OK)?;
        sticky_ok(c, p, v)?;
        self.entries_mut(dir).remove(name);
        self.collect(victim);
        Ok(())
    }

    fn is_within(&self, mut dir: Ino, ancestor: Ino) -> bool {
        loop {
            if dir == ancestor {
                return true;
            }
            let Kind::Dir { parent, .. } = self.node(dir).kind else {
                unreachable!()
            };
            if parent == dir {
                return false;
            }
            dir = parent;
        }
    }

    fn rename(&mut self, c: &Cred, fd: Ino, fname: &[u8], td: Ino, tname: &[u8]) -> R<()> {
        self.entries(fd)?;
        self.entries(td)?;
        let moved = *self.entries(fd)?.get(fname).ok_or("NoEnt")?;
        let m = self.node(moved);
        need(c, self.node(fd), W_OK | X_OK)?;
        need(c, self.node(td), W_OK | X_OK)?;
        sticky_ok(c, self.node(fd), m)?;
        let victim = self.entries(td)?.get(tname).copied();
        if let Some(v) = victim {
            if v == moved {
                return Ok(());
            }
            let vn = self.node(v);
            match (&vn.kind, m.is_dir()) {
                (Kind::Dir { entries, .. }, true) if !entries.is_empty() => return Err("NotEmpty"),
                (Kind::Dir { .. }, true) => {}
                (Kind::Dir { .. }, false) => return Err("IsDir"),
                (_, true) => return Err("NotDir"),
                (_, false) => {}
            }
            sticky_ok(c, self.node(td), vn)?;
        }
        if m.is_dir() && fd != td {
            need(c, m, W_OK)?;
            if self.is_within(td, moved) {
                return Err("Inval");
            }
        }
        self.entries_mut(fd).remove(fname);
        if let Some(v) = victim {
            self.entries_mut(td).remove(tname);
            self.collect(v);
        }
        self.entries_mut(td).insert(tname.to_vec(), moved);
        if let Kind::Dir { parent, .. } = &mut self.nodes.get_mut(&moved).unwrap().kind {
            *parent = td;
        }
        Ok(())
    }

    fn link(&mut self, c: &Cred, ino: Ino, dir: Ino, name: &[u8]) -> R<()> {
        let entries = self.entries(dir)?;
        if self.node(ino).is_dir() {
            return Err("IsDir");
        }
        need(c, self.node(dir), W_OK | X_OK)?;
        if entries.contains_key(name) {
            return Err("Exist");
        }
        self.entries_mut(dir).insert(name.to_vec(), ino);
        Ok(())
    }

    fn tree(&self) -> BTreeMap<String, NodeDesc> {
        let mut out = BTreeMap::new();
        self.walk(self.root, String::new(), &mut out);
        out
    }

    fn walk(&self, dir: Ino, prefix: String, out: &mut BTreeMap<String, NodeDesc>) {
        let Ok(entries) = self.entries(dir) else {
            return;
        };
        for (name, &ino) in entries {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(name));
            let n = self.node(ino);
            let (size, bytes) = match &n.kind {
                Kind::File { data, .. } => (data.len() as u64, data.clone()),
                Kind::Symlink(t) => (t.len() as u64, t.clone()),
                _ => (0, Vec::new()),
            };
            out.insert(
                path.clone(),
                NodeDesc {
                    ino,
                    ftype: n.ftype(),
                    mode: n.mode,
                    uid: n.uid,
                    gid: n.gid,
                    nlink: self.nlink(ino),
                    size,
                    bytes,
                },
            );
            self.walk(ino, path, out);
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Create {
        cred: usize,
        path: Vec<usize>,
        how: How,
        mode: Option<u32>,
    },
    Mkdir {
        cred: usize,
        path: Vec<usize>,
        mode: Option<u32>,
    },
    Symlink {
        cred: usize,
        path: Vec<usize>,
        target: usize,
    },
    Mknod {
        cred: usize,
        path: Vec<usize>,
    },
    Write {
        cred: usize,
        path: Vec<usize>,
        offset: u64,
        data: Vec<u8>,
    },
    Truncate {
        cred: usize,
        path: Vec<usize>,
        size: u64,
    },
    Chmod {
        cred: usize,
        path: Vec<usize>,
        mode: u32,
    },
    Remove {
        cred: usize,
        path: Vec<usize>,
    },
    Rmdir {
        cred: usize,
        path: Vec<usize>,
    },
    Rename {
        cred: usize,
        from: Vec<usize>,
        to: Vec<usize>,
    },
    Link {
        cred: usize,
        target: Vec<usize>,
        path: Vec<usize>,
    },
    Lookup {
        cred: usize,
        path: Vec<usize>,
    },
    Read {
        cred: usize,
        path: Vec<usize>,
        offset: u64,
        count: u32,
    },
}

fn path_s() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        4 => prop::collection::vec(0..RANDOM_NAMES, 1..=1),
        4 => prop::collection::vec(0..RANDOM_NAMES, 2..=2),
        1 => prop::collection::vec(0..RANDOM_NAMES, 3..=3),
    ]
}

fn mode_s() -> impl Strategy<Value = u32> {
    (0..MODES.len()).prop_map(|i| MODES[i])
}

fn offset_s() -> impl Strategy<Value = u64> {
    prop_oneof![0..64u64, 0..(64u64 << 10)]
}

fn step_s(creds: usize) -> impl Strategy<Value = Step> {
    let cred = 0..creds;
    let how = prop_oneof![
        any::<bool>().prop_map(|truncate| How::Unchecked { truncate }),
        Just(How::Guarded),
        (0..2u8).prop_map(How::Exclusive),
    ];
    prop_oneof![
        4 => (cred.clone(), path_s(), how, prop::option::of(mode_s()))
            .prop_map(|(cred, path, how, mode)| Step::Create { cred, path, how, mode }),
        4 => (cred.clone(), path_s(), prop::option::of(mode_s()))
            .prop_map(|(cred, path, mode)| Step::Mkdir { cred, path, mode }),
        1 => (cred.clone(), path_s(), 0..3usize)
            .prop_map(|(cred, path, target)| Step::Symlink { cred, path, target }),
        1 => (cred.clone(), path_s()).prop_map(|(cred, path)| Step::Mknod { cred, path }),
        4 => (cred.clone(), path_s(), offset_s(), prop::collection::vec(any::<u8>(), 1..48))
            .prop_map(|(cred, path, offset, data)| Step::Write { cred, path, offset, data }),
        2 => (cred.clone(), path_s(), prop_oneof![0..16u64, 0..(70u64 << 10)])
            .prop_map(|(cred, path, size)| Step::Truncate { cred, path, size }),
        2 => (cred.clone(), path_s(), mode_s())
            .prop_map(|(cred, path, mode)| Step::Chmod { cred, path, mode }),
        2 => (cred.clone(), path_s()).prop_map(|(cred, path)| Step::Remove { cred, path }),
        2 => (cred.clone(), path_s()).prop_map(|(cred, path)| Step::Rmdir { cred, path }),
        4 => (cred.clone(), path_s(), path_s())
            .prop_map(|(cred, from, to)| Step::Rename { cred, from, to }),
        4 => (cred.clone(), path_s(), path_s())
            .prop_map(|(cred, target, path)| Step::Link { cred, target, path }),
        1 => (cred.clone(), path_s()).prop_map(|(cred, path)| Step::Lookup { cred, path }),
        2 => (cred, path_s(), offset_s(), 1..(8u32 << 10))
            .prop_map(|(cred, path, offset, count)| Step::Read { cred, path, offset, count }),
    ]
}

struct Harness {
    store: Store,
    model: Model,
    root: Ino,
    creds: [Cred; 3],
}

fn name(i: usize) -> &'static [u8] {
    NAMES[i]
}

/// Both sides agree on Ok/Err-kind, or the test fails.
fn agree<T, U>(
    what: &str,
    s: Result<T, StoreError>,
    m: R<U>,
) -> Result<Option<(T, U)>, TestCaseError>
where
    T: std::fmt::Debug,
    U: std::fmt::Debug,
{
    match (s, m) {
        (Ok(s), Ok(m)) => Ok(Some((s, m))),
        (Err(e), Err(k)) if kind(&e) == k => Ok(None),
        (s, m) => Err(TestCaseError::fail(format!(
            "{what}: store gave {s:?}, model expects {m:?}"
        ))),
    }
}

impl Harness {
    /// Walks `path` (all components) on both sides with lookups.
    fn resolve(&self, cred: &Cred, path: &[usize]) -> Result<Option<Ino>, TestCaseError> {
        let (mut s, mut m) = (self.root, self.root);
        for &i in path {
            let sr = self.store.lookup(cred, s, name(i)).map(|a| a.ino);
            let mr = self.model.lookup(cred, m, name(i));
            match agree(&format!("lookup {:?}", path), sr, mr)? {
                Some((si, mi)) => {
                    prop_assert_eq!(si, mi, "lookup {:?} found different inodes", path);
                    s = si;
                    m = mi;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(s))
    }

    /// Resolves the parent of `path`; returns it with the last name.
    fn parent(
        &self,
        cred: &Cred,
        path: &[usize],
    ) -> Result<Option<(Ino, &'static [u8])>, TestCaseError> {
        let (last, dirs) = path.split_last().expect("non-empty path");
        Ok(self.resolve(cred, dirs)?.map(|d| (d, name(*last))))
    }

    fn next_ino(&self) -> Ino {
        self.store.snapshot().next_ino
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let what = format!("{step:?}");
        match step {
            Step::Create {
                cred,
                path,
                how,
                mode,
            } => {
                let c = &self.creds[*cred].clone();
                let Some((dir, nm)) = self.parent(c, path)? else {
                    return Ok(());
                };
                let (store_how, size) = match *how {
                    How::Unchecked { truncate } => (CreateHow::Unchecked, truncate.then_some(0)),
                    How::Guarded => (CreateHow::Guarded, None),
                    How::Exclusive(v) => (CreateHow::Exclusive([v; 8]), None),
                };
                let set = SetAttr {
                    mode: *mode,
                    size,
                    ..SetAttr::default()
                };
                let ino = self.next_ino();
                let ctx = OpCtx::new(c.clone());
                let s = self.store.create(&ctx, dir, nm, store_how, &set);
                let m = self.model.create(c, dir, nm, *how, *mode, ino);
                agree(&what, s, m)?;
            }
            Step::Mkdir { cred, path, mode } => {
                let c = &self.creds[*cred].clone();
                let Some((dir, nm)) = self.parent(c, path)? else {
                    return Ok(());
                };
                let set = SetAttr {
                    mode: *mode,
                    ..SetAttr::default()
                };
                let ino = self.next_ino();
                let s = self.store.mkdir(&OpCtx::new(c.clone()), dir, nm, &set);
                let kind = Kind::Dir {
                    entries: BTreeMap::new(),
                    parent: dir,
                };
                let m = self.model.new_node(c, dir, nm, kind, 0o755, *mode, ino);
                agree(&what, s, m)?;
            }
            Step::Symlink { cred, path, target } => {
                let c = &self.creds[*cred].clone();
                let Some((dir, nm)) = self.parent(c, path)? else {
                    return Ok(());
                };
                let target = ["a", "../b/c", "/x/y/z"][*target].as_bytes();
                let ino = self.next_ino();
                let s = self.store.symlink(
                    &OpCtx::new(c.clone()),
                    dir,
                    nm,
                    target,
                    &SetAttr::default(),
                );
                let kind = Kind::Symlink(target.to_vec());
                let m = self.model.new_node(c, dir, nm, kind, 0o777, None, ino);
                agree(&what, s, m)?;
            }
            Step::Mknod { cred, path } => {
                let c = &self.creds[*cred].clone();
                let Some((dir, nm)) = self.parent(c, path)? else {
                    return Ok(());
                };
                let ino = self.next_ino();
                let s = self.store.mknod(
                    &OpCtx::new(c.clone()),
                    dir,
                    nm,
                    NodeKind::Fifo,
                    &SetAttr::default(),
                );
                let m = self
                    .model
                    .new_node(c, dir, nm, Kind::Fifo, 0o644, None, ino);
                agree(&what, s, m)?;
            }
            Step::Write {
                cred,
                path,
                offset,
                data,
            } => {
                let c = &self.creds[*cred].clone();
                let Some(ino) = self.resolve(c, path)? else {
                    return Ok(());
                };
                let s = self.store.write(&OpCtx::new(c.clone()), ino, *offset, data);
                let m = self.model.write(c, ino, *offset, data);
                if let Some((s, ())) = agree(&what, s, m)? {
                    prop_assert_eq!(s.value.size, self.model_size(ino), "{}", what);
                }
            }
            Step::Truncate { cred, path, size } => {
                let c = &self.creds[*cred].clone();
                let Some(ino) = self.resolve(c, path)? else {
                    return Ok(());
                };
                let set = SetAttr {
                    size: Some(*size),
                    ..SetAttr::default()
                };
                let s = self.store.setattr(&OpCtx::new(c.clone()), ino, &set, None);
                let m = self.model.truncate(c, ino, *size);
                agree(&what, s, m)?;
            }
            Step::Chmod { cred, path, mode } => {
                let c = &self.creds[*cred].clone();
                let Some(ino) = self.resolve(c, path)? else {
                    return Ok(());
                };
                let set = SetAttr {
                    mode: Some(*mode),
                    ..SetAttr::default()
                };
                let s = self.store.setattr(&OpCtx::new(c.clone()), ino, &set, None);
                let m = self.model.chmod(c, ino, *mode);
                if let Some((s, ())) = agree(&what, s, m)? {
                    prop_assert_eq!(s.value.mode, self.model.node(ino).mode, "{}", what);
                }
            }
            Step::Remove { cred, path } | Step::Rmdir { cred, path } => {
                let want_dir = matches!(step, Step::Rmdir { .. });
                let c = &self.creds[*cred].clone();
                let Some((dir, nm)) = self.parent(c, path)? else {
                    return Ok(());
                };
                let ctx = OpCtx::new(c.clone());
                let s = if want_dir {
                    self.store.rmdir(&ctx, dir, nm)
                } else {
                    self.store.remove(&ctx, dir, nm)
                };
                let m = self.model.unlink(c, dir, nm, want_dir);
                agree(&what, s, m)?;
            }
            Step::Rename { cred, from, to } => {
                let c = &self.creds[*cred].clone();
                let Some((fd, fname)) = self.parent(c, from)? else {
                    return Ok(());
                };
                let Some((td, tname)) = self.parent(c, to)? else {
                    return Ok(());
                };
                let s = self
                    .store
                    .rename(&OpCtx::new(c.clone()), fd, fname, td, tname);
                let m = self.model.rename(c, fd, fname, td, tname);
                agree(&what, s, m)?;
            }
            Step::Link { cred, target, path } => {
                let c = &self.creds[*cred].clone();
                let Some(ino) = self.resolve(c, target)? else {
                    return Ok(());
                };
                let Some((dir, nm)) = self.parent(c, path)? else {
                    return Ok(());
                };
                let s = self.store.link(&OpCtx::new(c.clone()), ino, dir, nm);
                let m = self.model.link(c, ino, dir, nm);
                if let Some((s, ())) = agree(&what, s, m)? {
                    prop_assert_eq!(s.value.nlink, self.model.nlink(ino), "{}", what);
                }
            }
            Step::Lookup { cred, path } => {
                let c = &self.creds[*cred].clone();
                if let Some(ino) = self.resolve(c, path)? {
                    let attr = self.store.getattr(ino).expect("getattr");
                    prop_assert_eq!(attr.ftype, self.model.node(ino).ftype(), "{}", what);
                }
            }
            Step::Read {
                cred,
                path,
                offset,
                count,
            } => {
                let c = &self.creds[*cred].clone();
                let Some(ino) = self.resolve(c, path)? else {
                    return Ok(());
                };
                let s = self.store.read(c, ino, *offset, *count);
                let m = self.model.read(c, ino, *offset, *count);
                if let Some((s, (data, eof))) = agree(&what, s, m)? {
                    prop_assert_eq!(s.data, data, "{}", what);
                    prop_assert_eq!(s.eof, eof, "{}", what);
                }
            }
        }
        Ok(())
    }

    fn model_size(&self, ino: Ino) -> u64 {
        match &self.model.node(ino).kind {
            Kind::File { data, .. } => data.len() as u64,
            _ => 0,
        }
    }
}

fn run(steps: &[Step], n_creds: usize) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let (store, fs) = new_store(&dir, StoreOptions::default());
    let root = fs.root_ino;
    let mut h = Harness {
        store,
        model: Model::new(root),
        root,
        creds: creds(),
    };
    // Ordinary users need a place to work: a world-writable root.
    let open_root = SetAttr {
        mode: Some(0o777),
        ..SetAttr::default()
    };
    if n_creds > 1 {
        h.store
            .setattr(&OpCtx::new(Cred::root()), root, &open_root, None)
            .expect("chmod root");
        h.model
            .chmod(&Cred::root(), root, 0o777)
            .expect("model chmod");
    }
    for step in steps {
        h.step(step)?;
    }

    let tree = store_tree(&h.store, root);
    let expected = h.model.tree();
    prop_assert_eq!(&tree, &expected, "trees differ");
    let state = h.store.snapshot();
    prop_assert_eq!(state.inodes.len(), h.model.nodes.len(), "inode count");
    let mut report = FsckReport::default();
    check_state(&state, &mut report);
    prop_assert!(report.is_clean(), "fsck: {}", report);

    let contents = all_contents(&h.store);
    h.store.close().expect("close");
    drop(h.store);
    let reopened = Store::open(&dir, StoreOptions::default()).expect("reopen");
    prop_assert_eq!(&reopened.snapshot(), &state, "state after reopen");
    prop_assert_eq!(all_contents(&reopened), contents, "contents after reopen");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_as_root(steps in prop::collection::vec(step_s(1), 1..100)) {
        run(&steps, 1)?;
    }

    #[test]
    fn store_matches_model_with_users(steps in prop::collection::vec(step_s(3), 1..120)) {
        run(&steps, 3)?;
    }
}

/// A fixed sequence touching the corner cases the random one may miss:
/// a directory moved into its own subtree, renames over files and empty
/// directories, hard links across directories.
#[test]
fn fixed_sequence_matches_model() {
    use Step::*;
    let p = |v: &[usize]| v.to_vec();
    let steps = vec![
        Mkdir {
            cred: 0,
            path: p(&[0]),
            mode: None,
        },
        Mkdir {
            cred: 0,
            path: p(&[0, 1]),
            mode: None,
        },
        Mkdir {
            cred: 0,
            path: p(&[0, 1, 2]),
            mode: None,
        },
        Rename {
            cred: 0,
            from: p(&[0]),
            to: p(&[0, 1, 3]),
        },
        Rename {
            cred: 0,
            from: p(&[0, 1]),
            to: p(&[0, 1, 2, 3]),
        },
        Create {
            cred: 0,
            path: p(&[0, 3]),
            how: How::Guarded,
            mode: None,
        },
        Write {
            cred: 0,
            path: p(&[0, 3]),
            offset: 5,
            data: b"hello".to_vec(),
        },
        Link {
            cred: 0,
            target: p(&[0, 3]),
            path: p(&[0, 1, 3]),
        },
        Link {
            cred: 0,
            target: p(&[0, 3]),
            path: p(&[1]),
        },
        Create {
            cred: 0,
            path: p(&[2]),
            how: How::Exclusive(1),
            mode: None,
        },
        Create {
            cred: 0,
            path: p(&[2]),
            how: How::Exclusive(1),
            mode: None,
        },
        Create {
            cred: 0,
            path: p(&[2]),
            how: How::Exclusive(0),
            mode: None,
        },
        Rename {
            cred: 0,
            from: p(&[2]),
            to: p(&[1]),
        },
        Mkdir {
            cred: 0,
            path: p(&[3]),
            mode: None,
        },
        Rename {
            cred: 0,
            from: p(&[0, 1, 2]),
            to: p(&[3]),
        },
        Rename {
            cred: 0,
            from: p(&[0, 1]),
            to: p(&[3]),
        },
        Rename {
            cred: 0,
            from: p(&[1]),
            to: p(&[0]),
        },
        Rename {
            cred: 0,
            from: p(&[0, 1, 3]),
            to: p(&[0, 3]),
        },
        Rmdir {
            cred: 0,
            path: p(&[0]),
        },
        Remove {
            cred: 0,
            path: p(&[3]),
        },
        Rmdir {
            cred: 0,
            path: p(&[3]),
        },
        Truncate {
            cred: 0,
            path: p(&[0, 3]),
            size: 7,
        },
        Truncate {
            cred: 0,
            path: p(&[0, 3]),
            size: 70_000,
        },
        Read {
            cred: 0,
            path: p(&[0, 3]),
            offset: 0,
            count: 100,
        },
        Symlink {
            cred: 0,
            path: p(&[2]),
            target: 1,
        },
        Mknod {
            cred: 0,
            path: p(&[2, 0]),
        },
        Write {
            cred: 0,
            path: p(&[2]),
            offset: 0,
            data: b"x".to_vec(),
        },
    ];
    run(&steps, 1).unwrap();
}
