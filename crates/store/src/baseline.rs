//! The first copy of a vserver at a replica (the baseline), taken while
//! clients keep writing at the active site.
//!
//! A baseline is "the state at LSN X + data files read after X + the journal
//! from X+1", the same argument that makes checkpoint recovery exact
//! (docs/design.md):
//!
//! * Active side: `Store::baseline_begin` copies the state at X under the
//!   lock, waits until X is durable, applies the waiting data changes up to
//!   X and keeps the journal from X+1 (retention floor). `baseline_read`
//!   then reads data files as they are *now*: only durable changes ever
//!   reach them, applied in LSN order, so every byte read is that byte's
//!   value at some durable LSN Y >= X.
//! * Replica side: `BaselineInstall` receives the state first (kept in
//!   `baseline.state`, so a resumed copy never needs it again), then file
//!   bytes, and `finish` sets every copied file to its size at X, writes
//!   the state as the checkpoint and turns the directory into a replica at
//!   LSN X. Applying frames X+1.. then gives the active's exact contents:
//!   per byte, each operation either sets it (a write covering it, a
//!   truncation below it, a removal) or leaves it (or, when absent, zero-
//!   fills it), and compositions of such maps are idempotent, so replaying
//!   X+1.. over the byte's value at Y equals replaying it over its value at
//!   X. Setting each file to its size at X makes bytes past that size absent,
//!   as they were at X.
//!
//! Until `finish`, the directory holds a `BASELINE` file (the LSN, the
//! state's length and checksum, whether the state is complete, and the copy
//! position up to which data is durable). `Store::open` refuses such a
//! directory (nothing half-copied is ever served), and `BaselineInstall::
//! begin` with the same LSN and state resumes from the recorded position.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::checkpoint::{self, MAX_CHECKPOINT_BYTES};
use crate::data::{sync_dir, DataFiles};
use crate::error::StoreError;
use crate::journal::{list_segments, SEGMENT_HEADER_BYTES};
use crate::replica::{ROLE_FILE, ROLE_REPLICA};
use crate::state::State;
use crate::store::{Store, StoreOptions, FORMAT_FILE, FORMAT_TEXT};
use crate::types::{check_mark, le_u32, le_u64, seal_mark, FileType, Ino, Lsn};

/// Marks a directory whose baseline is being installed; holds the progress.
pub const BASELINE_FILE: &str = "BASELINE";
/// The state (postcard, as a checkpoint payload) as received.
pub const BASELINE_STATE_FILE: &str = "baseline.state";
const BASELINE_MAGIC: &[u8; 8] = b"TANDEMB\0";
const BASELINE_VERSION: u32 = 1;
const BASELINE_FILE_BYTES: usize = 56;
/// Largest piece of file data read or written at once: one wire message
/// carries one piece, and this bounds the memory each holds.
pub const MAX_BASELINE_CHUNK_BYTES: usize = 1 << 20;
/// Largest piece of the state written at once.
pub const MAX_BASELINE_STATE_PIECE_BYTES: usize = 4 << 20;
/// The copy position is made durable at least this often (data bytes), so
/// a resumed copy repeats at most this much.
pub const BASELINE_SYNC_EVERY_BYTES: u64 = 64 << 20;
/// Data-file descriptors the install keeps open.
const INSTALL_OPEN_FILES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} already holds a store; a baseline goes into an empty directory or a replica that never received a record")]
    NotEmpty(PathBuf),
    #[error("baseline state is corrupt: {0}")]
    StateCorrupt(String),
    #[error("baseline LSN mismatch: the install is for LSN {expected}, got {got}")]
    LsnMismatch { expected: Lsn, got: Lsn },
    #[error("baseline state of {len_bytes} bytes exceeds the {max_bytes}-byte limit")]
    StateTooLarge { len_bytes: u64, max_bytes: u64 },
    #[error("baseline state piece at offset {offset} of {len_bytes} bytes does not continue the {received_bytes} received (of {state_len_bytes})")]
    StateOutOfOrder {
        offset: u64,
        len_bytes: usize,
        received_bytes: u64,
        state_len_bytes: u64,
    },
    #[error("baseline data arrived before the whole state")]
    StateMissing,
    #[error("inode {ino} is not a regular file of the baseline state")]
    UnknownInode { ino: Ino },
    #[error("chunk of inode {ino} at offset {offset} ({len_bytes} bytes) goes past its baseline size of {size_bytes} bytes")]
    BeyondSize {
        ino: Ino,
        offset: u64,
        len_bytes: usize,
        size_bytes: u64,
    },
    #[error("piece of {len_bytes} bytes exceeds the {max_bytes}-byte limit")]
    ChunkTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("{0} is not a replica store; a catch-up goes into a replica")]
    NotReplica(PathBuf),
    #[error(
        "the replica holds LSN {replica_lsn}; this catch-up covers replicas at {from_lsn}..={lsn}"
    )]
    NotCovered {
        replica_lsn: Lsn,
        from_lsn: Lsn,
        lsn: Lsn,
    },
    #[error("catch-up piece of inode {ino} at offset {offset} does not follow the previous one")]
    OutOfOrder { ino: Ino, offset: u64 },
    #[error("catch-up ranges exceed the {max_bytes} bytes announced")]
    TooMuchData { max_bytes: u64 },
    #[error("catch-up ended after {got_bytes} of the {want_bytes} range bytes announced")]
    Incomplete { got_bytes: u64, want_bytes: u64 },
}

pub type BaselineResult<T> = std::result::Result<T, BaselineError>;

/// One regular file to copy: its inode and its size at the baseline LSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineFile {
    pub ino: Ino,
    pub size: u64,
}

/// What the active site sends: the state at `lsn` and what to copy.
#[derive(Debug, Clone)]
pub struct BaselineSnapshot {
    pub lsn: Lsn,
    pub epoch: u64,
    /// The state at `lsn`, postcard-encoded (as a checkpoint's payload).
    pub state: Bytes,
    /// CRC-32C of `state`: identifies this baseline when a copy resumes.
    pub state_crc: u32,
    /// Regular inodes at `lsn`, ascending, with their sizes.
    pub files: Vec<BaselineFile>,
    /// Sum of the sizes: the bytes to copy (holes included).
    pub total_bytes: u64,
}

/// Where an install stands; `done_bytes` counts every byte before
/// (`next_ino`, `next_offset`) in copy order, holes included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineProgress {
    pub lsn: Lsn,
    pub state_len: u64,
    pub state_crc: u32,
    pub state_received: bool,
    pub next_ino: Ino,
    pub next_offset: u64,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// The files a baseline copies, in copy order (ascending inode number).
fn copy_list(state: &State) -> Vec<BaselineFile> {
    state
        .inodes
        .iter()
        .filter(|(_, i)| i.attr.ftype == FileType::Regular)
        .map(|(&ino, i)| BaselineFile {
            ino,
            size: i.attr.size,
        })
        .collect()
}

impl Store {
    /// Starts a baseline at the current LSN X: the state at X (encoded),
    /// with X durable and every data change up to X in the data files, and
    /// the journal from X+1 kept across checkpoints (retention floor, never
    /// raised by this call). Blocks (journal sync): call from a blocking
    /// context.
    pub fn baseline_begin(&self) -> crate::Result<BaselineSnapshot> {
        // The replica starts afresh: no catch-up will be needed.
        self.overflow_reset()?;
        let state = {
            // The write lock orders this against a checkpoint's copy of the
            // state: one taken later also sees the floor below, so it never
            // deletes frames after X.
            let st = self.write_state();
            let floor = &self.checkpointer.retention_floor;
            let current = floor.load(std::sync::atomic::Ordering::Relaxed);
            floor.store(current.min(st.lsn), std::sync::atomic::Ordering::Relaxed);
            st.clone()
        };
        self.wait_durable_blocking(state.lsn)?;
        self.pending.apply_durable(&self.data, state.lsn)?;
        let encoded = postcard::to_stdvec(&state)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode baseline state: {e}")))?;
        let files = copy_list(&state);
        let total_bytes = files.iter().map(|f| f.size).sum();
        Ok(BaselineSnapshot {
            lsn: state.lsn,
            epoch: state.epoch,
            state_crc: crc32c::crc32c(&encoded),
            state: Bytes::from(encoded),
            files,
            total_bytes,
        })
    }

    /// Reads up to `max_bytes` (at most `MAX_BASELINE_CHUNK_BYTES`) of
    /// `ino`'s data file at `offset`, as it is now: only durable changes
    /// reach data files, so this never shows a write that a crash could
    /// lose. Shorter than asked at the file's end (empty past it); `NoEnt`
    /// if the file was removed since the baseline began (its removal is in
    /// the journal after X, so the copy may skip it).
    pub fn baseline_read(&self, ino: Ino, offset: u64, max_bytes: usize) -> crate::Result<Bytes> {
        let path = self.data.path_of(ino);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NoEnt),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let mut buf = vec![0u8; max_bytes.min(MAX_BASELINE_CHUNK_BYTES)];
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], offset.saturating_add(done as u64)) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
        buf.truncate(done);
        Ok(Bytes::from(buf))
    }

    /// Starts or resumes installing a baseline in `dir` (see
    /// `BaselineInstall::begin`).
    pub fn baseline_install_begin(
        dir: &Path,
        lsn: Lsn,
        state_len: u64,
        state_crc: u32,
    ) -> BaselineResult<BaselineInstall> {
        BaselineInstall::begin(dir, lsn, state_len, state_crc)
    }
}

/// Whether `dir` holds a baseline being installed, and how far it got.
/// `None` if it does not; an unreadable progress file is `Corrupt`.
pub fn baseline_in_progress(dir: &Path) -> crate::Result<Option<BaselineProgress>> {
    let path = dir.join(BASELINE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let mark = parse_mark(&bytes)
        .map_err(|why| StoreError::Corrupt(format!("{}: {why}", path.display())))?;
    // done/total need the state; report what the file alone says.
    Ok(Some(BaselineProgress {
        lsn: mark.lsn,
        state_len: mark.state_len,
        state_crc: mark.state_crc,
        state_received: mark.state_received,
        next_ino: mark.next_ino,
        next_offset: mark.next_offset,
        done_bytes: 0,
        total_bytes: 0,
    }))
}

/// `Store::open` refuses a directory whose baseline is not finished: its
/// files are a mix of several moments and match no state.
pub(crate) fn refuse_if_in_progress(dir: &Path) -> crate::Result<()> {
    if dir.join(BASELINE_FILE).exists() {
        return Err(StoreError::Replication(format!(
            "{}: a baseline is being installed; it opens once the copy finishes",
            dir.display()
        )));
    }
    Ok(())
}

/// The durable content of `BASELINE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    lsn: Lsn,
    state_len: u64,
    state_crc: u32,
    state_received: bool,
    next_ino: Ino,
    next_offset: u64,
}

/// Layout (little-endian): magic "TANDEMB\0" | version u32 | flags u32 (bit
/// 0: state received) | lsn u64 | state_len u64 | next_ino u64 |
/// next_offset u64 | state_crc u32 | crc32c of bytes 0..52 u32.
fn encode_mark(m: &Mark) -> [u8; BASELINE_FILE_BYTES] {
    let mut b = [0u8; BASELINE_FILE_BYTES];
    b[12..16].copy_from_slice(&u32::from(m.state_received).to_le_bytes());
    b[16..24].copy_from_slice(&m.lsn.to_le_bytes());
    b[24..32].copy_from_slice(&m.state_len.to_le_bytes());
    b[32..40].copy_from_slice(&m.next_ino.to_le_bytes());
    b[40..48].copy_from_slice(&m.next_offset.to_le_bytes());
    b[48..52].copy_from_slice(&m.state_crc.to_le_bytes());
    seal_mark(&mut b, BASELINE_MAGIC, BASELINE_VERSION);
    b
}

fn parse_mark(b: &[u8]) -> std::result::Result<Mark, String> {
    check_mark(
        b,
        BASELINE_FILE_BYTES,
        BASELINE_MAGIC,
        BASELINE_VERSION,
        "baseline progress",
    )?;
    Ok(Mark {
        state_received: le_u32(b, 12) & 1 == 1,
        lsn: le_u64(b, 16),
        state_len: le_u64(b, 24),
        next_ino: le_u64(b, 32),
        next_offset: le_u64(b, 40),
        state_crc: le_u32(b, 48),
    })
}

/// A data piece may be at most `MAX_BASELINE_CHUNK_BYTES` (baseline and
/// catch-up installs alike).
pub(crate) fn check_chunk_len(bytes: &[u8]) -> BaselineResult<()> {
    if bytes.len() > MAX_BASELINE_CHUNK_BYTES {
        return Err(BaselineError::ChunkTooLarge {
            len_bytes: bytes.len(),
            max_bytes: MAX_BASELINE_CHUNK_BYTES,
        });
    }
    Ok(())
}

fn write_mark(dir: &Path, m: &Mark) -> crate::Result<()> {
    crate::data::write_atomically(dir, BASELINE_FILE, &encode_mark(m))
}

/// A baseline being installed into a directory (the replica side). Holds
/// the directory's lock, so no store can open it meanwhile.
pub struct BaselineInstall {
    dir: PathBuf,
    data: DataFiles,
    mark: Mark,
    resumed: bool,
    /// State bytes received so far (all of them once `mark.state_received`).
    state_received_bytes: u64,
    /// The decoded state and its copy list, once the state is complete.
    state: Option<(State, Vec<BaselineFile>, Vec<u64>)>,
    /// Data bytes written since the position was last made durable.
    unsynced_bytes: u64,
    _lock: File,
}

impl BaselineInstall {
    /// Starts installing the baseline at `lsn` whose state is `state_len`
    /// bytes with CRC `state_crc`, into `dir`: an empty or absent
    /// directory, a replica that never received a record, or one holding an
    /// unfinished baseline. The same baseline (LSN, length, CRC) resumes
    /// where its progress says; any other one is discarded first (it can
    /// never be finished: its journal suffix belongs to another snapshot).
    pub fn begin(
        dir: &Path,
        lsn: Lsn,
        state_len: u64,
        state_crc: u32,
    ) -> BaselineResult<BaselineInstall> {
        if state_len > MAX_CHECKPOINT_BYTES {
            return Err(BaselineError::StateTooLarge {
                len_bytes: state_len,
                max_bytes: MAX_CHECKPOINT_BYTES,
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let lock = crate::store::lock_dir(dir)?;
        let existing = match std::fs::read(dir.join(BASELINE_FILE)) {
            Ok(b) => Some(parse_mark(&b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(dir.join(BASELINE_FILE), e).into()),
        };
        if existing.is_none() {
            check_reusable(dir)?;
        }
        let fresh = Mark {
            lsn,
            state_len,
            state_crc,
            state_received: false,
            next_ino: 0,
            next_offset: 0,
        };
        let mut install = BaselineInstall {
            dir: dir.to_path_buf(),
            data: DataFiles::new(dir.join("data"), INSTALL_OPEN_FILES)?,
            mark: fresh,
            resumed: false,
            state_received_bytes: 0,
            state: None,
            unsynced_bytes: 0,
            _lock: lock,
        };
        match existing {
            Some(Ok(m)) if m.lsn == lsn && m.state_len == state_len && m.state_crc == state_crc => {
                install.mark = m;
                install.resumed = true;
                if m.state_received {
                    match install.load_state() {
                        Ok(()) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "received baseline state unreadable; receiving it again");
                            install.mark.state_received = false;
                            install.mark.next_ino = 0;
                            install.mark.next_offset = 0;
                            write_mark(dir, &install.mark)?;
                        }
                    }
                } else {
                    install.mark.next_ino = 0;
                    install.mark.next_offset = 0;
                }
            }
            other => {
                if let Some(Err(why)) = &other {
                    tracing::warn!(dir = %dir.display(), %why, "unreadable baseline progress; starting over");
                } else if other.is_some() {
                    tracing::info!(dir = %dir.display(), lsn, "discarding an unfinished baseline of another snapshot");
                }
                install.start_over()?;
            }
        }
        Ok(install)
    }

    /// Everything of a previous attempt goes; the progress mark is written
    /// first, so a crash at any point leaves a directory that `open`
    /// refuses and `begin` takes again.
    fn start_over(&mut self) -> BaselineResult<()> {
        write_mark(&self.dir, &self.mark)?;
        let data_dir = self.dir.join("data");
        match std::fs::remove_dir_all(&data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&data_dir, e).into()),
        }
        self.data = DataFiles::new(data_dir, INSTALL_OPEN_FILES)?;
        let state_path = self.dir.join(BASELINE_STATE_FILE);
        match std::fs::remove_file(&state_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&state_path, e).into()),
        }
        let journal = self.dir.join("journal");
        std::fs::create_dir_all(&journal).map_err(|e| StoreError::io(&journal, e))?;
        for seg in list_segments(&journal)? {
            std::fs::remove_file(&seg.path).map_err(|e| StoreError::io(&seg.path, e))?;
        }
        for (name, text) in [(FORMAT_FILE, FORMAT_TEXT), (ROLE_FILE, ROLE_REPLICA)] {
            let path = self.dir.join(name);
            std::fs::write(&path, text).map_err(|e| StoreError::io(&path, e))?;
        }
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Whether this install continues an earlier attempt.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    pub fn lsn(&self) -> Lsn {
        self.mark.lsn
    }

    /// Where the copy stands. A sender resumes from (`next_ino`,
    /// `next_offset`); before the state is complete that is the start.
    pub fn progress(&self) -> BaselineProgress {
        let (done_bytes, total_bytes) = match &self.state {
            Some((_, files, starts)) => {
                let total = starts.last().copied().unwrap_or(0);
                (
                    done_at(files, starts, self.mark.next_ino, self.mark.next_offset),
                    total,
                )
            }
            None => (0, 0),
        };
        BaselineProgress {
            lsn: self.mark.lsn,
            state_len: self.mark.state_len,
            state_crc: self.mark.state_crc,
            state_received: self.mark.state_received,
            next_ino: self.mark.next_ino,
            next_offset: self.mark.next_offset,
            done_bytes,
            total_bytes,
        }
    }

    /// Appends a piece of the encoded state; pieces come in order from
    /// offset 0. The last one checks the whole (CRC, decoding, LSN) and
    /// makes it durable.
    pub fn write_state(&mut self, offset: u64, bytes: &[u8]) -> BaselineResult<()> {
        if self.mark.state_received {
            return Err(BaselineError::StateOutOfOrder {
                offset,
                len_bytes: bytes.len(),
                received_bytes: self.state_received_bytes,
                state_len_bytes: self.mark.state_len,
            });
        }
        let path = self.dir.join(BASELINE_STATE_FILE);
        let f = write_state_piece(
            &path,
            offset,
            bytes,
            self.state_received_bytes,
            self.mark.state_len,
        )?;
        self.state_received_bytes += bytes.len() as u64;
        if self.state_received_bytes == self.mark.state_len {
            f.sync_all().map_err(|e| StoreError::io(&path, e))?;
            drop(f);
            self.load_state()?;
            self.mark.state_received = true;
            write_mark(&self.dir, &self.mark)?;
        }
        Ok(())
    }

    /// Reads back, checks and decodes the received state.
    fn load_state(&mut self) -> BaselineResult<()> {
        let bytes = read_state_file(&self.dir.join(BASELINE_STATE_FILE), self.mark.state_len)?;
        let state = decode_state(&bytes, self.mark.state_crc, self.mark.lsn)?;
        let files = copy_list(&state);
        // starts[i] = bytes before file i in copy order; the last entry is
        // the total.
        let mut starts = Vec::with_capacity(files.len() + 1);
        let mut sum = 0u64;
        for f in &files {
            starts.push(sum);
            sum = sum.saturating_add(f.size);
        }
        starts.push(sum);
        self.state_received_bytes = self.mark.state_len;
        self.state = Some((state, files, starts));
        Ok(())
    }

    /// Writes a piece of `ino`'s data at `offset`. `ino` must be a regular
    /// file of the baseline state and the piece within its size there.
    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> BaselineResult<()> {
        check_chunk_len(bytes)?;
        let Some((_, files, _)) = &self.state else {
            return Err(BaselineError::StateMissing);
        };
        let Ok(i) = files.binary_search_by_key(&ino, |f| f.ino) else {
            return Err(BaselineError::UnknownInode { ino });
        };
        let size = files[i].size;
        let end = offset.checked_add(bytes.len() as u64);
        if end.is_none_or(|e| e > size) {
            return Err(BaselineError::BeyondSize {
                ino,
                offset,
                len_bytes: bytes.len(),
                size_bytes: size,
            });
        }
        self.data.write(ino, offset, bytes)?;
        let end = offset + bytes.len() as u64;
        if (ino, end) > (self.mark.next_ino, self.mark.next_offset) {
            self.mark.next_ino = ino;
            self.mark.next_offset = end;
        }
        self.unsynced_bytes += bytes.len() as u64;
        if self.unsynced_bytes >= BASELINE_SYNC_EVERY_BYTES {
            self.sync_progress()?;
        }
        Ok(())
    }

    /// Makes the data written so far durable, then records the position,
    /// so a resumed copy starts from here.
    pub fn sync_progress(&mut self) -> BaselineResult<()> {
        self.data.sync_dirty()?;
        write_mark(&self.dir, &self.mark)?;
        self.unsynced_bytes = 0;
        Ok(())
    }

    /// Ends the install: every copied file set to its size at the baseline
    /// LSN (bytes past it are absent, as they were then), data made
    /// durable, the state written as the checkpoint, and the progress mark
    /// removed, which is the moment the directory becomes a replica at LSN
    /// `lsn`. Opens and returns it.
    pub fn finish(mut self, lsn: Lsn, opts: StoreOptions) -> BaselineResult<Store> {
        if lsn != self.mark.lsn {
            return Err(BaselineError::LsnMismatch {
                expected: self.mark.lsn,
                got: lsn,
            });
        }
        let Some((state, files, _)) = self.state.take() else {
            return Err(BaselineError::StateMissing);
        };
        for f in &files {
            self.data.set_len(f.ino, f.size)?;
        }
        self.data.sync_dirty()?;
        // Writes of an earlier attempt after its last recorded position
        // were never synced by this process: sync the whole file system.
        syncfs(&self.dir.join("data"))?;
        checkpoint::write(&self.dir, &state)?;
        let state_path = self.dir.join(BASELINE_STATE_FILE);
        match std::fs::remove_file(&state_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&state_path, e).into()),
        }
        let mark = self.dir.join(BASELINE_FILE);
        std::fs::remove_file(&mark).map_err(|e| StoreError::io(&mark, e))?;
        sync_dir(&self.dir)?;
        let dir = self.dir.clone();
        // Releases the lock before the store takes it.
        drop(self);
        tracing::info!(dir = %dir.display(), lsn, "baseline installed");
        Ok(Store::open_replica(&dir, opts)?)
    }
}

/// Writes the state piece at `offset` into `path`; pieces must come in
/// order (`offset == received`) and fit `state_len`. Returns the open file
/// so the caller can sync it once complete. Shared with catch-up installs.
pub(crate) fn write_state_piece(
    path: &Path,
    offset: u64,
    bytes: &[u8],
    received: u64,
    state_len: u64,
) -> BaselineResult<File> {
    if bytes.len() > MAX_BASELINE_STATE_PIECE_BYTES {
        return Err(BaselineError::ChunkTooLarge {
            len_bytes: bytes.len(),
            max_bytes: MAX_BASELINE_STATE_PIECE_BYTES,
        });
    }
    let fits = offset
        .checked_add(bytes.len() as u64)
        .is_some_and(|end| end <= state_len);
    if offset != received || !fits {
        return Err(BaselineError::StateOutOfOrder {
            offset,
            len_bytes: bytes.len(),
            received_bytes: received,
            state_len_bytes: state_len,
        });
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(offset == 0)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    f.write_all_at(bytes, offset)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(f)
}

/// Reads a received state back; it must be exactly `state_len` bytes.
pub(crate) fn read_state_file(path: &Path, state_len: u64) -> BaselineResult<Vec<u8>> {
    let mut bytes = Vec::new();
    let len = File::open(path)
        .and_then(|f| f.take(state_len.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(|e| StoreError::io(path, e))?;
    if len as u64 != state_len {
        return Err(BaselineError::StateCorrupt(format!(
            "{len} bytes received, {state_len} announced"
        )));
    }
    Ok(bytes)
}

/// Checks a received state (CRC, decoding, LSN) and decodes it. Shared
/// with catch-up installs.
pub(crate) fn decode_state(bytes: &[u8], crc: u32, lsn: Lsn) -> BaselineResult<State> {
    let got = crc32c::crc32c(bytes);
    if got != crc {
        return Err(BaselineError::StateCorrupt(format!(
            "checksum {got:#010x}, {crc:#010x} announced"
        )));
    }
    let state: State = postcard::from_bytes(bytes)
        .map_err(|e| BaselineError::StateCorrupt(format!("undecodable: {e}")))?;
    if state.lsn != lsn {
        return Err(BaselineError::LsnMismatch {
            expected: lsn,
            got: state.lsn,
        });
    }
    Ok(state)
}

/// Bytes before (`ino`, `offset`) in copy order.
fn done_at(files: &[BaselineFile], starts: &[u64], ino: Ino, offset: u64) -> u64 {
    match files.binary_search_by_key(&ino, |f| f.ino) {
        Ok(i) => starts[i].saturating_add(offset.min(files[i].size)),
        Err(i) => starts[i],
    }
}

/// A directory a baseline may go into: empty, or a replica that never
/// received a record (what `init_replica` leaves).
fn check_reusable(dir: &Path) -> BaselineResult<()> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let e = e.map_err(|e| StoreError::io(dir, e))?;
        // Our own lock file, just created, does not count.
        if e.file_name() != "LOCK" {
            entries.push(e.file_name());
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    let not_empty = || BaselineError::NotEmpty(dir.to_path_buf());
    if !crate::replica::marked_replica(dir)? || checkpoint::checkpoint_path(dir).exists() {
        return Err(not_empty());
    }
    let journal = dir.join("journal");
    for seg in list_segments(&journal)? {
        let len = std::fs::metadata(&seg.path)
            .map_err(|e| StoreError::io(&seg.path, e))?
            .len();
        if len > SEGMENT_HEADER_BYTES as u64 {
            return Err(not_empty());
        }
    }
    Ok(())
}

pub(crate) fn syncfs(path: &Path) -> crate::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    // SAFETY: syncfs on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(StoreError::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}
