//! Journal overflow: when a replica stays away so long that the journal it
//! lacks would pass `journal_max_bytes`, the active site stops keeping that
//! journal and instead remembers *where* files changed (the change map).
//! When the replica returns it gets a catch-up: the whole state at an LSN X
//! plus the changed byte ranges, read from the data files.
//!
//! * Entering (at a checkpoint, `before_checkpoint`): tracking starts under
//!   the state lock at LSN L, so every record after L goes through
//!   `TrackingSink`; the retained frames F+1..=L (F: the retention floor)
//!   are decoded into the map; then the floor is cleared and checkpoints
//!   delete segments again.
//! * The map holds, per regular inode, sorted disjoint byte ranges: a write
//!   adds [off, off+len), a size change to n adds [n, u64::MAX) ("from n
//!   on": bytes past a shrink that are later re-extended must become zeros
//!   at the replica). At most `MAX_RANGES_PER_INODE` ranges per inode; past
//!   that the closest pair merges (a superset only costs bytes). A removed
//!   inode drops its entry: the catch-up removes every inode not regular at
//!   X anyway. Metadata is not tracked: the catch-up ships the whole state.
//! * Why the catch-up is exact: the replica holds the state at some LSN R
//!   with F <= R <= X. A byte no record F+1..X touched (no write covering
//!   it, no size change below it) has the same value at R and X, and the
//!   replica already holds it; every other byte is in the map and is sent.
//!   An extension from size s to n adds [n, ..) only, yet bytes [s, n) were
//!   past the size at F too (else a shrink after F, which is in the map,
//!   made them so) and are absent at the replica: its final `set_len` to
//!   the size at X zero-fills them.
//! * `catchup_read` reads data files as they are now, the baseline's
//!   argument (baseline.rs): only durable changes reach the data files, in
//!   LSN order, so a byte read holds its value at some durable Y >= X, and
//!   replaying X+1..Y over it gives the same result as over its value at X.
//!   Tracking goes on during the catch-up, so the map stays a superset of
//!   what the replica may lack until it confirms X (`catchup_finished`).
//! * Persistence: the map is written to `OVERFLOW` before every checkpoint
//!   (covered through an LSN C >= the checkpoint's), so `open` loads it and
//!   adds the records it replays. An unreadable file is never dropped: the
//!   store reports the map as lost, and the replica needs a baseline.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use bytes::Bytes;

use crate::checkpointer::Checkpointer;
use crate::data::sync_dir;
use crate::error::{Result, StoreError};
use crate::journal;
use crate::pending::{DataOp, DataSink};
use crate::record::{Op, Record};
use crate::state::State;
use crate::store::Store;
use crate::types::{le_u32, le_u64, FileType, Ino, Lsn};

/// The persisted change map (see docs/formats.md).
pub const OVERFLOW_FILE: &str = "OVERFLOW";
const OVERFLOW_MAGIC: &[u8; 8] = b"TANDEMO\0";
const OVERFLOW_VERSION: u32 = 1;
const OVERFLOW_HEADER_BYTES: usize = 40;
/// Ranges kept per inode; more merge (over-approximating).
pub const MAX_RANGES_PER_INODE: usize = 64;
/// An `OVERFLOW` file larger than this is refused as corrupt.
pub const MAX_OVERFLOW_FILE_BYTES: u64 = 4 << 30;
/// Largest piece `catchup_read` returns (one wire message each).
pub const MAX_CATCHUP_CHUNK_BYTES: usize = crate::baseline::MAX_BASELINE_CHUNK_BYTES;

/// Per inode, sorted disjoint half-open byte ranges that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeMap {
    inodes: HashMap<Ino, Vec<(u64, u64)>>,
}

impl ChangeMap {
    /// Adds [start, end); overlapping or adjacent ranges coalesce.
    pub fn add(&mut self, ino: Ino, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let ranges = self.inodes.entry(ino).or_default();
        let (mut s, mut e) = (start, end);
        // Ranges touching [s, e] are absorbed into it.
        let first = ranges.partition_point(|&(_, re)| re < s);
        let mut last = first;
        while last < ranges.len() && ranges[last].0 <= e {
            s = s.min(ranges[last].0);
            e = e.max(ranges[last].1);
            last += 1;
        }
        ranges.splice(first..last, std::iter::once((s, e)));
        if ranges.len() > MAX_RANGES_PER_INODE {
            // Merge across the smallest gap: the least over-approximation.
            let i = (0..ranges.len() - 1)
                .min_by_key(|&i| ranges[i + 1].0 - ranges[i].1)
                .unwrap_or(0);
            ranges[i].1 = ranges[i + 1].1;
            ranges.remove(i + 1);
        }
    }

    pub fn remove(&mut self, ino: Ino) {
        self.inodes.remove(&ino);
    }

    /// Adds the data changes of one record (`Remove` drops the inode).
    fn add_op(&mut self, ino: Ino, op: &DataOp) {
        match op {
            DataOp::Write { offset, data } => {
                self.add(ino, *offset, offset.saturating_add(data.len() as u64))
            }
            DataOp::SetLen(n) => self.add(ino, *n, u64::MAX),
            DataOp::Remove => self.remove(ino),
        }
    }

    pub fn union(&mut self, other: &ChangeMap) {
        for (&ino, ranges) in &other.inodes {
            for &(s, e) in ranges {
                self.add(ino, s, e);
            }
        }
    }

    pub fn ranges(&self, ino: Ino) -> &[(u64, u64)] {
        self.inodes.get(&ino).map_or(&[], |r| r.as_slice())
    }

    /// Every range as (inode, start, end), ascending.
    pub fn triples(&self) -> Vec<(Ino, u64, u64)> {
        let mut out: Vec<(Ino, u64, u64)> = self
            .inodes
            .iter()
            .flat_map(|(&ino, r)| r.iter().map(move |&(s, e)| (ino, s, e)))
            .collect();
        out.sort_unstable();
        out
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// Ranges clipped to each inode's size in `state`, ascending by inode
    /// and offset; inodes not regular there are left out.
    pub fn clipped(&self, state: &State) -> Vec<CatchupRange> {
        let mut inos: Vec<Ino> = self.inodes.keys().copied().collect();
        inos.sort_unstable();
        inos.into_iter()
            .flat_map(|ino| {
                self.clipped_of(ino, state)
                    .map(move |(offset, len)| CatchupRange { ino, offset, len })
            })
            .collect()
    }

    /// The total of `clipped`'s lengths, without sorting or allocating:
    /// status asks for it on every scrape, under the state's read lock.
    pub fn clipped_bytes(&self, state: &State) -> u64 {
        self.inodes
            .keys()
            .flat_map(|&ino| self.clipped_of(ino, state))
            .map(|(_, len)| len)
            .sum()
    }

    /// One inode's ranges clipped to its size in `state` as (offset, len);
    /// none unless it is a regular file there.
    fn clipped_of<'a>(&'a self, ino: Ino, state: &State) -> impl Iterator<Item = (u64, u64)> + 'a {
        let size = state
            .inodes
            .get(&ino)
            .filter(|i| i.attr.ftype == FileType::Regular)
            .map(|i| i.attr.size);
        self.ranges(ino).iter().filter_map(move |&(s, e)| {
            let e = e.min(size?);
            (s < e).then_some((s, e - s))
        })
    }
}

/// What the store knows about an overflow.
#[derive(Debug, Default)]
enum Mode {
    #[default]
    Off,
    /// Changes after `since` are in `map`.
    Tracking { since: Lsn, map: ChangeMap },
    /// The persisted map could not be read: a replica behind the journal
    /// needs a baseline.
    Lost { why: String },
}

/// Shared by the store (commit hook, catch-up) and the checkpointer.
#[derive(Default)]
pub(crate) struct Overflow {
    /// Fast check on the commit path: set only in `Mode::Tracking`.
    tracking: AtomicBool,
    mode: Mutex<Mode>,
}

impl Overflow {
    fn note(&self, ino: Ino, op: &DataOp) {
        if !self.tracking.load(Ordering::Acquire) {
            return;
        }
        if let Mode::Tracking { map, .. } = &mut *self.mode.lock() {
            map.add_op(ino, op);
        }
    }

    fn set(&self, mode: Mode) {
        let mut m = self.mode.lock();
        self.tracking
            .store(matches!(mode, Mode::Tracking { .. }), Ordering::Release);
        *m = mode;
    }

    pub(crate) fn is_off(&self) -> bool {
        matches!(*self.mode.lock(), Mode::Off)
    }
}

/// Passes data changes on to `inner` and notes them in the change map.
pub(crate) struct TrackingSink<'a> {
    pub(crate) inner: &'a dyn DataSink,
    pub(crate) overflow: &'a Overflow,
}

impl DataSink for TrackingSink<'_> {
    fn data_op(&self, lsn: Lsn, ino: Ino, op: DataOp) -> Result<()> {
        self.overflow.note(ino, &op);
        self.inner.data_op(lsn, ino, op)
    }
}

/// For status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverflowStatus {
    /// The replica LSN the map covers from (records after it are tracked).
    pub since_lsn: Lsn,
    pub changed_inodes: u64,
    /// Changed bytes, clipped to the files' current sizes.
    pub changed_bytes: u64,
    /// Set when the persisted map was unreadable: a replica behind the
    /// journal then needs a baseline (the reason is given here).
    pub map_lost: Option<String>,
}

/// One range a catch-up sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchupRange {
    pub ino: Ino,
    pub offset: u64,
    pub len: u64,
}

/// What the active site sends for a catch-up.
#[derive(Debug, Clone)]
pub struct CatchupSnapshot {
    /// The replica LSN the map covers from: the replica must hold at least it.
    pub from_lsn: Lsn,
    pub lsn: Lsn,
    pub epoch: u64,
    /// The state at `lsn`, postcard-encoded (as a checkpoint's payload).
    pub state: Bytes,
    pub state_crc: u32,
    /// Changed ranges clipped to each file's size at `lsn`.
    pub ranges: Vec<CatchupRange>,
    pub total_bytes: u64,
}

/// One piece read for a catch-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchupPiece {
    Bytes(Bytes),
    /// This many bytes, all zero: sent without their bytes.
    Zeros(u64),
}

/// Bytes of the segments holding LSNs after `floor`: the journal kept
/// only for the replica (the last segment always counts).
fn journal_bytes_after(dir: &Path, floor: Lsn) -> Result<u64> {
    let segments = journal::list_segments(dir)?;
    let mut sum = 0u64;
    for (i, seg) in segments.iter().enumerate() {
        let last_lsn = segments
            .get(i + 1)
            .map_or(u64::MAX, |next| next.first_lsn.saturating_sub(1));
        if last_lsn <= floor {
            continue;
        }
        match std::fs::metadata(&seg.path) {
            Ok(m) => sum = sum.saturating_add(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&seg.path, e)),
        }
    }
    Ok(sum)
}

/// Run by every checkpoint before its state is written: enters overflow
/// when the retained journal passes the limit, and persists the map.
pub(crate) fn before_checkpoint(ck: &Checkpointer) -> Result<()> {
    let floor = ck.retention_floor.load(Ordering::Relaxed);
    if floor != u64::MAX
        && journal_bytes_after(&ck.dir.join("journal"), floor)? > ck.journal_max_bytes
    {
        let entered = ck.overflow.is_off() && {
            match enter(ck, floor) {
                Ok(()) => true,
                Err(e) => {
                    // The floor stays: the journal keeps growing, but nothing
                    // the replica needs is lost. The next checkpoint retries.
                    tracing::error!(error = %e, "entering journal overflow failed");
                    ck.overflow.set(Mode::Off);
                    false
                }
            }
        };
        if entered || !ck.overflow.is_off() {
            tracing::warn!(floor, max_bytes = ck.journal_max_bytes, "journal overflow: no longer keeping the journal for the replica; tracking changed ranges");
            ck.retention_floor.store(u64::MAX, Ordering::Relaxed);
        }
    }
    persist(ck)
}

fn enter(ck: &Checkpointer, floor: Lsn) -> Result<()> {
    let upto = {
        let st = ck.state.write();
        ck.overflow.set(Mode::Tracking {
            since: floor,
            map: ChangeMap::default(),
        });
        st.lsn
    };
    ck.waiter.wait_synced(upto)?;
    let mut map = ChangeMap::default();
    let mut first_seen = None;
    journal::scan(&ck.dir.join("journal"), floor, |r| {
        if r.lsn <= upto {
            first_seen.get_or_insert(r.lsn);
            add_record(&mut map, &r.record);
        }
        Ok(())
    })?;
    // The floor may be older than the journal (a replica that was already
    // behind it): the map then covers only from the oldest frame on, and
    // such a replica needs a baseline anyway.
    let since = match first_seen {
        Some(first) => first.saturating_sub(1).max(floor),
        None => upto.max(floor),
    };
    if let Mode::Tracking {
        map: live,
        since: s,
    } = &mut *ck.overflow.mode.lock()
    {
        // Order does not matter: a union of ranges, and inodes removed
        // since are dropped when the catch-up clips to the state.
        live.union(&map);
        *s = since;
    }
    tracing::info!(since, through = upto, "journal overflow entered");
    Ok(())
}

/// Adds a decoded record's data changes, as `State::apply` would emit them
/// (a size change counts even if the size did not change: a superset).
pub(crate) fn add_record(map: &mut ChangeMap, record: &Record) {
    match &record.op {
        Op::Write {
            ino, offset, data, ..
        } => map.add(*ino, *offset, offset.saturating_add(data.len() as u64)),
        Op::SetAttr { ino, attr } if attr.ftype == FileType::Regular => {
            map.add(*ino, attr.size, u64::MAX)
        }
        // Removals are not followed here: ranges of an inode gone at X are
        // dropped when the catch-up clips them to the state.
        _ => {}
    }
}

/// Writes `OVERFLOW` (tmp, fsync, rename) when tracking, covering through
/// the current LSN, which is at least the checkpoint's about to be written.
fn persist(ck: &Checkpointer) -> Result<()> {
    let (since, covered, map) = {
        let st = ck.state.read();
        match &*ck.overflow.mode.lock() {
            Mode::Tracking { since, map } => (*since, st.lsn, map.clone()),
            _ => return Ok(()),
        }
    };
    write_file(&ck.dir, since, covered, &map)
}

/// Layout (little-endian): magic "TANDEMO\0" | version u32 | reserved u32 |
/// since_lsn u64 | covered_lsn u64 | inode_count u64 | then per inode:
/// ino u64 | range_count u32 | range_count x (start u64 | end u64) | and
/// last crc32c u32 of everything before it.
fn encode(since: Lsn, covered: Lsn, map: &ChangeMap) -> Vec<u8> {
    let mut b = Vec::with_capacity(OVERFLOW_HEADER_BYTES + map.inodes.len() * 28);
    b.extend_from_slice(OVERFLOW_MAGIC);
    b.extend_from_slice(&OVERFLOW_VERSION.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&since.to_le_bytes());
    b.extend_from_slice(&covered.to_le_bytes());
    b.extend_from_slice(&(map.inodes.len() as u64).to_le_bytes());
    let mut inos: Vec<&Ino> = map.inodes.keys().collect();
    inos.sort_unstable();
    for ino in inos {
        let ranges = &map.inodes[ino];
        b.extend_from_slice(&ino.to_le_bytes());
        b.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
        for &(s, e) in ranges {
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&e.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> std::result::Result<(Lsn, Lsn, ChangeMap), String> {
    if b.len() < OVERFLOW_HEADER_BYTES + 4 || &b[0..8] != OVERFLOW_MAGIC {
        return Err("bad header".into());
    }
    if le_u32(b, 8) != OVERFLOW_VERSION {
        return Err(format!("unsupported version {}", le_u32(b, 8)));
    }
    let body = b.len() - 4;
    if crc32c::crc32c(&b[..body]) != le_u32(b, body) {
        return Err("checksum mismatch".into());
    }
    let since = le_u64(b, 16);
    let covered = le_u64(b, 24);
    let count = le_u64(b, 32);
    let mut map = ChangeMap::default();
    let mut pos = OVERFLOW_HEADER_BYTES;
    for _ in 0..count {
        if pos + 12 > body {
            return Err("inode entry past the end".into());
        }
        let ino = le_u64(b, pos);
        let n = le_u32(b, pos + 8) as usize;
        pos += 12;
        if n > MAX_RANGES_PER_INODE || pos + n * 16 > body {
            return Err(format!("inode {ino}: bad range count {n}"));
        }
        let mut prev_end = None;
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            let (s, e) = (le_u64(b, pos), le_u64(b, pos + 8));
            pos += 16;
            if s >= e || prev_end.is_some_and(|p| s <= p) {
                return Err(format!("inode {ino}: ranges not sorted and disjoint"));
            }
            prev_end = Some(e);
            ranges.push((s, e));
        }
        if map.inodes.insert(ino, ranges).is_some() {
            return Err(format!("inode {ino} listed twice"));
        }
    }
    if pos != body {
        return Err("trailing bytes".into());
    }
    Ok((since, covered, map))
}

fn write_file(dir: &Path, since: Lsn, covered: Lsn, map: &ChangeMap) -> Result<()> {
    crate::data::write_atomically(dir, OVERFLOW_FILE, &encode(since, covered, map))
}

/// At open, before replay: the persisted map, if any. A map covering less
/// than the checkpoint, or unreadable, is reported lost (and the file kept
/// for inspection) rather than dropped.
pub(crate) fn load(dir: &Path, checkpoint_lsn: Lsn) -> Result<Overflow> {
    let overflow = Overflow::default();
    let path = dir.join(OVERFLOW_FILE);
    let bytes = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(overflow),
        Err(e) => return Err(StoreError::io(&path, e)),
        Ok(m) if m.len() > MAX_OVERFLOW_FILE_BYTES => Err(format!("{} bytes", m.len())),
        Ok(_) => Ok(std::fs::read(&path).map_err(|e| StoreError::io(&path, e))?),
    };
    let mode = match bytes.and_then(|b| decode(&b)) {
        Ok((_, covered, _)) if covered < checkpoint_lsn => Mode::Lost {
            why: format!(
                "{} covers through LSN {covered}, before the checkpoint at {checkpoint_lsn}",
                path.display()
            ),
        },
        Ok((since, _, map)) => Mode::Tracking { since, map },
        Err(why) => Mode::Lost {
            why: format!("{}: {why}", path.display()),
        },
    };
    if let Mode::Lost { why } = &mode {
        tracing::error!(%why, "journal overflow map unreadable: a replica behind the journal needs a new baseline");
    }
    overflow.set(mode);
    Ok(overflow)
}

fn remove_file(dir: &Path) -> Result<()> {
    let path = dir.join(OVERFLOW_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(&path, e)),
    }
}

impl Store {
    /// Whether the store is in journal overflow (cheap).
    pub fn in_overflow(&self) -> bool {
        !self.checkpointer.overflow.is_off()
    }

    /// `None` unless the store is in journal overflow.
    pub fn overflow_status(&self) -> Option<OverflowStatus> {
        let st = self.read_state();
        match &*self.checkpointer.overflow.mode.lock() {
            Mode::Off => None,
            Mode::Tracking { since, map } => Some(OverflowStatus {
                since_lsn: *since,
                changed_inodes: map.inode_count() as u64,
                changed_bytes: map.clipped_bytes(&st),
                map_lost: None,
            }),
            Mode::Lost { why } => Some(OverflowStatus {
                since_lsn: 0,
                changed_inodes: 0,
                changed_bytes: 0,
                map_lost: Some(why.clone()),
            }),
        }
    }

    /// Starts a catch-up for a replica at `replica_lsn`: the state at the
    /// current LSN X (durable, data changes up to X in the files), the
    /// retention floor lowered to X, and the changed ranges clipped to the
    /// sizes at X. Tracking continues until `catchup_finished`. Blocks
    /// (journal sync): call from a blocking context.
    pub fn catchup_begin(&self, replica_lsn: Lsn) -> Result<CatchupSnapshot> {
        self.catchup_begin_with(replica_lsn, |_, map| map.clone())
    }

    /// `catchup_begin` sending the ranges `ranges(state at X, change map)`
    /// returns (a superset of the map's: resync.rs adds the old site's).
    pub(crate) fn catchup_begin_with(
        &self,
        replica_lsn: Lsn,
        ranges: impl FnOnce(&State, &ChangeMap) -> ChangeMap,
    ) -> Result<CatchupSnapshot> {
        let (state, since, ranges) = {
            let st = self.write_state();
            let (since, ranges) = match &*self.checkpointer.overflow.mode.lock() {
                Mode::Off => {
                    return Err(StoreError::CatchupUnavailable(
                        "the store is not in journal overflow".into(),
                    ))
                }
                Mode::Lost { why } => {
                    return Err(StoreError::CatchupUnavailable(format!(
                        "the change map was lost ({why}); the replica needs a baseline"
                    )))
                }
                Mode::Tracking { since, map } => (*since, ranges(&st, map).clipped(&st)),
            };
            if replica_lsn < since || replica_lsn > st.lsn {
                return Err(StoreError::CatchupUnavailable(format!(
                    "the change map covers replicas at LSN {since}..={}, not {replica_lsn}",
                    st.lsn
                )));
            }
            let floor = &self.checkpointer.retention_floor;
            floor.store(floor.load(Ordering::Relaxed).min(st.lsn), Ordering::Relaxed);
            (st.clone(), since, ranges)
        };
        self.wait_durable_blocking(state.lsn)?;
        self.pending.apply_durable(&self.data, state.lsn)?;
        let encoded = postcard::to_stdvec(&state)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode catch-up state: {e}")))?;
        let total_bytes = ranges.iter().map(|r| r.len).sum();
        Ok(CatchupSnapshot {
            from_lsn: since,
            lsn: state.lsn,
            epoch: state.epoch,
            state_crc: crc32c::crc32c(&encoded),
            state: Bytes::from(encoded),
            ranges,
            total_bytes,
        })
    }

    /// Reads up to `max_bytes` (at most `MAX_CATCHUP_CHUNK_BYTES`) of
    /// `ino` at `offset` as the data file is now (see the module doc); a
    /// piece of zeros (holes, bytes past the file's end, a removed file) is
    /// `Zeros`, so it costs no wire bytes.
    pub fn catchup_read(&self, ino: Ino, offset: u64, max_bytes: usize) -> Result<CatchupPiece> {
        let want = max_bytes.min(MAX_CATCHUP_CHUNK_BYTES);
        let mut bytes = match self.baseline_read(ino, offset, want) {
            Ok(b) => b.to_vec(),
            // Removed after X: its removal follows in the journal.
            Err(StoreError::NoEnt) => Vec::new(),
            Err(e) => return Err(e),
        };
        if bytes.iter().all(|&b| b == 0) {
            return Ok(CatchupPiece::Zeros(want as u64));
        }
        bytes.resize(want, 0);
        Ok(CatchupPiece::Bytes(Bytes::from(bytes)))
    }

    /// The replica confirmed it holds LSN `lsn` (a catch-up's, or an ack
    /// while streaming): overflow ends if the journal from `lsn`+1 is still
    /// kept (the floor set by `catchup_begin` or the session); if it had to
    /// be let go meanwhile, tracking goes on and the replica gets another
    /// catch-up.
    pub fn catchup_finished(&self, lsn: Lsn) -> Result<()> {
        if self.checkpointer.overflow.is_off() {
            return Ok(());
        }
        let _no_checkpoint = self.checkpointer.running.lock();
        if self.checkpointer.retention_floor.load(Ordering::Relaxed) > lsn {
            tracing::warn!(
                lsn,
                "journal after the catch-up was not kept; staying in overflow"
            );
            return Ok(());
        }
        self.checkpointer.overflow.set(Mode::Off);
        remove_file(&self.dir)?;
        tracing::info!(lsn, "catch-up confirmed; journal overflow ended");
        Ok(())
    }

    /// Replication of this vserver stopped: nothing is kept for a replica
    /// any more, neither journal past checkpoints nor a change map.
    pub fn forget_replica(&self) -> Result<()> {
        self.clear_retention_floor();
        self.overflow_reset()
    }

    /// Before any session after an open: keep every journal segment still
    /// on disk until the replica says where it stands (the floor is not
    /// persisted, so without this the first checkpoint after a restart
    /// would delete what an absent replica lacks, and its return would
    /// need a baseline). Not in overflow: the change map covers it then,
    /// and the journal must stay bounded.
    pub fn keep_journal_for_replica(&self) {
        if self.checkpointer.overflow.is_off() {
            self.set_retention_floor(0);
        }
    }

    /// Starts the change map from `since` (covered through `covered`) and
    /// persists it at once, unless one runs already (a promotion rerun).
    pub(crate) fn track_changes_from(&self, since: Lsn, covered: Lsn) -> Result<()> {
        if !self.checkpointer.overflow.is_off() {
            return Ok(());
        }
        let map = ChangeMap::default();
        write_file(&self.dir, since, covered, &map)?;
        self.checkpointer
            .overflow
            .set(Mode::Tracking { since, map });
        Ok(())
    }

    /// The change map's ranges clipped to the current sizes, and the LSN
    /// it covers from; `None` unless tracking.
    pub fn changed_since(&self) -> Option<(Lsn, u64)> {
        let st = self.read_state();
        match &*self.checkpointer.overflow.mode.lock() {
            Mode::Tracking { since, map } => Some((*since, map.clipped_bytes(&st))),
            _ => None,
        }
    }

    /// A baseline replaces whatever the replica held: any overflow ends.
    pub(crate) fn overflow_reset(&self) -> Result<()> {
        if self.checkpointer.overflow.is_off() {
            return Ok(());
        }
        let _no_checkpoint = self.checkpointer.running.lock();
        self.checkpointer.overflow.set(Mode::Off);
        remove_file(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_coalesce_and_stay_bounded() {
        let mut m = ChangeMap::default();
        m.add(1, 10, 20);
        m.add(1, 20, 30);
        m.add(1, 5, 8);
        assert_eq!(m.ranges(1), &[(5, 8), (10, 30)]);
        m.add(1, 7, 11);
        assert_eq!(m.ranges(1), &[(5, 30)]);
        m.add(1, 100, u64::MAX);
        m.add(1, 200, 300);
        assert_eq!(m.ranges(1), &[(5, 30), (100, u64::MAX)]);
        for i in 0..200u64 {
            m.add(2, i * 10, i * 10 + 1 + (i % 3));
        }
        assert_eq!(m.ranges(2).len(), MAX_RANGES_PER_INODE);
        // A superset of everything added.
        for i in 0..200u64 {
            let (s, e) = (i * 10, i * 10 + 1 + (i % 3));
            assert!(m.ranges(2).iter().any(|&(a, b)| a <= s && e <= b), "{s}");
        }
        m.add_op(2, &DataOp::Remove);
        assert!(m.ranges(2).is_empty());
    }

    #[test]
    fn file_round_trips_and_damage_is_refused() {
        let mut m = ChangeMap::default();
        m.add(7, 0, 4096);
        m.add(7, 1 << 20, u64::MAX);
        m.add(9, 3, 4);
        let b = encode(5, 42, &m);
        assert_eq!(decode(&b).unwrap(), (5, 42, m));
        for i in [0, 9, 20, 40, b.len() - 1] {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_err(), "byte {i}");
        }
        assert!(decode(&b[..b.len() - 5]).is_err());
    }
}
