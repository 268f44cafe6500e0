//! Installing a catch-up at a replica (the active side is overflow.rs).
//!
//! The replica's store is closed meanwhile. Everything received goes to a
//! staging area, `catchup/` (the state, and one append-only file of
//! entries), never to live data files, so an interrupted transfer leaves
//! the replica intact at its LSN. `finish` is the switch:
//!
//! 1. the staging is synced and the `CATCHUP` mark ("installing X") is
//!    written (tmp, fsync, rename): from here the install is committed;
//! 2. the staged entries are applied to the data files (blind writes and
//!    zero ranges, disjoint and in ascending order, so redoing them after
//!    a crash gives the same bytes), every regular file is set to its size
//!    at X, data files of inodes not regular at X are removed, all synced;
//! 3. the state is written as the checkpoint at X, the old journal
//!    segments (all at or before X) are deleted, staging and mark removed.
//!
//! `Store::open` on a directory with the mark redoes steps 2-3; staging
//! without the mark is discarded (the transfer never completed).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::baseline::{
    check_chunk_len, decode_state, read_state_file, syncfs, write_state_piece, BaselineError,
    BaselineResult, MAX_BASELINE_CHUNK_BYTES,
};
use crate::checkpoint;
use crate::data::{sync_dir, DataFiles};
use crate::error::StoreError;
use crate::journal;
use crate::state::State;
use crate::store::{Store, StoreOptions};
use crate::types::{check_mark, le_u32, le_u64, seal_mark, FileType, Ino, Lsn};

/// Marks a catch-up being installed (committed: redone by `open`).
pub const CATCHUP_FILE: &str = "CATCHUP";
/// The staging directory.
pub const CATCHUP_DIR: &str = "catchup";
const STATE_FILE: &str = "state";
const ENTRIES_FILE: &str = "entries";
const MARK_MAGIC: &[u8; 8] = b"TANDEMU\0";
const MARK_VERSION: u32 = 1;
const MARK_BYTES: usize = 40;
/// Entry header: ino u64 | offset u64 | len u64 | flags u32 | crc u32.
const ENTRY_HEADER_BYTES: usize = 32;
const FLAG_ZEROS: u32 = 1;
/// Data-file descriptors the install keeps open.
const INSTALL_OPEN_FILES: usize = 64;
/// Zeros written per call where a hole cannot be punched.
const ZERO_PIECE_BYTES: usize = 1 << 20;

/// The durable `CATCHUP` mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    lsn: Lsn,
    state_len: u64,
    state_crc: u32,
}

/// Layout (little-endian): magic "TANDEMU\0" | version u32 | state_crc u32
/// | lsn u64 | state_len u64 | reserved u32 | crc32c of bytes 0..36 u32.
fn encode_mark(m: &Mark) -> [u8; MARK_BYTES] {
    let mut b = [0u8; MARK_BYTES];
    b[12..16].copy_from_slice(&m.state_crc.to_le_bytes());
    b[16..24].copy_from_slice(&m.lsn.to_le_bytes());
    b[24..32].copy_from_slice(&m.state_len.to_le_bytes());
    seal_mark(&mut b, MARK_MAGIC, MARK_VERSION);
    b
}

fn parse_mark(b: &[u8]) -> std::result::Result<Mark, String> {
    check_mark(b, MARK_BYTES, MARK_MAGIC, MARK_VERSION, "catch-up mark")?;
    Ok(Mark {
        state_crc: le_u32(b, 12),
        lsn: le_u64(b, 16),
        state_len: le_u64(b, 24),
    })
}

fn entry_header(ino: Ino, offset: u64, len: u64, flags: u32, bytes: &[u8]) -> [u8; 32] {
    let mut h = [0u8; ENTRY_HEADER_BYTES];
    h[0..8].copy_from_slice(&ino.to_le_bytes());
    h[8..16].copy_from_slice(&offset.to_le_bytes());
    h[16..24].copy_from_slice(&len.to_le_bytes());
    h[24..28].copy_from_slice(&flags.to_le_bytes());
    let mut crc = crc32c::crc32c(&h[0..28]);
    crc = crc32c::crc32c_append(crc, bytes);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn remove_if_there(path: &Path) -> crate::Result<()> {
    let r = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Test hook: where `finish` (and the redo) may stop as if crashed.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The staging is synced, the mark not yet written.
    BeforeMark,
    /// The mark is written, nothing applied.
    AfterMark,
    /// Entries applied, sizes not set.
    AfterEntries,
    /// Data files done, no checkpoint yet.
    AfterData,
    /// Checkpoint written, old journal still there.
    AfterCheckpoint,
}

/// A catch-up being received into a closed replica's directory. Holds the
/// directory's lock, so no store can open it meanwhile.
pub struct CatchupInstall {
    dir: PathBuf,
    mark: Mark,
    state_received: u64,
    state: Option<State>,
    entries: File,
    /// (ino, end) of the last entry: entries must ascend.
    last: Option<(Ino, u64)>,
    /// Range bytes received (data and zeros): exactly the announced total
    /// at the end, never more.
    range_bytes: u64,
    total_bytes: u64,
    _lock: File,
}

/// The replica's LSN in a closed store directory: checkpoint + journal.
pub fn closed_store_lsn(dir: &Path) -> crate::Result<Lsn> {
    let cp = checkpoint::read(dir)?.map_or(0, |s| s.lsn);
    let outcome = journal::scan(&dir.join("journal"), cp, |_| Ok(()))?;
    Ok(outcome.last_lsn.max(cp))
}

impl CatchupInstall {
    /// Starts receiving a catch-up to LSN `lsn` (state `state_len` bytes,
    /// CRC `state_crc`) whose change map covers replicas at `from_lsn` on,
    /// carrying at most `total_bytes` of file data. The directory must be a
    /// closed replica at an LSN in `from_lsn..=lsn`: any records it holds
    /// past `from_lsn` are in the map too.
    pub fn begin(
        dir: &Path,
        from_lsn: Lsn,
        lsn: Lsn,
        state_len: u64,
        state_crc: u32,
        total_bytes: u64,
    ) -> BaselineResult<CatchupInstall> {
        Self::begin_for(
            dir,
            from_lsn,
            lsn,
            (state_len, state_crc),
            total_bytes,
            false,
        )
    }

    /// `begin` for a resync (resync.rs): the directory is a diverged store
    /// whose records after `from_lsn` (the shared LSN) may reach past
    /// `lsn`; they are in the ranges too, and the install drops them.
    pub fn begin_for(
        dir: &Path,
        from_lsn: Lsn,
        lsn: Lsn,
        (state_len, state_crc): (u64, u32),
        total_bytes: u64,
        resync: bool,
    ) -> BaselineResult<CatchupInstall> {
        if state_len > checkpoint::MAX_CHECKPOINT_BYTES {
            return Err(BaselineError::StateTooLarge {
                len_bytes: state_len,
                max_bytes: checkpoint::MAX_CHECKPOINT_BYTES,
            });
        }
        let lock = crate::store::lock_dir(dir)?;
        if !crate::replica::marked_replica(dir)? {
            return Err(BaselineError::NotReplica(dir.to_path_buf()));
        }
        // A committed install left by a crash comes first.
        recover(dir)?;
        let replica_lsn = closed_store_lsn(dir)?;
        if replica_lsn < from_lsn || (replica_lsn > lsn && !resync) {
            return Err(BaselineError::NotCovered {
                replica_lsn,
                from_lsn,
                lsn,
            });
        }
        let staging = dir.join(CATCHUP_DIR);
        remove_if_there(&staging)?;
        // Staged data is held twice for a moment (staging, then data
        // files): refuse up front what would fill the disk.
        let need = total_bytes.saturating_add(state_len);
        let free = free_bytes(dir)?;
        if need > free {
            return Err(StoreError::NoSpace(format!(
                "a catch-up of {need} bytes does not fit the {free} bytes free at {}",
                dir.display()
            ))
            .into());
        }
        std::fs::create_dir_all(&staging).map_err(|e| StoreError::io(&staging, e))?;
        let path = staging.join(ENTRIES_FILE);
        let entries = File::create(&path).map_err(|e| StoreError::io(&path, e))?;
        tracing::info!(dir = %dir.display(), replica_lsn, from_lsn, lsn, total_bytes, "receiving a catch-up");
        Ok(CatchupInstall {
            dir: dir.to_path_buf(),
            mark: Mark {
                lsn,
                state_len,
                state_crc,
            },
            state_received: 0,
            state: None,
            entries,
            last: None,
            range_bytes: 0,
            total_bytes,
            _lock: lock,
        })
    }

    pub fn lsn(&self) -> Lsn {
        self.mark.lsn
    }

    /// The epoch of the received state, once it is all there.
    pub fn epoch(&self) -> Option<u64> {
        self.state.as_ref().map(|s| s.epoch)
    }

    /// Appends a piece of the encoded state; pieces come in order. The
    /// last one checks the whole (CRC, decoding, LSN).
    pub fn write_state(&mut self, offset: u64, bytes: &[u8]) -> BaselineResult<()> {
        let path = self.dir.join(CATCHUP_DIR).join(STATE_FILE);
        let received = if self.state.is_some() {
            self.mark.state_len.saturating_add(1)
        } else {
            self.state_received
        };
        let f = write_state_piece(&path, offset, bytes, received, self.mark.state_len)?;
        self.state_received += bytes.len() as u64;
        if self.state_received == self.mark.state_len {
            f.sync_all().map_err(|e| StoreError::io(&path, e))?;
            let bytes = read_state_file(&path, self.mark.state_len)?;
            self.state = Some(decode_state(&bytes, self.mark.state_crc, self.mark.lsn)?);
        }
        Ok(())
    }

    /// Checks a piece against the state at X and the order; returns its end.
    fn check(&self, ino: Ino, offset: u64, len: u64) -> BaselineResult<u64> {
        let Some(state) = &self.state else {
            return Err(BaselineError::StateMissing);
        };
        let size = match state.inodes.get(&ino) {
            Some(i) if i.attr.ftype == FileType::Regular => i.attr.size,
            _ => return Err(BaselineError::UnknownInode { ino }),
        };
        let end = offset.checked_add(len).filter(|&e| e <= size && len > 0);
        let Some(end) = end else {
            return Err(BaselineError::BeyondSize {
                ino,
                offset,
                len_bytes: usize::try_from(len).unwrap_or(usize::MAX),
                size_bytes: size,
            });
        };
        if self.last.is_some_and(|(li, le)| (ino, offset) < (li, le)) {
            return Err(BaselineError::OutOfOrder { ino, offset });
        }
        Ok(end)
    }

    fn append(
        &mut self,
        ino: Ino,
        offset: u64,
        len: u64,
        flags: u32,
        bytes: &[u8],
    ) -> BaselineResult<()> {
        let end = self.check(ino, offset, len)?;
        let received = self.range_bytes.saturating_add(len);
        if received > self.total_bytes {
            return Err(BaselineError::TooMuchData {
                max_bytes: self.total_bytes,
            });
        }
        let h = entry_header(ino, offset, len, flags, bytes);
        let path = self.dir.join(CATCHUP_DIR).join(ENTRIES_FILE);
        self.entries
            .write_all(&h)
            .and_then(|_| self.entries.write_all(bytes))
            .map_err(|e| StoreError::io(&path, e))?;
        self.last = Some((ino, end));
        self.range_bytes = received;
        Ok(())
    }

    /// Stages `bytes` for `ino` at `offset` (within its size at X).
    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> BaselineResult<()> {
        check_chunk_len(bytes)?;
        self.append(ino, offset, bytes.len() as u64, 0, bytes)
    }

    /// Stages `len` zero bytes for `ino` at `offset`.
    pub fn zeros(&mut self, ino: Ino, offset: u64, len: u64) -> BaselineResult<()> {
        self.append(ino, offset, len, FLAG_ZEROS, &[])
    }

    /// The switch (module doc). Opens and returns the replica at `lsn`.
    pub fn finish(self, lsn: Lsn, opts: StoreOptions) -> BaselineResult<Store> {
        self.finish_until(lsn, opts, None)?
            .ok_or(BaselineError::StateMissing)
    }

    /// `finish`, stopping (as a crash would) at `crash` if given.
    #[doc(hidden)]
    pub fn finish_until(
        self,
        lsn: Lsn,
        opts: StoreOptions,
        crash: Option<CrashPoint>,
    ) -> BaselineResult<Option<Store>> {
        if lsn != self.mark.lsn {
            return Err(BaselineError::LsnMismatch {
                expected: self.mark.lsn,
                got: lsn,
            });
        }
        if self.state.is_none() {
            return Err(BaselineError::StateMissing);
        }
        if self.range_bytes != self.total_bytes {
            return Err(BaselineError::Incomplete {
                got_bytes: self.range_bytes,
                want_bytes: self.total_bytes,
            });
        }
        let staging = self.dir.join(CATCHUP_DIR);
        self.entries
            .sync_all()
            .map_err(|e| StoreError::io(staging.join(ENTRIES_FILE), e))?;
        sync_dir(&staging)?;
        if crash == Some(CrashPoint::BeforeMark) {
            return Ok(None);
        }
        crate::data::write_atomically(&self.dir, CATCHUP_FILE, &encode_mark(&self.mark))?;
        if crash == Some(CrashPoint::AfterMark) {
            return Ok(None);
        }
        if !install(&self.dir, &self.mark, crash)? {
            return Ok(None);
        }
        let dir = self.dir.clone();
        // Releases the lock before the store takes it.
        drop(self);
        tracing::info!(dir = %dir.display(), lsn, "catch-up installed");
        Ok(Some(Store::open_replica(&dir, opts)?))
    }
}

/// Run by `Store::open` under the directory lock: redoes a committed
/// install, discards an uncommitted staging.
pub(crate) fn recover(dir: &Path) -> crate::Result<()> {
    let path = dir.join(CATCHUP_FILE);
    match std::fs::read(&path) {
        Ok(b) => {
            let mark = parse_mark(&b)
                .map_err(|why| StoreError::Corrupt(format!("{}: {why}", path.display())))?;
            tracing::warn!(dir = %dir.display(), lsn = mark.lsn, "finishing a catch-up install a crash interrupted");
            install(dir, &mark, None).map_err(|e| match e {
                BaselineError::Store(s) => s,
                other => StoreError::Corrupt(format!("redoing the catch-up install: {other}")),
            })?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let staging = dir.join(CATCHUP_DIR);
            if staging.exists() {
                tracing::info!(dir = %dir.display(), "discarding an unfinished catch-up transfer");
                remove_if_there(&staging)?;
                sync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) => Err(StoreError::io(&path, e)),
    }
}

/// Steps 2-3 of the module doc; idempotent. `false` if stopped at `crash`.
fn install(dir: &Path, mark: &Mark, crash: Option<CrashPoint>) -> BaselineResult<bool> {
    let staging = dir.join(CATCHUP_DIR);
    let bytes = read_state_file(&staging.join(STATE_FILE), mark.state_len)?;
    let state = decode_state(&bytes, mark.state_crc, mark.lsn)?;
    let data = DataFiles::new(dir.join("data"), INSTALL_OPEN_FILES)?;
    apply_entries(&staging.join(ENTRIES_FILE), &data)?;
    if crash == Some(CrashPoint::AfterEntries) {
        return Ok(false);
    }
    for ino in data.list()? {
        let regular = state
            .inodes
            .get(&ino)
            .is_some_and(|i| i.attr.ftype == FileType::Regular);
        if !regular {
            data.remove(ino)?;
        }
    }
    for (&ino, inode) in &state.inodes {
        if inode.attr.ftype == FileType::Regular {
            data.set_len(ino, inode.attr.size)?;
        }
    }
    data.sync_dirty()?;
    syncfs(&dir.join("data"))?;
    if crash == Some(CrashPoint::AfterData) {
        return Ok(false);
    }
    checkpoint::write(dir, &state)?;
    if crash == Some(CrashPoint::AfterCheckpoint) {
        return Ok(false);
    }
    // Every frame here is at or before X (the replica was at most at X),
    // and the checkpoint at X holds them all; a resync drops its divergent
    // frames here on purpose.
    for seg in journal::list_segments(&dir.join("journal"))? {
        remove_if_there(&seg.path)?;
    }
    remove_if_there(&staging)?;
    remove_if_there(&dir.join(CATCHUP_FILE))?;
    sync_dir(dir)?;
    Ok(true)
}

/// Applies the staged entries in order. They were checked on arrival;
/// their CRCs catch damage since.
fn apply_entries(path: &Path, data: &DataFiles) -> BaselineResult<()> {
    let f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let bad = |why: &str| BaselineError::StateCorrupt(format!("{}: {why}", path.display()));
    let mut buf = Vec::new();
    loop {
        let mut h = [0u8; ENTRY_HEADER_BYTES];
        match r.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(StoreError::io(path, e).into()),
        }
        let (ino, offset, len, flags) =
            (le_u64(&h, 0), le_u64(&h, 8), le_u64(&h, 16), le_u32(&h, 24));
        let zeros = flags & FLAG_ZEROS != 0;
        buf.clear();
        if !zeros {
            if len > MAX_BASELINE_CHUNK_BYTES as u64 {
                return Err(bad("entry longer than a chunk"));
            }
            buf.resize(len as usize, 0);
            r.read_exact(&mut buf).map_err(|_| bad("entry cut short"))?;
        }
        if entry_header(ino, offset, len, flags, &buf) != h {
            return Err(bad("entry checksum mismatch"));
        }
        if zeros {
            zero_range(data, ino, offset, len)?;
        } else {
            data.write(ino, offset, &buf)?;
        }
    }
}

/// Makes [offset, offset+len) of `ino`'s data file read as zeros.
fn zero_range(data: &DataFiles, ino: Ino, offset: u64, len: u64) -> crate::Result<()> {
    let path = data.path_of(ino);
    let file_len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let end = offset.saturating_add(len);
    if offset >= file_len {
        return Ok(());
    }
    if end >= file_len {
        return data.set_len(ino, offset);
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    if punch_hole(&f, offset, len) {
        return Ok(());
    }
    let zeros = vec![0u8; ZERO_PIECE_BYTES];
    let mut at = offset;
    while at < end {
        let n = (end - at).min(ZERO_PIECE_BYTES as u64) as usize;
        f.write_all_at(&zeros[..n], at)
            .map_err(|e| StoreError::io(&path, e))?;
        at += n as u64;
    }
    // Synced with the rest by the install's syncfs.
    Ok(())
}

/// Bytes available to us on the file system holding `dir`.
fn free_bytes(dir: &Path) -> crate::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| StoreError::Inval(format!("{}: NUL in path", dir.display())))?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid
    // NUL-terminated path for the duration of the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(StoreError::io(dir, std::io::Error::last_os_error()));
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn punch_hole(f: &File, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return false;
    };
    // SAFETY: fallocate on a descriptor we own; no memory is involved.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )
    };
    rc == 0
}
