//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tandem_store::state::{Body, State};
use tandem_store::{
    CreateHow, Cred, Export, FileType, FsConfig, Ino, OpCtx, SetAttr, Store, StoreError,
    StoreOptions,
};

pub fn export(path: &str) -> Export {
    Export {
        path: path.to_string(),
        clients: Vec::new(),
        read_only: false,
        root_squash: false,
        anon_uid: 65534,
        anon_gid: 65534,
    }
}

/// A fresh store in `dir` holding one file system "fs1".
pub fn new_store(dir: &Path, opts: StoreOptions) -> (Store, FsConfig) {
    let store = Store::init(dir, "vs1", opts).expect("init store");
    let fs = store
        .create_fs("fs1", export("/fs1"))
        .expect("create fs")
        .value;
    (store, fs)
}

/// A short, stable name for an error's kind (what a model can predict).
pub fn kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::NoEnt => "NoEnt",
        StoreError::Exist => "Exist",
        StoreError::NotDir => "NotDir",
        StoreError::IsDir => "IsDir",
        StoreError::NotEmpty => "NotEmpty",
        StoreError::Access => "Access",
        StoreError::Perm => "Perm",
        StoreError::Stale => "Stale",
        StoreError::NameTooLong { .. } => "NameTooLong",
        StoreError::Inval(_) => "Inval",
        StoreError::XDev => "XDev",
        StoreError::FBig => "FBig",
        StoreError::NoSpace(_) => "NoSpace",
        StoreError::DiskFull(_) => "DiskFull",
        StoreError::MLink => "MLink",
        StoreError::NotSupp(_) => "NotSupp",
        StoreError::NotSync => "NotSync",
        StoreError::ReadOnly(_) => "ReadOnly",
        StoreError::Io { .. } => "Io",
        StoreError::Corrupt(_) => "Corrupt",
        StoreError::Closed => "Closed",
        StoreError::Fenced { .. } => "Fenced",
        StoreError::Replication(_) => "Replication",
        StoreError::NotRetained { .. } => "NotRetained",
        StoreError::CatchupUnavailable(_) => "CatchupUnavailable",
        StoreError::TooManyLocks { .. } => "TooManyLocks",
    }
}

/// What the tree comparison looks at for one inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDesc {
    pub ino: Ino,
    pub ftype: FileType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    /// File contents, or symlink target.
    pub bytes: Vec<u8>,
}

/// Every path under `root` (names joined by '/') with its inode's
/// description; file contents are read through the store.
pub fn store_tree(store: &Store, root: Ino) -> BTreeMap<String, NodeDesc> {
    let st = store.snapshot();
    let mut out = BTreeMap::new();
    walk_store(store, &st, root, String::new(), &mut out);
    out
}

fn walk_store(
    store: &Store,
    st: &State,
    dir: Ino,
    prefix: String,
    out: &mut BTreeMap<String, NodeDesc>,
) {
    let Body::Dir(d) = &st.inodes[&dir].body else {
        panic!("{dir} is not a directory")
    };
    for (name, slot) in &d.entries {
        let path = format!("{prefix}/{}", String::from_utf8_lossy(name));
        let inode = &st.inodes[&slot.ino];
        let a = &inode.attr;
        let bytes = match &inode.body {
            Body::File { .. } => file_contents(store, slot.ino),
            Body::Symlink(t) => t.clone(),
            _ => Vec::new(),
        };
        out.insert(
            path.clone(),
            NodeDesc {
                ino: slot.ino,
                ftype: a.ftype,
                mode: a.mode,
                uid: a.uid,
                gid: a.gid,
                nlink: a.nlink,
                size: if a.ftype == FileType::Directory {
                    0
                } else {
                    a.size
                },
                bytes,
            },
        );
        if let Body::Dir(_) = inode.body {
            walk_store(store, st, slot.ino, path, out);
        }
    }
}

/// The whole contents of a regular file, read as root.
pub fn file_contents(store: &Store, ino: Ino) -> Vec<u8> {
    let size = store.getattr(ino).expect("getattr").size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let r = store
            .read(&Cred::root(), ino, out.len() as u64, 1 << 20)
            .expect("read");
        assert!(!r.data.is_empty(), "short read of inode {ino}");
        out.extend_from_slice(&r.data);
    }
    out
}

/// Contents of every regular file in the store, by inode.
pub fn all_contents(store: &Store) -> BTreeMap<Ino, Vec<u8>> {
    store
        .snapshot()
        .inodes
        .iter()
        .filter(|(_, i)| i.attr.ftype == FileType::Regular)
        .map(|(&ino, _)| (ino, file_contents(store, ino)))
        .collect()
}

/// Every file below `dir` (relative path -> bytes), except the LOCK file.
pub fn dir_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    collect_bytes(dir, dir, &mut out);
    out
}

fn collect_bytes(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let rel = path.strip_prefix(base).expect("prefix").to_path_buf();
        if entry.file_type().expect("file type").is_dir() {
            out.insert(rel.join(""), Vec::new());
            collect_bytes(base, &path, out);
        } else if rel != Path::new("LOCK") {
            out.insert(rel, std::fs::read(&path).expect("read file"));
        }
    }
}

/// Copies `from` (file or directory tree) to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).expect("copy");
    }
}

/// Journal segments of the store in `dir`, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Byte offsets of the frames in a segment file's contents.
pub fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = tandem_store::journal::SEGMENT_HEADER_BYTES;
    while pos + tandem_store::journal::FRAME_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let end = pos + tandem_store::journal::FRAME_HEADER_BYTES + len;
        if end > bytes.len() {
            break;
        }
        out.push(pos);
        pos = end;
    }
    out
}

pub fn user(uid: u32, gid: u32, gids: &[u32]) -> Cred {
    Cred {
        uid,
        gid,
        gids: gids.to_vec(),
    }
}

/// Fails naming each path whose bytes differ between two `dir_bytes`.
pub fn assert_unchanged(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    what: &str,
) {
    let mut diffs = Vec::new();
    for (path, bytes) in before {
        match after.get(path) {
            None => diffs.push(format!("{} removed", path.display())),
            Some(b) if b != bytes => diffs.push(format!("{} changed", path.display())),
            _ => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("{} added", path.display()));
    }
    assert!(diffs.is_empty(), "{what}: {}", diffs.join(", "));
}

/// Creates an empty regular file `name` in `dir` as root (GUARDED).
pub fn create_file(store: &Store, dir: Ino, name: &[u8]) -> Ino {
    store
        .create(
            &OpCtx::new(Cred::root()),
            dir,
            name,
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .expect("create")
        .value
        .ino
}

/// Names random tests build paths from: a path is a list of indexes.
pub const NAMES: [&[u8]; 3] = [b"x", b"y", b"z"];

/// The inode at `path` (indexes into `NAMES`) under `root`, if any.
pub fn resolve(store: &Store, root: Ino, path: &[usize]) -> Option<Ino> {
    let mut ino = root;
    for &i in path {
        ino = store.lookup(&Cred::root(), ino, NAMES[i]).ok()?.ino;
    }
    Some(ino)
}

/// The directory holding `path`'s last name, and that name.
pub fn parent(store: &Store, root: Ino, path: &[usize]) -> Option<(Ino, &'static [u8])> {
    let (last, dirs) = path.split_last()?;
    Some((resolve(store, root, dirs)?, NAMES[*last]))
}

/// Ships every durable frame after the replica's LSN, raising the active's
/// retention floor as a sender would.
pub fn ship(active: &Store, replica: &Store) {
    active
        .wait_durable_blocking(active.last_lsn())
        .expect("durable");
    loop {
        let frames = active
            .read_frames(replica.last_lsn(), 1 << 20)
            .expect("read frames");
        if frames.is_empty() {
            return;
        }
        replica.apply_replicated(&frames).expect("apply");
        active.set_retention_floor(replica.last_lsn());
    }
}

/// Same LSN, same state, same file contents.
pub fn assert_same(active: &Store, replica: &Store) {
    assert_eq!(active.last_lsn(), replica.last_lsn());
    assert!(active.snapshot() == replica.snapshot(), "states differ");
    assert_eq!(all_contents(active), all_contents(replica));
}
