//! What replication needs from the store, and nothing about networks.
//!
//! * The active side reads its durable journal frames back, byte for byte
//!   (`read_frames`), and keeps the segments a replica still lacks across
//!   checkpoints (`set_retention_floor`).
//! * The replica side takes frames as they are (`apply_replicated`): it
//!   checks every one (checksum, LSN sequence, epoch, decodable payload)
//!   before writing anything, appends them to its own journal with the same
//!   LSN and epoch, waits until they are durable, then applies the whole
//!   batch under one hold of the state lock, so a reader sees the state
//!   before the batch or after it, never half of it ("Whole batches").
//!
//! Shipping frames unchanged keeps the replica's journal identical to the
//! active's, so both recover the same way and a later resync can compare
//! them frame by frame.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use bytes::{Bytes, BytesMut};

use crate::error::{Result, StoreError};
use crate::journal::segment::parse_header;
use crate::journal::{
    decode_payload, list_segments, FrameHeader, SegmentInfo, FRAME_HEADER_BYTES, MAX_PAYLOAD_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::pending::{DataOp, DataSink};
use crate::record::{Op, Record};
use crate::state::{Body, State};
use crate::store::{Store, StoreOptions};
use crate::types::{Ino, Lsn};

/// Most frames `apply_replicated` takes in one call: bounds the decoded
/// records held in memory at once.
pub const MAX_APPLY_BATCH_FRAMES: usize = 65_536;
/// Most frame bytes `apply_replicated` takes in one call (a wire message is
/// far smaller; this only stops a caller from queuing without bound).
pub const MAX_APPLY_BATCH_BYTES: usize = 64 << 20;
/// Read buffer for `read_frames`: frames are read sequentially, and most
/// headers are skipped without a system call each.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// One journal frame exactly as it is on disk: header and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub lsn: Lsn,
    pub epoch: u64,
    /// The whole frame: `len | crc32c | lsn | epoch | payload`.
    pub bytes: Bytes,
}

impl RawFrame {
    /// Checks a whole frame (length, limit, checksum) and reads its LSN and
    /// epoch. Bytes from a network go through here before anything else.
    pub fn parse(bytes: Bytes) -> Result<RawFrame> {
        let header = check_frame(&bytes).map_err(StoreError::Replication)?;
        Ok(RawFrame {
            lsn: header.lsn,
            epoch: header.epoch,
            bytes,
        })
    }

    /// The record payload (postcard), without the header.
    pub fn payload(&self) -> &[u8] {
        self.bytes.get(FRAME_HEADER_BYTES..).unwrap_or_default()
    }
}

/// Checks that `bytes` is exactly one well-formed frame; returns its header.
fn check_frame(bytes: &[u8]) -> std::result::Result<FrameHeader, String> {
    let Some(head) = bytes.get(..FRAME_HEADER_BYTES) else {
        return Err(format!(
            "frame of {} bytes is shorter than its {FRAME_HEADER_BYTES}-byte header",
            bytes.len()
        ));
    };
    let mut head_arr = [0u8; FRAME_HEADER_BYTES];
    head_arr.copy_from_slice(head);
    let header = FrameHeader::parse(&head_arr);
    let len = header.payload_len as usize;
    if len > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "frame LSN {}: payload of {len} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit",
            header.lsn
        ));
    }
    let payload = &bytes[FRAME_HEADER_BYTES..];
    if payload.len() != len {
        return Err(format!(
            "frame LSN {}: header says {len} payload bytes, frame holds {}",
            header.lsn,
            payload.len()
        ));
    }
    if !header.verify(payload) {
        return Err(format!("frame LSN {}: checksum mismatch", header.lsn));
    }
    Ok(header)
}

/// The store's replication role and the bookkeeping behind it.
#[derive(Default)]
pub(crate) struct Replication {
    /// A replica refuses local changes; only `apply_replicated` writes.
    pub(crate) replica: AtomicBool,
    /// One batch at a time: a batch's LSNs are checked against the state
    /// before it is appended, so two batches must not interleave. Promotion
    /// holds it too, so it never lands inside a batch.
    pub(crate) applying: Mutex<()>,
    /// Set when a checked batch could still not be applied (its records do
    /// not fit the state: the active site's journal is damaged). The journal
    /// then holds frames the state lacks, so nothing more is taken.
    pub(crate) failed: Mutex<Option<String>>,
    /// Where the last `read_frames` stopped, so the next one (which usually
    /// continues from there) seeks straight to it instead of walking the
    /// segment's frames from its start.
    cursor: Mutex<Option<Cursor>>,
}

#[derive(Debug, Clone)]
struct Cursor {
    /// LSN of the frame at `offset`.
    next_lsn: Lsn,
    segment: PathBuf,
    offset: u64,
}

impl Replication {
    pub(crate) fn is_replica(&self) -> bool {
        self.replica.load(Ordering::Acquire)
    }
}

/// Marks a store directory as a replica, so reopening it by any path
/// (`open` as well as `open_replica`) never makes it writable by accident.
/// Promotion (failover) will remove it.
pub const ROLE_FILE: &str = "ROLE";
pub const ROLE_REPLICA: &str = "replica\n";

/// Whether the directory is marked as a replica; an unknown mark is an
/// error rather than a guess.
pub(crate) fn marked_replica(dir: &Path) -> Result<bool> {
    let role = dir.join(ROLE_FILE);
    match std::fs::read(&role) {
        Ok(t) if t == ROLE_REPLICA.as_bytes() => Ok(true),
        Ok(_) => Err(StoreError::Corrupt(format!(
            "{}: unknown store role",
            role.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(&role, e)),
    }
}

impl Store {
    /// Creates an empty replica store: no record at all, LSN 0. The active
    /// site's first record (LSN 1, which names the vserver) creates the
    /// vserver here too.
    pub fn init_replica(dir: &Path, opts: StoreOptions) -> Result<Store> {
        crate::store::create_store_dir(dir, &[(ROLE_FILE, ROLE_REPLICA)])?;
        Store::open_replica(dir, opts)
    }

    /// Opens an existing store as a replica: recovery is the same as
    /// `open`; afterwards local changes are refused with `ReadOnly`.
    pub fn open_replica(dir: &Path, opts: StoreOptions) -> Result<Store> {
        let store = Store::open(dir, opts)?;
        // Nobody else holds this store yet, so nothing committed before
        // the flag was set.
        store.replication.replica.store(true, Ordering::Release);
        Ok(store)
    }

    /// Whether this store takes its changes from another site.
    pub fn is_replica(&self) -> bool {
        self.replication.is_replica()
    }

    /// Keeps journal segments holding LSNs above `lsn` across checkpoints,
    /// so they can still be shipped to a replica that has only up to `lsn`.
    /// Raise it as the replica acknowledges; the floor is not persisted, so
    /// set it again after every open, before traffic.
    pub fn set_retention_floor(&self, lsn: Lsn) {
        self.checkpointer
            .retention_floor
            .store(lsn, Ordering::Relaxed);
    }

    /// Back to deleting every segment a checkpoint covers.
    pub fn clear_retention_floor(&self) {
        self.checkpointer
            .retention_floor
            .store(u64::MAX, Ordering::Relaxed);
    }

    /// First LSN the journal still holds (`last_lsn() + 1` if it holds
    /// none): a replica behind this needs more than `read_frames`.
    pub fn oldest_retained_lsn(&self) -> Result<Lsn> {
        let segments = list_segments(&self.dir.join("journal"))?;
        Ok(segments
            .first()
            .map(|s| s.first_lsn)
            .unwrap_or_else(|| self.last_lsn() + 1))
    }

    /// Durable frames with LSN > `after_lsn`, in order, exactly as stored:
    /// at most `max_bytes` of them, but at least one if there is one.
    /// `NotRetained` if a checkpoint already deleted the first one asked for.
    pub fn read_frames(&self, after_lsn: Lsn, max_bytes: usize) -> Result<Vec<RawFrame>> {
        let durable = self.durable_lsn();
        let Some(want) = after_lsn.checked_add(1) else {
            return Ok(Vec::new());
        };
        if want > durable {
            return Ok(Vec::new());
        }
        let journal_dir = self.dir.join("journal");
        let segments = list_segments(&journal_dir)?;
        let not_retained = |segments: &[SegmentInfo]| StoreError::NotRetained {
            lsn: want,
            oldest_lsn: segments.first().map_or(durable + 1, |s| s.first_lsn),
        };
        let Some(start) = segments.iter().rposition(|s| s.first_lsn <= want) else {
            return Err(not_retained(&segments));
        };
        let hint = self
            .replication
            .cursor
            .lock()
            .clone()
            .filter(|c| c.next_lsn == want && c.segment == segments[start].path);
        let mut reader = FrameReader {
            want,
            durable,
            max_bytes,
            total_bytes: 0,
            out: Vec::new(),
            cursor: None,
        };
        let mut expect: Option<Lsn> = None;
        for (i, seg) in segments[start..].iter().enumerate() {
            if let Some(e) = expect {
                if seg.first_lsn != e {
                    return Err(StoreError::Corrupt(format!(
                        "journal gap: expected LSN {e}, segment {} starts at {}",
                        seg.path.display(),
                        seg.first_lsn
                    )));
                }
            }
            let from = if i == 0 { hint.as_ref() } else { None };
            match reader.segment(seg, from) {
                Ok(Some(next)) => expect = Some(next),
                Ok(None) => break,
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    // A checkpoint deleted it between listing and reading.
                    return Err(not_retained(&list_segments(&journal_dir)?));
                }
                Err(e) => return Err(e),
            }
        }
        if reader.out.first().map(|f| f.lsn) != Some(want) {
            return Err(StoreError::Corrupt(format!(
                "journal does not hold durable LSN {want}"
            )));
        }
        *self.replication.cursor.lock() = reader.cursor;
        Ok(reader.out)
    }

    /// Waits, without making the journal sync sooner, until some LSN above
    /// `lsn` is durable; returns the durable LSN. Senders use it to ship
    /// frames as soon as they are durable (UNSTABLE writes stay cheap).
    pub async fn wait_durable_past(&self, lsn: Lsn) -> Result<Lsn> {
        let mut rx = self.journal.durable_changes();
        let seen = rx
            .wait_for(|d| d.lsn > lsn || d.failed)
            .await
            .map_err(|_| StoreError::Closed)?;
        if seen.lsn > lsn {
            Ok(seen.lsn)
        } else {
            Err(StoreError::Closed)
        }
    }

    /// Takes a batch of frames from the active site: checks all of them,
    /// appends them to the journal with their LSNs and epochs, waits until
    /// durable, then applies them under one hold of the state lock. If any
    /// frame is bad nothing is written or applied. Returns the new LSN.
    /// Blocks (journal sync): call from a blocking context.
    pub fn apply_replicated(&self, frames: &[RawFrame]) -> Result<Lsn> {
        if !self.is_replica() {
            return Err(StoreError::Replication(
                "this store is active; it takes no replicated frames".into(),
            ));
        }
        let _one = self.replication.applying.lock();
        // Again under the lock: a promotion (promote.rs) may have ended the
        // replica while this batch waited for it.
        if !self.is_replica() {
            return Err(StoreError::Replication(
                "this store was promoted; it takes no replicated frames".into(),
            ));
        }
        if let Some(why) = self.replication.failed.lock().as_ref() {
            return Err(StoreError::Replication(format!(
                "replica stopped after a batch failed to apply: {why}"
            )));
        }
        if let Some(why) = self.data_failure.lock().as_ref() {
            return Err(StoreError::ReadOnly(format!(
                "data files cannot be written: {why}"
            )));
        }
        let (start_lsn, epoch) = {
            let st = self.read_state();
            (st.lsn, st.epoch)
        };
        if frames.is_empty() {
            return Ok(start_lsn);
        }
        if frames.len() > MAX_APPLY_BATCH_FRAMES {
            return Err(StoreError::Replication(format!(
                "batch of {} frames exceeds the {MAX_APPLY_BATCH_FRAMES}-frame limit",
                frames.len()
            )));
        }
        let batch_bytes: usize = frames.iter().map(|f| f.bytes.len()).sum();
        if batch_bytes > MAX_APPLY_BATCH_BYTES {
            return Err(StoreError::Replication(format!(
                "batch of {batch_bytes} bytes exceeds the {MAX_APPLY_BATCH_BYTES}-byte limit"
            )));
        }
        let records = check_batch(frames, start_lsn, epoch)?;
        // Only this thread changes a replica's state, so what the trial
        // finds still holds when the batch is applied for real.
        dry_run(&self.read_state(), frames, &records)?;
        // Whole batches: one that does not fit is refused before anything
        // is written, and the sender offers it again later.
        let space = self.admit_batch(&records)?;
        let last_lsn = start_lsn + frames.len() as u64;
        for f in frames {
            if let Err(e) = self.journal.append_raw(f.lsn, &f.bytes) {
                // Part of the batch may be queued: the journal no longer
                // matches the state, so take nothing more.
                *self.replication.failed.lock() = Some(e.to_string());
                return Err(e);
            }
        }
        // Durable before applied: what a reader sees survives a crash.
        self.journal.wait_durable_blocking(last_lsn)?;
        {
            let mut st = self.write_state();
            for (frame, record) in frames.iter().zip(&records) {
                st.epoch = st.epoch.max(frame.epoch);
                if let Err(e) = st.apply(frame.lsn, record, &*self.pending) {
                    let why = format!("record LSN {} does not fit the state: {e}", frame.lsn);
                    tracing::error!(error = %why, "replicated batch failed to apply; replica stops");
                    *self.replication.failed.lock() = Some(why.clone());
                    return Err(StoreError::Corrupt(why));
                }
            }
        }
        self.after_append(space);
        Ok(last_lsn)
    }

    /// Room for a replicated batch: it may use the reserve only if every
    /// record in it frees space (the active site's removals must reach a
    /// full replica, or it could never empty).
    fn admit_batch(&self, records: &[Record]) -> Result<crate::space::SpaceState> {
        let (need, cost_bytes) = {
            let st = self.read_state();
            records
                .iter()
                .fold((crate::space::Need::Frees, 0u64), |(need, cost), r| {
                    let (n, c) = crate::space::need_of(&r.op, &st);
                    let need = if n == crate::space::Need::Grows {
                        n
                    } else {
                        need
                    };
                    (need, cost.saturating_add(c))
                })
        };
        self.space
            .admit(need, cost_bytes, self.outstanding_bytes())
            .inspect_err(|_| {
                if self.journal.appended_bytes() > 0 {
                    self.checkpointer.request_compacting();
                }
            })
    }
}

/// Checks a batch against the state it must follow: each frame whole and
/// checksummed, its declared LSN and epoch those of its header, LSNs
/// consecutive from `state_lsn + 1`, epochs never below the store's nor
/// going down, payloads decodable. Returns the decoded records.
fn check_batch(frames: &[RawFrame], state_lsn: Lsn, epoch: u64) -> Result<Vec<Record>> {
    let mut records = Vec::with_capacity(frames.len());
    let mut min_epoch = epoch;
    for (expect, f) in (state_lsn + 1..).zip(frames) {
        let header = check_frame(&f.bytes).map_err(StoreError::Replication)?;
        if header.lsn != f.lsn || header.epoch != f.epoch {
            return Err(StoreError::Replication(format!(
                "frame declared as LSN {} epoch {} holds LSN {} epoch {}",
                f.lsn, f.epoch, header.lsn, header.epoch
            )));
        }
        if header.lsn != expect {
            return Err(StoreError::Replication(format!(
                "LSN gap: expected {expect}, got {}",
                header.lsn
            )));
        }
        if header.epoch < min_epoch {
            return Err(StoreError::Fenced {
                ours: min_epoch,
                theirs: header.epoch,
            });
        }
        min_epoch = header.epoch;
        let payload = &f.bytes[FRAME_HEADER_BYTES..];
        let record = decode_payload(payload)
            .map_err(|e| StoreError::Replication(format!("frame LSN {}: {e}", header.lsn)))?;
        records.push(record);
    }
    Ok(records)
}

/// Applies the batch to a scratch state holding only the inodes it touches
/// (copied from `real` as first needed), with data changes discarded. A
/// record that does not fit the state (a missing inode, a reused cookie,
/// an entry that is not there) fails here, before anything is written:
/// without this it would fail halfway through the real apply, after its
/// frames were already durable in the journal.
fn dry_run(real: &State, frames: &[RawFrame], records: &[Record]) -> Result<()> {
    struct Discard;
    impl DataSink for Discard {
        fn data_op(&self, _: Lsn, _: Ino, _: DataOp) -> Result<()> {
            Ok(())
        }
    }
    let mut scratch = State::empty();
    scratch.next_ino = real.next_ino;
    scratch.next_fsid = real.next_fsid;
    scratch.lsn = real.lsn;
    scratch.epoch = real.epoch;
    // Inodes the batch removed: never copied in again from `real`.
    let mut removed: HashSet<Ino> = HashSet::new();
    // Lock state is copied per file as records touch it, or whole.
    let mut all_locks_pulled = false;
    let pull = |scratch: &mut State, removed: &HashSet<Ino>, ino: Ino| {
        if !scratch.inodes.contains_key(&ino) && !removed.contains(&ino) {
            if let Some(inode) = real.inodes.get(&ino) {
                scratch.inodes.insert(ino, inode.clone());
            }
        }
    };
    let entry = |scratch: &State, dir: Ino, name: &[u8]| -> Option<Ino> {
        match &scratch.inodes.get(&dir)?.body {
            Body::Dir(d) => d.entries.get(name).map(|slot| slot.ino),
            _ => None,
        }
    };
    for (frame, record) in frames.iter().zip(records) {
        // Inodes that may go away with this record, to note if they do.
        let mut victims: Vec<Ino> = Vec::new();
        match &record.op {
            Op::VserverCreated { .. }
            | Op::AddressAdded { .. }
            | Op::UserAdded { .. }
            | Op::EpochRaised { .. }
            | Op::MountAdded { .. }
            | Op::MountRemoved { .. } => {}
            Op::FsCreated { fs, .. } => pull(&mut scratch, &removed, fs.root_ino),
            Op::SetAttr { ino, .. } | Op::Write { ino, .. } => pull(&mut scratch, &removed, *ino),
            Op::Create { dir, inode, .. } => {
                pull(&mut scratch, &removed, *dir);
                pull(&mut scratch, &removed, inode.attr.ino);
            }
            Op::Unlink { dir, name, .. } => {
                pull(&mut scratch, &removed, *dir);
                victims.extend(entry(&scratch, *dir, name));
            }
            Op::Rename {
                from_dir,
                from_name,
                to_dir,
                to_name,
                ..
            } => {
                pull(&mut scratch, &removed, *from_dir);
                pull(&mut scratch, &removed, *to_dir);
                victims.extend(entry(&scratch, *from_dir, from_name));
                victims.extend(entry(&scratch, *to_dir, to_name));
            }
            Op::Link { ino, dir, .. } => {
                pull(&mut scratch, &removed, *ino);
                pull(&mut scratch, &removed, *dir);
            }
            Op::LockGranted { ino, .. }
            | Op::LockReleased { ino, .. }
            | Op::ShareGranted { ino, .. }
            | Op::ShareReleased { ino, .. } => {
                pull(&mut scratch, &removed, *ino);
                if !all_locks_pulled && !removed.contains(ino) {
                    scratch.locks.pull_file(&real.locks, *ino);
                }
            }
            // Host-wide: the whole table, once (these are rare).
            Op::HostLocksFreed { .. }
            | Op::HostRebooted { .. }
            | Op::HostMonitored { .. }
            | Op::HostUnmonitored { .. } => {
                if !all_locks_pulled {
                    scratch.locks.pull_all(&real.locks);
                    for ino in &removed {
                        scratch.locks.forget_inode(*ino);
                    }
                    all_locks_pulled = true;
                }
            }
        }
        for &v in &victims {
            pull(&mut scratch, &removed, v);
            // A removed directory's parent loses a link: it is the
            // directory the entry was in, pulled above.
        }
        scratch.apply(frame.lsn, record, &Discard).map_err(|e| {
            StoreError::Replication(format!(
                "frame LSN {} ({}) does not fit the replica's state: {e}",
                frame.lsn,
                record.op.kind()
            ))
        })?;
        for v in victims {
            if !scratch.inodes.contains_key(&v) {
                removed.insert(v);
            }
        }
    }
    Ok(())
}

/// Reads frames out of segment files for `read_frames`.
struct FrameReader {
    want: Lsn,
    durable: Lsn,
    max_bytes: usize,
    total_bytes: usize,
    out: Vec<RawFrame>,
    cursor: Option<Cursor>,
}

impl FrameReader {
    /// Reads the wanted frames of one segment, starting at `from` if given.
    /// `Some(next_lsn)` when the segment ended and the next one should be
    /// read; `None` when done (durable end or byte budget reached).
    fn segment(&mut self, seg: &SegmentInfo, from: Option<&Cursor>) -> Result<Option<Lsn>> {
        let path = &seg.path;
        let io = |e: std::io::Error| StoreError::io(path, e);
        let corrupt = |offset: u64, why: &str| crate::journal::reader::corrupt(path, offset, why);
        let mut r = BufReader::with_capacity(READ_BUFFER_BYTES, File::open(path).map_err(io)?);
        let mut head = [0u8; SEGMENT_HEADER_BYTES];
        r.read_exact(&mut head).map_err(io)?;
        let first_lsn = parse_header(&head, path)?;
        if first_lsn != seg.first_lsn {
            return Err(corrupt(0, "header LSN differs from file name"));
        }
        let (mut lsn, mut offset) = (first_lsn, SEGMENT_HEADER_BYTES as u64);
        if let Some(c) = from {
            r.seek(SeekFrom::Start(c.offset)).map_err(io)?;
            (lsn, offset) = (c.next_lsn, c.offset);
        }
        loop {
            if lsn > self.durable {
                return Ok(None);
            }
            let mut fh = [0u8; FRAME_HEADER_BYTES];
            match read_full(&mut r, &mut fh).map_err(io)? {
                0 => return Ok(Some(lsn)),
                n if n < FRAME_HEADER_BYTES => {
                    return Err(corrupt(offset, "durable frame cut short"));
                }
                _ => {}
            }
            let header = FrameHeader::parse(&fh);
            if header.lsn != lsn {
                return Err(corrupt(
                    offset,
                    &format!("expected LSN {lsn}, found {}", header.lsn),
                ));
            }
            let len = header.payload_len as usize;
            if len > MAX_PAYLOAD_BYTES {
                return Err(corrupt(offset, "frame length over the limit"));
            }
            let frame_bytes = FRAME_HEADER_BYTES + len;
            if lsn < self.want {
                r.seek_relative(len as i64).map_err(io)?;
            } else {
                if !self.out.is_empty() && self.total_bytes + frame_bytes > self.max_bytes {
                    return Ok(None);
                }
                let mut buf = BytesMut::zeroed(frame_bytes);
                buf[..FRAME_HEADER_BYTES].copy_from_slice(&fh);
                r.read_exact(&mut buf[FRAME_HEADER_BYTES..])
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => {
                            corrupt(offset, "durable frame cut short")
                        }
                        _ => io(e),
                    })?;
                if !header.verify(&buf[FRAME_HEADER_BYTES..]) {
                    return Err(corrupt(offset, "frame checksum mismatch"));
                }
                self.total_bytes += frame_bytes;
                self.out.push(RawFrame {
                    lsn,
                    epoch: header.epoch,
                    bytes: buf.freeze(),
                });
            }
            lsn = lsn
                .checked_add(1)
                .ok_or_else(|| corrupt(offset, "LSN out of range"))?;
            offset += frame_bytes as u64;
            if lsn > self.want {
                self.cursor = Some(Cursor {
                    next_lsn: lsn,
                    segment: path.clone(),
                    offset,
                });
            }
        }
    }
}

/// Reads until `buf` is full or the end of the file; returns bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
