//! Room on the disk that holds a store, and who may use the last of it.
//!
//! Every change is admitted here before its record is journaled (under the
//! state lock, so nothing else is admitted in between): a change that
//! would not fit is refused with `DiskFull` and writes nothing, so the
//! journal and the data files never have to cope with ENOSPC from our own
//! traffic, and "acknowledged means durable" holds (a failed journal write
//! would have stopped the store for good, a failed data-file write would
//! have left a change durable in the journal but not in its file).
//!
//! The last `reserve_bytes` of the disk are kept for changes that free
//! space (REMOVE, RMDIR, a truncation, lock and mount releases): without
//! them a full disk could never be emptied through NFS, since even a
//! removal needs a journal record. A change is counted at what it may
//! take on disk: a write twice (journal, then data file), rounded to whole
//! blocks; any other record one block. What is accepted but not yet on
//! disk (the journal's buffer, data waiting for the files) counts as used.
//!
//! The reserve is room the store leaves free, not room it holds: another
//! program writing to the same file system can take it (docs/operating.md
//! says to give the site its own file system). When that happens anyway,
//! the data applier waits and retries rather than failing (store.rs), and
//! `open` keeps what it cannot write in memory (`ReplaySink`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::record::Op;
use crate::state::State;

/// Default `reserve_bytes`: room for tens of thousands of removal records
/// (each well under a block of journal) and a checkpoint of a store of
/// tens of thousands of files, at a small cost on any disk worth serving.
pub const DEFAULT_RESERVE_BYTES: u64 = 8 << 20;
/// Smallest and largest `reserve_bytes` (site.toml checks the same).
pub const MIN_RESERVE_BYTES: u64 = 1 << 20;
pub const MAX_RESERVE_BYTES: u64 = 64 << 30;
/// Default `low_percent`: warn while free space above the reserve is
/// under this share of the file system.
pub const DEFAULT_LOW_PERCENT: u8 = 10;
/// Allowed `low_percent` (0 would never warn, past 90 always would).
pub const MIN_LOW_PERCENT: u8 = 1;
pub const MAX_LOW_PERCENT: u8 = 90;
/// While space is low, a checkpoint comes after this many journal bytes
/// (not `checkpoint_every_bytes`), rolling the journal first, so journal
/// segments holding data already in the data files go and a write stops
/// costing twice its size for long.
pub const LOW_CHECKPOINT_EVERY_BYTES: u64 = 4 << 20;
/// Allocation unit assumed when counting: ext4, XFS and tmpfs use 4 KiB.
const BLOCK_BYTES: u64 = 4096;
/// A frame's header and the record around a write's bytes, at most.
const FRAME_SLACK_BYTES: u64 = 1024;

/// The space state `tandem status` shows per vserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpaceState {
    Ok,
    /// Free space above the reserve is under `low_percent` of the disk.
    Low,
    /// The largest write (or the last change refused) would be refused, or
    /// data files cannot be written.
    Full,
}

impl SpaceState {
    pub const ALL: [SpaceState; 3] = [SpaceState::Ok, SpaceState::Low, SpaceState::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            SpaceState::Ok => "ok",
            SpaceState::Low => "low",
            SpaceState::Full => "full",
        }
    }

    fn from_u8(v: u8) -> SpaceState {
        match v {
            1 => SpaceState::Low,
            2 => SpaceState::Full,
            _ => SpaceState::Ok,
        }
    }
}

impl std::fmt::Display for SpaceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The figures behind a `SpaceState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceReport {
    pub state: SpaceState,
    pub total_bytes: u64,
    /// Available to the store now: free on the disk less what it has
    /// accepted but not yet written. Writes stop at `reserve_bytes`.
    pub free_bytes: u64,
    pub reserve_bytes: u64,
    pub low_percent: u8,
    /// Why data files are not being written, while they are not.
    pub stalled: Option<String>,
}

/// Test hooks standing in for a disk (`StoreOptions::space_faults`).
#[derive(Debug, Default)]
pub struct SpaceFaults {
    free_bytes: Mutex<Option<u64>>,
    fail_data_writes: std::sync::atomic::AtomicBool,
}

impl SpaceFaults {
    /// Report this much free (of a disk twice its size, at least one GiB)
    /// instead of asking the file system; `None`: ask it again.
    pub fn set_free_bytes(&self, bytes: Option<u64>) {
        *self.free_bytes.lock() = bytes;
    }

    /// Make every data-file write fail with ENOSPC (journal writes pass).
    pub fn set_fail_data_writes(&self, fail: bool) {
        self.fail_data_writes.store(fail, Ordering::Relaxed);
    }

    pub(crate) fn data_write_fails(&self) -> bool {
        self.fail_data_writes.load(Ordering::Relaxed)
    }
}

/// Whether a change may dig into the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Grows,
    Frees,
}

/// What a record may take on disk, and whether it frees space.
pub(crate) fn need_of(op: &Op, st: &State) -> (Need, u64) {
    let frees = match op {
        Op::Unlink { .. }
        | Op::MountRemoved { .. }
        | Op::LockReleased { .. }
        | Op::HostLocksFreed { .. }
        | Op::HostRebooted { .. }
        | Op::ShareReleased { .. }
        | Op::HostUnmonitored { .. } => true,
        Op::SetAttr { ino, attr } => st.inodes.get(ino).is_some_and(|i| attr.size <= i.attr.size),
        _ => false,
    };
    let cost = match op {
        Op::Write { data, .. } => write_cost_bytes(data.len() as u64),
        _ => BLOCK_BYTES,
    };
    (if frees { Need::Frees } else { Need::Grows }, cost)
}

/// A write's journal frame plus its data-file blocks (both ends may land
/// in a block of their own).
pub(crate) fn write_cost_bytes(len: u64) -> u64 {
    let blocks = len.div_ceil(BLOCK_BYTES) + 1;
    len + FRAME_SLACK_BYTES + blocks * BLOCK_BYTES
}

pub(crate) struct Space {
    dir: PathBuf,
    reserve_bytes: u64,
    low_percent: u8,
    faults: Option<std::sync::Arc<SpaceFaults>>,
    /// The state last seen, so only changes are logged.
    last: AtomicU8,
    /// What the last refused growth needed (0: none since one passed): the
    /// disk stays `full` while that would still not fit, even when it was
    /// more than the largest write (a replicated batch).
    refused_bytes: AtomicU64,
    stalled: Mutex<Option<String>>,
}

/// Size and room of the file system holding a path.
#[derive(Debug, Clone, Copy)]
pub struct Disk {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// What an unprivileged writer may use (`free_bytes` less root's share).
    pub avail_bytes: u64,
}

/// statvfs of `path`.
pub fn disk_of(path: &Path) -> Result<Disk> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| StoreError::Inval("store path contains NUL".into()))?;
    // SAFETY: statvfs writes into the zeroed struct we pass and reads the
    // NUL-terminated path; both outlive the call.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut vfs) };
    if rc != 0 {
        return Err(StoreError::io(path, std::io::Error::last_os_error()));
    }
    let frsize = vfs.f_frsize as u64;
    Ok(Disk {
        total_bytes: (vfs.f_blocks as u64).saturating_mul(frsize),
        free_bytes: (vfs.f_bfree as u64).saturating_mul(frsize),
        avail_bytes: (vfs.f_bavail as u64).saturating_mul(frsize),
    })
}

impl Space {
    pub(crate) fn new(
        dir: &Path,
        reserve_bytes: u64,
        low_percent: u8,
        faults: Option<std::sync::Arc<SpaceFaults>>,
    ) -> Result<Space> {
        if !(MIN_RESERVE_BYTES..=MAX_RESERVE_BYTES).contains(&reserve_bytes) {
            return Err(StoreError::Inval(format!(
                "reserve_bytes = {reserve_bytes} is outside {MIN_RESERVE_BYTES}..={MAX_RESERVE_BYTES}"
            )));
        }
        if !(MIN_LOW_PERCENT..=MAX_LOW_PERCENT).contains(&low_percent) {
            return Err(StoreError::Inval(format!(
                "low_percent = {low_percent} is outside {MIN_LOW_PERCENT}..={MAX_LOW_PERCENT}"
            )));
        }
        Ok(Space {
            dir: dir.to_path_buf(),
            reserve_bytes,
            low_percent,
            faults,
            last: AtomicU8::new(SpaceState::Ok as u8),
            refused_bytes: AtomicU64::new(0),
            stalled: Mutex::new(None),
        })
    }

    pub(crate) fn reserve_bytes(&self) -> u64 {
        self.reserve_bytes
    }

    pub(crate) fn disk(&self) -> Result<Disk> {
        if let Some(free) = self.faults.as_ref().and_then(|f| *f.free_bytes.lock()) {
            return Ok(Disk {
                total_bytes: free.saturating_mul(2).max(1 << 30),
                free_bytes: free,
                avail_bytes: free,
            });
        }
        disk_of(&self.dir)
    }

    /// Admits a change that may take `cost_bytes`, `outstanding_bytes`
    /// being accepted but not yet on disk; refuses it with `DiskFull`
    /// when it would leave less than the reserve (less than nothing, for a
    /// change that frees space). Returns the state after it.
    pub(crate) fn admit(
        &self,
        need: Need,
        cost_bytes: u64,
        outstanding_bytes: u64,
    ) -> Result<SpaceState> {
        let disk = self.disk()?;
        let room = disk.avail_bytes.saturating_sub(outstanding_bytes);
        let floor = match need {
            Need::Grows => self.reserve_bytes,
            Need::Frees => 0,
        };
        if room < cost_bytes.saturating_add(floor) {
            if need == Need::Grows {
                self.refused_bytes.store(cost_bytes, Ordering::Relaxed);
            }
            self.note(SpaceState::Full, room, disk.total_bytes);
            return Err(StoreError::DiskFull(match need {
                Need::Grows => format!(
                    "the change needs {cost_bytes} bytes, {room} are free and the last \
                     {} are kept for removals; remove or truncate files",
                    self.reserve_bytes
                ),
                Need::Frees => format!(
                    "even a removal needs {cost_bytes} bytes and {room} are free; \
                     free space on the file system or grow it"
                ),
            }));
        }
        if need == Need::Grows {
            self.refused_bytes.store(0, Ordering::Relaxed);
        }
        let state = self.state_of(room - cost_bytes, disk.total_bytes);
        self.note(state, room, disk.total_bytes);
        Ok(state)
    }

    /// The state and figures now.
    pub(crate) fn report(&self, outstanding_bytes: u64) -> Result<SpaceReport> {
        let disk = self.disk()?;
        let room = disk.avail_bytes.saturating_sub(outstanding_bytes);
        let state = self.state_of(room, disk.total_bytes);
        self.note(state, room, disk.total_bytes);
        Ok(SpaceReport {
            state,
            total_bytes: disk.total_bytes,
            free_bytes: room,
            reserve_bytes: self.reserve_bytes,
            low_percent: self.low_percent,
            stalled: self.stalled.lock().clone(),
        })
    }

    fn state_of(&self, room: u64, total_bytes: u64) -> SpaceState {
        let largest_write = write_cost_bytes(crate::types::MAX_IO_BYTES as u64)
            .max(self.refused_bytes.load(Ordering::Relaxed));
        if self.stalled.lock().is_some() || room < self.reserve_bytes + largest_write {
            return SpaceState::Full;
        }
        let above = u128::from(room - self.reserve_bytes);
        if above * 100 < u128::from(total_bytes) * u128::from(self.low_percent) {
            SpaceState::Low
        } else {
            SpaceState::Ok
        }
    }

    /// Logs a change of state: the low-room warning comes before writes
    /// are refused, the full one when they are.
    fn note(&self, state: SpaceState, room: u64, total_bytes: u64) {
        let before = SpaceState::from_u8(self.last.swap(state as u8, Ordering::Relaxed));
        if before == state {
            return;
        }
        let dir = self.dir.display();
        match state {
            SpaceState::Ok => {
                tracing::info!(store = %dir, free_bytes = room, total_bytes, "disk space is back to normal")
            }
            SpaceState::Low => tracing::warn!(
                store = %dir,
                free_bytes = room,
                total_bytes,
                low_percent = self.low_percent,
                reserve_bytes = self.reserve_bytes,
                "disk space is low: writes will be refused once only the reserve is left"
            ),
            SpaceState::Full => tracing::error!(
                store = %dir,
                free_bytes = room,
                total_bytes,
                reserve_bytes = self.reserve_bytes,
                "disk is full: writes and creations are refused (NFS3ERR_NOSPC); removals and truncations still work"
            ),
        }
    }

    /// Data files could not be written for lack of room (`Some`), or can
    /// again (`None`).
    pub(crate) fn set_stalled(&self, why: Option<String>) {
        let mut s = self.stalled.lock();
        match (&*s, &why) {
            (None, Some(w)) => {
                tracing::error!(store = %self.dir.display(), error = %w, "data files cannot be written for lack of room; retrying, reads are served from memory")
            }
            (Some(_), None) => {
                tracing::info!(store = %self.dir.display(), "data files are being written again")
            }
            _ => {}
        }
        *s = why;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(free: u64) -> Space {
        let faults = std::sync::Arc::new(SpaceFaults::default());
        faults.set_free_bytes(Some(free));
        Space::new(Path::new("/nonexistent"), 8 << 20, 10, Some(faults)).unwrap()
    }

    #[test]
    fn growth_stops_at_the_reserve_and_freeing_may_use_it() {
        let s = space(9 << 20);
        assert!(s.admit(Need::Grows, 512 << 10, 0).is_ok());
        assert!(matches!(
            s.admit(Need::Grows, 2 << 20, 0),
            Err(StoreError::DiskFull(_))
        ));
        // What is accepted but not written counts as used.
        assert!(matches!(
            s.admit(Need::Grows, 512 << 10, 1 << 20),
            Err(StoreError::DiskFull(_))
        ));
        assert!(s.admit(Need::Frees, 4096, 0).is_ok());
        let none = space(1024);
        assert!(matches!(
            none.admit(Need::Frees, 4096, 0),
            Err(StoreError::DiskFull(_))
        ));
    }

    #[test]
    fn states_follow_the_room_above_the_reserve() {
        // The pretended disk is 1 GiB: 4 MiB above the reserve is low.
        assert_eq!(space(512 << 20).report(0).unwrap().state, SpaceState::Ok);
        let low = space(12 << 20).report(0).unwrap();
        assert_eq!(low.state, SpaceState::Low);
        assert_eq!(low.free_bytes, 12 << 20);
        assert_eq!(space(9 << 20).report(0).unwrap().state, SpaceState::Full);
        // A refused batch larger than any write keeps it full while it
        // would still not fit, not longer.
        let s = space(20 << 20);
        assert_eq!(s.report(0).unwrap().state, SpaceState::Low);
        assert!(s.admit(Need::Grows, 16 << 20, 0).is_err());
        assert_eq!(s.report(0).unwrap().state, SpaceState::Full);
        assert!(s.admit(Need::Grows, 4096, 0).is_ok());
        assert_eq!(s.report(0).unwrap().state, SpaceState::Low);
        let s = space(512 << 20);
        s.set_stalled(Some("ENOSPC".into()));
        assert_eq!(s.report(0).unwrap().state, SpaceState::Full);
        s.set_stalled(None);
        assert_eq!(s.report(0).unwrap().state, SpaceState::Ok);
    }

    #[test]
    fn settings_outside_their_range_are_refused() {
        let d = Path::new("/");
        assert!(Space::new(d, MIN_RESERVE_BYTES - 1, 10, None).is_err());
        assert!(Space::new(d, MAX_RESERVE_BYTES + 1, 10, None).is_err());
        assert!(Space::new(d, DEFAULT_RESERVE_BYTES, 0, None).is_err());
        assert!(Space::new(d, DEFAULT_RESERVE_BYTES, 91, None).is_err());
        assert!(Space::new(d, DEFAULT_RESERVE_BYTES, 10, None).is_ok());
    }
}
