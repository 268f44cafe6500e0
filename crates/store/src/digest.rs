//! A Merkle digest of a vserver's content at one LSN, so two sites can
//! check that they hold the same thing (`tandem verify`). Input layout,
//! byte by byte: docs/formats.md, "Verify digest".
//!
//! **Snapshot without stopping clients.** `Store::digest_snapshot` first
//! takes the pending-data hold (`PendingData::hold`: the right to write
//! data files, which the applier thread, checkpoints and baselines also
//! need), then copies the state under the read lock and notes its LSN L.
//! Every change already in the data files has an LSN <= L (it was applied
//! before the hold, so its record was assigned before the copy). It then
//! waits until L is durable and applies the waiting changes up to L itself:
//! the data files now hold exactly the state at L, and stay so while the
//! hold is kept, because data changes reach the files only through the
//! holder. Clients keep working meanwhile: commits only queue their data
//! changes, and reads overlay the queue.
//!
//! **Bound.** The queue grows while held; past
//! `MAX_VERIFY_PENDING_BYTES` the digest stops with
//! `DigestError::TooMuchChange` rather than grow memory without limit. The
//! hold is an owned guard, released on drop on every path (error, abort,
//! panic unwinding, a cancelled task dropping the snapshot).
//!
//! **No deadlock.** The lock order is hold -> state lock (read, briefly) ->
//! journal durability. Nothing takes them the other way round: commits and
//! `apply_replicated` hold the state lock but only push onto the pending
//! queue (its own short mutex), never wait for the hold; the journal writer
//! makes LSNs durable without touching data files or the hold; a checkpoint
//! or baseline copies the state, releases the lock, and only then waits for
//! the hold, which the digest releases after reading files, a finite amount
//! of work that waits on nothing but disk reads. So a checkpoint (and
//! `Store::close`) merely waits for a running digest to finish.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::config::VserverConfig;
use crate::data::DataFiles;
use crate::error::StoreError;
use crate::pending::{ApplyHold, PendingData};
use crate::state::{Body, Inode, State};
use crate::store::Store;
use crate::types::{Attr, FileType, Ino, Lsn, Timestamp};

/// Version of the digest input layout (docs/formats.md). Both sites must
/// compute the same version for their digests to mean anything.
pub const DIGEST_VERSION: u32 = 1;
/// Bytes of client writes that may queue up while a digest holds the data
/// files still; past this the digest gives up.
pub const MAX_VERIFY_PENDING_BYTES: u64 = 256 << 20;
/// Data-file bytes read (and hashed) at once.
const READ_CHUNK_BYTES: usize = 1 << 20;

pub type Hash = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("too much change during verify ({pending_bytes} bytes of writes waiting, limit {max_bytes}); retry when the vserver is quieter")]
    TooMuchChange { pending_bytes: u64, max_bytes: u64 },
    #[error("verify cancelled")]
    Cancelled,
}

/// Digests of the vserver configuration's parts, so a difference there can
/// be named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConfigDigests {
    pub name: Hash,
    pub addresses: Hash,
    pub filesystems: Hash,
    pub users: Hash,
}

impl ConfigDigests {
    /// The parts with the words a report uses for them, in report order.
    pub fn parts(&self) -> [(&'static str, &Hash); 4] {
        [
            ("vserver name", &self.name),
            ("addresses", &self.addresses),
            ("file systems and exports", &self.filesystems),
            ("user map", &self.users),
        ]
    }
}

/// The digest of a whole store at `lsn`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digests {
    pub lsn: Lsn,
    pub root: Hash,
    pub config: ConfigDigests,
    /// Every inode's digest.
    pub inodes: BTreeMap<Ino, Hash>,
    /// Regular files digested and the bytes read for them (holes included).
    pub files: u64,
    pub bytes: u64,
}

/// A store's state at one LSN with its data files held at that LSN; turn it
/// into `Digests` with `compute` (on any thread; it reads every file).
pub struct DigestSnapshot {
    state: State,
    data: Arc<DataFiles>,
    hold: ApplyHold<Arc<PendingData>>,
}

impl Store {
    /// Takes a digest snapshot at the current last LSN (see the module
    /// doc). Blocks until that LSN is durable: call from a blocking context.
    pub fn digest_snapshot(&self) -> crate::Result<DigestSnapshot> {
        let hold = self.pending.hold();
        let state = self.snapshot();
        self.wait_durable_blocking(state.lsn)?;
        hold.apply_durable(&self.data, state.lsn)?;
        Ok(DigestSnapshot {
            state,
            data: self.data.clone(),
            hold,
        })
    }
}

impl DigestSnapshot {
    pub fn lsn(&self) -> Lsn {
        self.state.lsn
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Digests everything; `cancelled` is polled between files and chunks
    /// so a caller that gave up releases the hold soon. Returns the state
    /// too (a comparison names paths from it).
    pub fn compute(self, cancelled: &dyn Fn() -> bool) -> Result<(Digests, State), DigestError> {
        self.compute_bounded(MAX_VERIFY_PENDING_BYTES, cancelled)
    }

    /// `compute` with another bound on the writes waiting meanwhile.
    pub fn compute_bounded(
        self,
        max_pending_bytes: u64,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(Digests, State), DigestError> {
        let DigestSnapshot { state, data, hold } = self;
        let check = || -> Result<(), DigestError> {
            if cancelled() {
                return Err(DigestError::Cancelled);
            }
            let pending_bytes = hold.pending_bytes();
            if pending_bytes > max_pending_bytes {
                return Err(DigestError::TooMuchChange {
                    pending_bytes,
                    max_bytes: max_pending_bytes,
                });
            }
            Ok(())
        };
        let mut out = Digests {
            lsn: state.lsn,
            ..Digests::default()
        };
        // Leaves first, then directories deepest first, so every child's
        // digest exists when its directory's is computed (no recursion: a
        // deep tree cannot overflow the stack).
        let mut dirs = Vec::new();
        for (&ino, inode) in &state.inodes {
            if let Body::Dir(_) = inode.body {
                dirs.push((depth(&state, ino), ino));
                continue;
            }
            check()?;
            let file = if inode.attr.ftype == FileType::Regular {
                out.files += 1;
                out.bytes += inode.attr.size;
                Some(file_digest(&data, ino, inode.attr.size, &check)?)
            } else {
                None
            };
            out.inodes
                .insert(ino, inode_digest(inode, file.as_ref(), &out.inodes));
        }
        dirs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, ino) in dirs {
            if let Some(inode) = state.inodes.get(&ino) {
                let d = inode_digest(inode, None, &out.inodes);
                out.inodes.insert(ino, d);
            }
        }
        drop(hold);
        out.config = config_digests(&state.config);
        // Only a vserver that holds lock state hashes it, so the digest of
        // one without stays what it was before locks existed.
        let locks = (!state.locks.is_empty()).then(|| state.locks.digest());
        out.root = root_digest(&state.config, &out.config, &out.inodes, locks.as_ref());
        Ok((out, state))
    }
}

/// Directory depth (root 0); bounded by the inode count, so a corrupt
/// parent cycle cannot loop forever.
fn depth(state: &State, ino: Ino) -> usize {
    let mut d = 0;
    let mut cur = ino;
    while let Some(Inode {
        body: Body::Dir(dir),
        ..
    }) = state.inodes.get(&cur)
    {
        if dir.parent == cur || d > state.inodes.len() {
            break;
        }
        d += 1;
        cur = dir.parent;
    }
    d
}

fn file_digest(
    data: &DataFiles,
    ino: Ino,
    size: u64,
    check: &dyn Fn() -> Result<(), DigestError>,
) -> Result<Hash, DigestError> {
    let mut h = Sha256::new();
    h.update(b"tandem-verify-data\0");
    h.update(size.to_le_bytes());
    let mut offset = 0u64;
    while offset < size {
        let len = (size - offset).min(READ_CHUNK_BYTES as u64) as usize;
        h.update(data.read(ino, offset, len)?);
        offset += len as u64;
        if offset < size {
            check()?;
        }
    }
    Ok(h.finalize().into())
}

fn put_time(h: &mut Sha256, t: &Timestamp) {
    h.update(t.secs.to_le_bytes());
    h.update(t.nsecs.to_le_bytes());
}

fn type_code(t: FileType) -> u8 {
    match t {
        FileType::Regular => 1,
        FileType::Directory => 2,
        FileType::Symlink => 3,
        FileType::CharDevice => 4,
        FileType::BlockDevice => 5,
        FileType::Socket => 6,
        FileType::Fifo => 7,
    }
}

fn put_attr(h: &mut Sha256, a: &Attr) {
    h.update(a.ino.to_le_bytes());
    h.update(a.generation.to_le_bytes());
    h.update([type_code(a.ftype)]);
    h.update(a.mode.to_le_bytes());
    h.update(a.uid.to_le_bytes());
    h.update(a.gid.to_le_bytes());
    h.update(a.size.to_le_bytes());
    h.update(a.nlink.to_le_bytes());
    h.update(a.fsid.to_le_bytes());
    h.update(a.rdev.0.to_le_bytes());
    h.update(a.rdev.1.to_le_bytes());
    put_time(h, &a.atime);
    put_time(h, &a.mtime);
    put_time(h, &a.ctime);
}

/// One inode's digest; a directory's needs its children's in `known`
/// (a missing one counts as all zeros, which only a corrupt state has).
fn inode_digest(inode: &Inode, file: Option<&Hash>, known: &BTreeMap<Ino, Hash>) -> Hash {
    let mut h = Sha256::new();
    h.update(b"tandem-verify-inode\0");
    h.update(DIGEST_VERSION.to_le_bytes());
    put_attr(&mut h, &inode.attr);
    match &inode.body {
        Body::File { create_verf } => {
            h.update([1]);
            match create_verf {
                Some(v) => {
                    h.update([1]);
                    h.update(v);
                }
                None => h.update([0]),
            }
            h.update(file.copied().unwrap_or([0; 32]));
        }
        Body::Dir(d) => {
            h.update([2]);
            h.update(d.parent.to_le_bytes());
            h.update(d.next_cookie.to_le_bytes());
            h.update((d.entries.len() as u64).to_le_bytes());
            for (name, slot) in &d.entries {
                h.update((name.len() as u32).to_le_bytes());
                h.update(name);
                h.update(slot.ino.to_le_bytes());
                h.update(slot.cookie.to_le_bytes());
                h.update(known.get(&slot.ino).copied().unwrap_or([0; 32]));
            }
        }
        Body::Symlink(target) => {
            h.update([3]);
            h.update((target.len() as u32).to_le_bytes());
            h.update(target);
        }
        Body::Special => h.update([4]),
    }
    h.finalize().into()
}

fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u32).to_le_bytes());
    h.update(s.as_bytes());
}

fn config_digests(c: &VserverConfig) -> ConfigDigests {
    let start = |tag: &str| {
        let mut h = Sha256::new();
        h.update(b"tandem-verify-config\0");
        put_str(&mut h, tag);
        h
    };
    let mut name = start("name");
    put_str(&mut name, &c.name);
    let mut addresses = start("addresses");
    addresses.update((c.addresses.len() as u32).to_le_bytes());
    for a in &c.addresses {
        put_str(&mut addresses, &a.to_string());
    }
    let mut filesystems = start("filesystems");
    filesystems.update((c.filesystems.len() as u32).to_le_bytes());
    for fs in c.filesystems.values() {
        put_str(&mut filesystems, &fs.name);
        filesystems.update(fs.fsid.to_le_bytes());
        filesystems.update(fs.root_ino.to_le_bytes());
        let e = &fs.export;
        put_str(&mut filesystems, &e.path);
        filesystems.update((e.clients.len() as u32).to_le_bytes());
        for net in &e.clients {
            put_str(&mut filesystems, &net.to_string());
        }
        filesystems.update([u8::from(e.read_only), u8::from(e.root_squash)]);
        filesystems.update(e.anon_uid.to_le_bytes());
        filesystems.update(e.anon_gid.to_le_bytes());
    }
    let mut users = start("users");
    users.update((c.users.len() as u32).to_le_bytes());
    for u in c.users.values() {
        put_str(&mut users, &u.name);
        users.update(u.uid.to_le_bytes());
        users.update(u.gid.to_le_bytes());
        users.update((u.groups.len() as u32).to_le_bytes());
        for g in &u.groups {
            users.update(g.to_le_bytes());
        }
    }
    ConfigDigests {
        name: name.finalize().into(),
        addresses: addresses.finalize().into(),
        filesystems: filesystems.finalize().into(),
        users: users.finalize().into(),
    }
}

fn root_digest(
    c: &VserverConfig,
    parts: &ConfigDigests,
    inodes: &BTreeMap<Ino, Hash>,
    locks: Option<&Hash>,
) -> Hash {
    let mut h = Sha256::new();
    h.update(b"tandem-verify-root\0");
    h.update(DIGEST_VERSION.to_le_bytes());
    for (_, d) in parts.parts() {
        h.update(d);
    }
    h.update((c.filesystems.len() as u32).to_le_bytes());
    for fs in c.filesystems.values() {
        put_str(&mut h, &fs.name);
        h.update(inodes.get(&fs.root_ino).copied().unwrap_or([0; 32]));
    }
    // Every inode, reachable or not, so an orphan difference shows too.
    h.update((inodes.len() as u64).to_le_bytes());
    for (ino, d) in inodes {
        h.update(ino.to_le_bytes());
        h.update(d);
    }
    if let Some(locks) = locks {
        h.update(locks);
    }
    h.finalize().into()
}

/// Where two digests of the same LSN first differ, in clear words; `None`
/// if they match. Descends from each file system's root in name order,
/// using `state` (ours) for names: the deepest object whose digest
/// differs, or that exists only in ours; a directory whose entries differ
/// but whose children (in ours) all match is reported itself (an entry only
/// the other side has, a renamed entry). Paths are "<file system>:/a/b".
pub fn first_difference(ours: &Digests, theirs: &Digests, state: &State) -> Option<String> {
    if ours.root == theirs.root {
        return None;
    }
    if ours.lsn != theirs.lsn {
        return Some(format!(
            "digests of different LSNs ({} and {})",
            ours.lsn, theirs.lsn
        ));
    }
    for ((what, a), (_, b)) in ours.config.parts().iter().zip(theirs.config.parts()) {
        if *a != b {
            return Some(format!("config: {what}"));
        }
    }
    for fs in state.config.filesystems.values() {
        if let Some(path) = differing_path(ours, theirs, state, fs.root_ino) {
            return Some(format!("{}:{}", fs.name, path));
        }
    }
    // Only unreachable inodes can be left.
    let orphan = ours
        .inodes
        .iter()
        .find(|(ino, d)| theirs.inodes.get(ino) != Some(d))
        .map(|(ino, _)| *ino)
        .or_else(|| {
            theirs
                .inodes
                .keys()
                .find(|ino| !ours.inodes.contains_key(ino))
                .copied()
        });
    Some(match orphan {
        Some(ino) => format!("inode {ino} (not reachable from any directory)"),
        // Config and every inode match: what is left is the lock state.
        None => "lock state (byte-range locks, share reservations or monitored hosts)".to_string(),
    })
}

fn differing_path(ours: &Digests, theirs: &Digests, state: &State, root: Ino) -> Option<String> {
    if ours.inodes.get(&root) == theirs.inodes.get(&root) {
        return None;
    }
    let mut path: Vec<&[u8]> = Vec::new();
    let mut cur = root;
    // Each step goes one level down, so the walk ends.
    loop {
        let next = match state.inodes.get(&cur).map(|i| &i.body) {
            Some(Body::Dir(d)) => d.entries.iter().find(|(_, slot)| {
                theirs.inodes.get(&slot.ino) != ours.inodes.get(&slot.ino) && slot.ino != cur
            }),
            _ => None,
        };
        match next {
            Some((name, slot)) => {
                path.push(name);
                cur = slot.ino;
            }
            None => break,
        }
        if path.len() > state.inodes.len() {
            break;
        }
    }
    let mut out = String::new();
    for name in &path {
        out.push('/');
        out.push_str(&String::from_utf8_lossy(name));
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}
