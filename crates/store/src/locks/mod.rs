//! Lock state of a vserver: NLM byte-range locks, NLM share reservations
//! and the hosts NSM watches for reboots. It is vserver state like the
//! file tree: every change is a journal record decided by the active site
//! (`ops.rs`) and applied here, so it is checkpointed, replicated and
//! digested with the rest, and a DR site holds the same locks as the site
//! it takes over from.
//!
//! The store never waits: a lock that conflicts is answered with the
//! holder, and blocking (waiters, callbacks) is the protocol layer's
//! business.

mod check;
mod digest;
mod ops;
pub mod range;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::types::Ino;
pub use ops::{LockOutcome, ShareOutcome};
pub use range::{ByteRange, Piece};

/// Byte-range lock pieces held in one vserver, all owners together.
pub const MAX_LOCKS_PER_VSERVER: usize = 65_536;
/// Byte-range lock pieces held by one client host (NLM caller name).
pub const MAX_LOCKS_PER_HOST: usize = 8_192;
/// Share reservations held in one vserver.
pub const MAX_SHARES_PER_VSERVER: usize = 4_096;
/// Hosts NSM watches for one vserver.
pub const MAX_MONITORED_HOSTS: usize = 1_024;
/// Registrations (callers asking to hear of a reboot) per monitored host.
pub const MAX_MONITORS_PER_HOST: usize = 16;
/// Longest host name kept (NLM's LM_MAXSTRLEN and NSM's SM_MAXSTRLEN).
pub const MAX_LOCK_HOST_BYTES: usize = 1024;
/// Longest owner handle kept (NLM's MAXNETOBJ_SZ).
pub const MAX_OWNER_HANDLE_BYTES: usize = 1024;

/// Who holds a byte-range lock, as NLM names it: the client's host name
/// (caller_name), the process id there (svid) and the owner handle (oh).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LockOwner {
    pub host: String,
    /// NLM's `int32 svid`, its 32 bits as they came.
    pub svid: u32,
    #[serde(with = "serde_bytes")]
    pub oh: Vec<u8>,
}

/// Who holds a share reservation: NLM names it by host and owner handle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShareOwner {
    pub host: String,
    #[serde(with = "serde_bytes")]
    pub oh: Vec<u8>,
}

/// Access and deny bits of a share reservation (1 read, 2 write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMode {
    pub access: u8,
    pub deny: u8,
}

impl ShareMode {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;

    pub fn is_valid(&self) -> bool {
        self.access <= 3 && self.deny <= 3
    }

    pub fn conflicts(&self, other: &ShareMode) -> bool {
        self.access & other.deny != 0 || self.deny & other.access != 0
    }
}

/// The caller an NSM registration is for (SM_MON's my_id): whom to tell,
/// by an RPC to (prog, vers, proc) at my_name, when the host reboots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MonitorId {
    pub my_name: String,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
}

/// A host NSM watches: its last known state number (0 until it sends one)
/// and who asked to hear of its reboot, with their 16 private bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Monitored {
    pub state: u32,
    pub regs: BTreeMap<MonitorId, [u8; 16]>,
}

/// A lock that stands in the way, as NLM TEST reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub owner: LockOwner,
    pub piece: Piece,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "LockStateWire")]
pub struct LockState {
    /// Per file, per owner, the owner's pieces: sorted, disjoint, merged.
    files: BTreeMap<Ino, BTreeMap<LockOwner, Vec<Piece>>>,
    shares: BTreeMap<Ino, BTreeMap<ShareOwner, ShareMode>>,
    monitored: BTreeMap<String, Monitored>,
    /// Pieces in `files`, all and per host: derived, rebuilt on load.
    #[serde(skip_serializing)]
    pieces: usize,
    #[serde(skip_serializing)]
    pieces_by_host: BTreeMap<String, usize>,
    #[serde(skip_serializing)]
    share_count: usize,
    /// Files copied in by `pull_file` (only a dry-run scratch table has any).
    #[serde(skip_serializing)]
    pulled: std::collections::BTreeSet<Ino>,
}

/// The serialized fields of `LockState`, in its order.
#[derive(Deserialize)]
struct LockStateWire {
    files: BTreeMap<Ino, BTreeMap<LockOwner, Vec<Piece>>>,
    shares: BTreeMap<Ino, BTreeMap<ShareOwner, ShareMode>>,
    monitored: BTreeMap<String, Monitored>,
}

impl From<LockStateWire> for LockState {
    fn from(w: LockStateWire) -> Self {
        let mut s = LockState {
            files: w.files,
            shares: w.shares,
            monitored: w.monitored,
            ..LockState::default()
        };
        s.recount();
        s
    }
}

fn corrupt(why: String) -> StoreError {
    StoreError::Corrupt(why)
}

impl LockState {
    fn recount(&mut self) {
        self.pieces = 0;
        self.pieces_by_host.clear();
        for owners in self.files.values() {
            for (owner, pieces) in owners {
                self.pieces += pieces.len();
                *self.pieces_by_host.entry(owner.host.clone()).or_default() += pieces.len();
            }
        }
        self.share_count = self.shares.values().map(BTreeMap::len).sum();
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.shares.is_empty() && self.monitored.is_empty()
    }

    /// Lock pieces held in the vserver.
    pub fn lock_count(&self) -> usize {
        self.pieces
    }

    pub fn host_lock_count(&self, host: &str) -> usize {
        self.pieces_by_host.get(host).copied().unwrap_or(0)
    }

    pub fn share_count(&self) -> usize {
        self.share_count
    }

    /// Every file's locks: file, owner, the owner's pieces.
    pub fn locks(&self) -> impl Iterator<Item = (Ino, &LockOwner, &[Piece])> {
        self.files.iter().flat_map(|(&ino, owners)| {
            owners
                .iter()
                .map(move |(owner, pieces)| (ino, owner, pieces.as_slice()))
        })
    }

    pub fn locks_of_file(&self, ino: Ino) -> Option<&BTreeMap<LockOwner, Vec<Piece>>> {
        self.files.get(&ino)
    }

    pub fn shares(&self) -> impl Iterator<Item = (Ino, &ShareOwner, &ShareMode)> {
        self.shares
            .iter()
            .flat_map(|(&ino, s)| s.iter().map(move |(o, m)| (ino, o, m)))
    }

    pub fn monitored(&self) -> &BTreeMap<String, Monitored> {
        &self.monitored
    }

    /// The first lock of another owner that a lock of `owner` on `range`
    /// would conflict with (two shared locks never do).
    pub fn conflict(
        &self,
        ino: Ino,
        owner: &LockOwner,
        range: ByteRange,
        exclusive: bool,
    ) -> Option<Holder> {
        let owners = self.files.get(&ino)?;
        owners
            .iter()
            .filter(|(o, _)| *o != owner)
            .find_map(|(o, pieces)| {
                pieces
                    .iter()
                    .find(|p| (exclusive || p.exclusive) && p.range.overlaps(&range))
                    .map(|p| Holder {
                        owner: o.clone(),
                        piece: *p,
                    })
            })
    }

    fn pieces_of(&self, ino: Ino, owner: &LockOwner) -> &[Piece] {
        self.files
            .get(&ino)
            .and_then(|o| o.get(owner))
            .map_or(&[], Vec::as_slice)
    }

    /// Replaces `owner`'s pieces of `ino`, keeping the counts.
    fn set_pieces(&mut self, ino: Ino, owner: &LockOwner, pieces: Vec<Piece>) {
        let old = self.pieces_of(ino, owner).len();
        let new = pieces.len();
        let owners = self.files.entry(ino).or_default();
        if pieces.is_empty() {
            owners.remove(owner);
        } else {
            owners.insert(owner.clone(), pieces);
        }
        if owners.is_empty() {
            self.files.remove(&ino);
        }
        self.pieces = self.pieces + new - old;
        let by_host = self.pieces_by_host.entry(owner.host.clone()).or_default();
        *by_host = *by_host + new - old;
        if *by_host == 0 {
            self.pieces_by_host.remove(&owner.host);
        }
    }

    /// `owner`'s pieces of `ino` once it locks `range`.
    pub(crate) fn pieces_after_lock(
        &self,
        ino: Ino,
        owner: &LockOwner,
        range: ByteRange,
        exclusive: bool,
    ) -> Vec<Piece> {
        range::after_lock(self.pieces_of(ino, owner), range, exclusive)
    }

    pub(crate) fn pieces_after_unlock(
        &self,
        ino: Ino,
        owner: &LockOwner,
        range: ByteRange,
    ) -> Vec<Piece> {
        range::after_unlock(self.pieces_of(ino, owner), range)
    }

    pub(crate) fn holds_anything(&self, host: &str) -> bool {
        self.pieces_by_host.contains_key(host)
            || self
                .shares
                .values()
                .any(|s| s.keys().any(|o| o.host == host))
    }

    pub(crate) fn share_conflict(&self, ino: Ino, owner: &ShareOwner, mode: ShareMode) -> bool {
        self.shares
            .get(&ino)
            .is_some_and(|s| s.iter().any(|(o, m)| o != owner && m.conflicts(&mode)))
    }

    pub(crate) fn share_of(&self, ino: Ino, owner: &ShareOwner) -> Option<ShareMode> {
        self.shares.get(&ino).and_then(|s| s.get(owner)).copied()
    }

    // ---- apply: called only from `State::apply` with a record's fields.

    pub(crate) fn apply_lock(
        &mut self,
        ino: Ino,
        owner: &LockOwner,
        range: ByteRange,
        exclusive: bool,
    ) -> Result<()> {
        if !range.is_valid() {
            return Err(corrupt(format!("lock record with empty range {range:?}")));
        }
        if let Some(h) = self.conflict(ino, owner, range, exclusive) {
            return Err(corrupt(format!(
                "lock record on inode {ino} conflicts with a lock of {:?}",
                h.owner.host
            )));
        }
        let pieces = self.pieces_after_lock(ino, owner, range, exclusive);
        self.set_pieces(ino, owner, pieces);
        Ok(())
    }

    pub(crate) fn apply_unlock(
        &mut self,
        ino: Ino,
        owner: &LockOwner,
        range: ByteRange,
    ) -> Result<()> {
        if !range.is_valid() {
            return Err(corrupt(format!("unlock record with empty range {range:?}")));
        }
        let pieces = self.pieces_after_unlock(ino, owner, range);
        self.set_pieces(ino, owner, pieces);
        Ok(())
    }

    /// Drops every lock and share reservation of `host`.
    pub(crate) fn apply_free_host(&mut self, host: &str) {
        for owners in self.files.values_mut() {
            owners.retain(|o, _| o.host != host);
        }
        self.files.retain(|_, o| !o.is_empty());
        for s in self.shares.values_mut() {
            s.retain(|o, _| o.host != host);
        }
        self.shares.retain(|_, s| !s.is_empty());
        self.recount();
    }

    pub(crate) fn apply_host_rebooted(&mut self, host: &str, state: u32) {
        self.apply_free_host(host);
        if let Some(m) = self.monitored.get_mut(host) {
            m.state = state;
        }
    }

    pub(crate) fn apply_share(
        &mut self,
        ino: Ino,
        owner: &ShareOwner,
        mode: ShareMode,
    ) -> Result<()> {
        if !mode.is_valid() || self.share_conflict(ino, owner, mode) {
            return Err(corrupt(format!(
                "share record on inode {ino} is invalid or conflicts"
            )));
        }
        if self
            .shares
            .entry(ino)
            .or_default()
            .insert(owner.clone(), mode)
            .is_none()
        {
            self.share_count += 1;
        }
        Ok(())
    }

    pub(crate) fn apply_unshare(&mut self, ino: Ino, owner: &ShareOwner) {
        if let Some(s) = self.shares.get_mut(&ino) {
            if s.remove(owner).is_some() {
                self.share_count -= 1;
            }
            if s.is_empty() {
                self.shares.remove(&ino);
            }
        }
    }

    pub(crate) fn apply_monitor(&mut self, host: &str, id: &MonitorId, private: [u8; 16]) {
        self.monitored
            .entry(host.to_owned())
            .or_default()
            .regs
            .insert(id.clone(), private);
    }

    /// SM_UNMON (`Some(host)`) or SM_UNMON_ALL (`None`: every host).
    pub(crate) fn apply_unmonitor(&mut self, host: Option<&str>, id: &MonitorId) {
        for (name, m) in self.monitored.iter_mut() {
            if host.is_none_or(|h| h == name) {
                m.regs.remove(id);
            }
        }
        self.monitored.retain(|_, m| !m.regs.is_empty());
    }

    /// Copies `ino`'s locks and reservations from `real` unless this table
    /// has them already (a replica's dry run of a batch, replica.rs).
    pub(crate) fn pull_file(&mut self, real: &LockState, ino: Ino) {
        if !self.pulled.insert(ino) {
            return;
        }
        if let Some(owners) = real.files.get(&ino) {
            for (owner, pieces) in owners {
                if self.pieces_of(ino, owner).is_empty() {
                    self.set_pieces(ino, owner, pieces.clone());
                }
            }
        }
        if let Some(shares) = real.shares.get(&ino) {
            for (owner, mode) in shares {
                if self.share_of(ino, owner).is_none() {
                    self.shares
                        .entry(ino)
                        .or_default()
                        .insert(owner.clone(), *mode);
                    self.share_count += 1;
                }
            }
        }
    }

    /// Makes a dry-run table whole: `real`'s state for every file not yet
    /// pulled, this table's for those that were (the batch changed them).
    pub(crate) fn pull_all(&mut self, real: &LockState) {
        let mut full = real.clone();
        for &ino in &self.pulled {
            match self.files.remove(&ino) {
                Some(f) => full.files.insert(ino, f),
                None => full.files.remove(&ino),
            };
            match self.shares.remove(&ino) {
                Some(s) => full.shares.insert(ino, s),
                None => full.shares.remove(&ino),
            };
        }
        // Monitored hosts change only by host-wide records, which pull
        // everything first: `real`'s are the ones.
        full.recount();
        *self = full;
    }

    /// The inode is gone: so are its locks and reservations.
    pub(crate) fn forget_inode(&mut self, ino: Ino) {
        let had_locks = self.files.remove(&ino).is_some();
        let had_shares = self.shares.remove(&ino).is_some();
        if had_locks || had_shares {
            self.recount();
        }
    }
}
