//! The journal writer: callers append encoded frames to a shared buffer
//! (under the store lock, so LSN order is apply order); one thread writes
//! whatever has gathered. It calls fdatasync only when someone waits for
//! durability (or too much is unsynced), and one sync then covers every
//! waiter: group commit. UNSTABLE writes, which nobody waits for, thus cost
//! a page-cache write, and the COMMIT that follows pays one sync for all.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::segment::{create_segment, SEGMENT_HEADER_BYTES};
use crate::error::{Result, StoreError};
use crate::record::Record;
use crate::types::Lsn;

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub max_segment_bytes: u64,
    pub max_buffered_bytes: usize,
    /// Sync anyway once this many written bytes are not yet durable, so a
    /// COMMIT after a long run of UNSTABLE writes has bounded work to do.
    pub max_unsynced_bytes: u64,
}

/// What waiters learn: how far the journal is durable, or that it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub lsn: Lsn,
    pub failed: bool,
}

struct Pending {
    buf: Vec<u8>,
    first_lsn: Lsn,
    last_lsn: Lsn,
    closed: bool,
    /// Highest LSN some caller waits to see durable.
    sync_wanted: Lsn,
    /// Where in `buf` a new segment must begin, and the LSN of the frame
    /// there (`request_roll`).
    roll: Option<(usize, Lsn)>,
    /// Rolls asked for so far.
    rolls_asked: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when frames arrive or the writer is closed.
    has_work: Condvar,
    /// Signalled when the buffer drains (back-pressure on appenders).
    has_room: Condvar,
    durable_blocking: Mutex<Durable>,
    durable_changed: Condvar,
    durable_tx: watch::Sender<Durable>,
    /// Rolls carried out (or given up, when the writer stops), in the
    /// numbering of `rolls_asked`.
    rolls_done: Mutex<u64>,
    rolled: Condvar,
    opts: WriterOptions,
}

pub struct JournalWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    durable_rx: watch::Receiver<Durable>,
    /// Journal bytes appended since the last checkpoint began.
    appended_bytes: Arc<AtomicU64>,
}

impl JournalWriter {
    /// Starts writing at `next_lsn` into a fresh segment in `dir`. On a
    /// full disk the segment is created with the first frame instead, so
    /// a store opens (and serves reads) with no room at all.
    pub fn start(dir: PathBuf, next_lsn: Lsn, opts: WriterOptions) -> Result<JournalWriter> {
        let file = match create_segment(&dir, next_lsn) {
            Ok(f) => Some(f),
            Err(e) if e.is_no_space() => {
                tracing::warn!(dir = %dir.display(), error = %e, "no room for a new journal segment; it is made with the first change");
                None
            }
            Err(e) => return Err(e),
        };
        let durable = Durable {
            lsn: next_lsn.saturating_sub(1),
            failed: false,
        };
        let (durable_tx, durable_rx) = watch::channel(durable);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                first_lsn: next_lsn,
                last_lsn: next_lsn.saturating_sub(1),
                closed: false,
                sync_wanted: 0,
                roll: None,
                rolls_asked: 0,
            }),
            has_work: Condvar::new(),
            has_room: Condvar::new(),
            durable_blocking: Mutex::new(durable),
            durable_changed: Condvar::new(),
            durable_tx,
            rolls_done: Mutex::new(0),
            rolled: Condvar::new(),
            opts,
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-journal".into())
            .spawn(move || {
                let segment = Segment {
                    file,
                    bytes: SEGMENT_HEADER_BYTES as u64,
                    first_lsn: next_lsn,
                };
                flush_loop(&worker, &dir, segment);
                // Nobody waits for a roll that will never come.
                *worker.rolls_done.lock() = u64::MAX;
                worker.rolled.notify_all();
            })
            .map_err(|e| StoreError::io("journal writer thread", e))?;
        Ok(JournalWriter {
            shared,
            thread: Mutex::new(Some(thread)),
            durable_rx,
            appended_bytes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues the record as frame `lsn`; returns the frame's size. Must be
    /// called in LSN order.
    pub fn append(&self, lsn: Lsn, epoch: u64, record: &Record) -> Result<usize> {
        let mut p = self.wait_for_room()?;
        debug_assert_eq!(lsn, p.last_lsn + 1, "journal appends out of order");
        if p.buf.is_empty() {
            p.first_lsn = lsn;
        }
        let n = super::frame::encode_frame(&mut p.buf, lsn, epoch, record)?;
        p.last_lsn = lsn;
        drop(p);
        self.queued(n);
        Ok(n)
    }

    /// Queues a frame already encoded elsewhere (replication ships frames
    /// byte for byte, so the replica's journal holds what the active's
    /// does). The caller has checked it; it must be frame `lsn`, in order.
    pub fn append_raw(&self, lsn: Lsn, frame: &[u8]) -> Result<()> {
        let mut p = self.wait_for_room()?;
        if lsn != p.last_lsn + 1 {
            return Err(StoreError::Replication(format!(
                "frame LSN {lsn} does not follow journal LSN {}",
                p.last_lsn
            )));
        }
        if p.buf.is_empty() {
            p.first_lsn = lsn;
        }
        p.buf.extend_from_slice(frame);
        p.last_lsn = lsn;
        drop(p);
        self.queued(frame.len());
        Ok(())
    }

    /// The append buffer once it has room (back-pressure); `Closed` if the
    /// journal is closed or has failed.
    fn wait_for_room(&self) -> Result<MutexGuard<'_, Pending>> {
        let mut p = self.shared.pending.lock();
        while p.buf.len() >= self.shared.opts.max_buffered_bytes && !p.closed {
            self.shared.has_room.wait(&mut p);
        }
        if p.closed || self.durable().failed {
            return Err(StoreError::Closed);
        }
        Ok(p)
    }

    /// Counts `n` appended bytes and wakes the writer.
    fn queued(&self, n: usize) {
        self.appended_bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.shared.has_work.notify_one();
    }

    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes.load(Ordering::Relaxed)
    }

    /// Bytes appended but not yet handed to the file system (they take
    /// room on the disk once written).
    pub fn buffered_bytes(&self) -> u64 {
        self.shared.pending.lock().buf.len() as u64
    }

    /// The counter behind `appended_bytes`, for the checkpointer to reset.
    pub fn appended_bytes_counter(&self) -> Arc<AtomicU64> {
        self.appended_bytes.clone()
    }

    /// A handle to wait for durability without asking for a sync.
    pub fn durable_waiter(&self) -> DurableWaiter {
        DurableWaiter(self.shared.clone())
    }

    /// Durability changes as they happen, without asking for a sync
    /// (replication ships frames once durable; it must not force syncs).
    pub fn durable_changes(&self) -> watch::Receiver<Durable> {
        self.durable_rx.clone()
    }

    pub fn durable(&self) -> Durable {
        *self.durable_rx.borrow()
    }

    /// Tells the writer thread that someone waits for `lsn`.
    fn want_sync(&self, lsn: Lsn) {
        if self.durable().lsn >= lsn {
            return;
        }
        let mut p = self.shared.pending.lock();
        if p.sync_wanted < lsn {
            p.sync_wanted = lsn;
            drop(p);
            self.shared.has_work.notify_one();
        }
    }

    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.want_sync(lsn);
        let mut rx = self.durable_rx.clone();
        let seen = rx
            .wait_for(|d| d.lsn >= lsn || d.failed)
            .await
            .map_err(|_| StoreError::Closed)?;
        if seen.lsn >= lsn {
            Ok(())
        } else {
            Err(StoreError::Corrupt(
                "journal write failed; see the log".into(),
            ))
        }
    }

    pub fn wait_durable_blocking(&self, lsn: Lsn) -> Result<()> {
        self.want_sync(lsn);
        let mut d = self.shared.durable_blocking.lock();
        while d.lsn < lsn && !d.failed {
            self.shared.durable_changed.wait(&mut d);
        }
        if d.lsn >= lsn {
            Ok(())
        } else {
            Err(StoreError::Corrupt(
                "journal write failed; see the log".into(),
            ))
        }
    }

    /// Writes out what is queued, then stops the thread.
    pub fn close(&self) {
        self.shared.pending.lock().closed = true;
        self.shared.has_work.notify_all();
        self.shared.has_room.notify_all();
        if let Some(t) = self.thread.lock().take() {
            if t.join().is_err() {
                tracing::error!("journal writer thread panicked");
            }
        }
    }
}

/// Waits for durability passively: unlike `wait_durable`, it never makes
/// the writer sync sooner (the data applier must not turn every UNSTABLE
/// write into a synced one).
#[derive(Clone)]
pub struct DurableWaiter(Arc<Shared>);

impl DurableWaiter {
    /// Like `wait`, but asks the writer to sync (checkpoints need it).
    pub fn wait_synced(&self, lsn: Lsn) -> Result<()> {
        {
            let mut p = self.0.pending.lock();
            if p.sync_wanted < lsn {
                p.sync_wanted = lsn;
            }
        }
        self.0.has_work.notify_one();
        let d = self.wait(lsn);
        if d.lsn >= lsn {
            Ok(())
        } else {
            Err(StoreError::Corrupt(
                "journal write failed; see the log".into(),
            ))
        }
    }

    /// Asks for the frames appended from now on to start a new segment,
    /// so every segment before can go at a checkpoint covering them;
    /// returns a ticket for `wait_rolled`. Rolling a segment that holds
    /// nothing yet does nothing.
    pub fn request_roll(&self) -> u64 {
        let mut p = self.0.pending.lock();
        p.roll = Some((p.buf.len(), p.last_lsn + 1));
        p.rolls_asked += 1;
        let ticket = p.rolls_asked;
        drop(p);
        self.0.has_work.notify_one();
        ticket
    }

    /// Blocks until the roll behind `ticket` (or a later one) is done, or
    /// the writer has stopped.
    pub fn wait_rolled(&self, ticket: u64) {
        let mut done = self.0.rolls_done.lock();
        while *done < ticket {
            self.0.rolled.wait(&mut done);
        }
    }

    /// Blocks until `lsn` is durable or the journal has failed.
    pub fn wait(&self, lsn: Lsn) -> Durable {
        let mut d = self.0.durable_blocking.lock();
        while d.lsn < lsn && !d.failed {
            self.0.durable_changed.wait(&mut d);
        }
        *d
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// The segment being written: none between a roll that found no room
/// and the next frame.
struct Segment {
    file: Option<File>,
    bytes: u64,
    first_lsn: Lsn,
}

/// How far the writer has got.
struct Progress {
    written_lsn: Lsn,
    synced_lsn: Lsn,
    unsynced_bytes: u64,
}

impl Progress {
    /// Syncs what was written to `file`, if anything is unsynced.
    fn sync(&mut self, file: &File, dir: &Path) -> Result<()> {
        if self.written_lsn > self.synced_lsn {
            file.sync_data().map_err(|e| StoreError::io(dir, e))?;
            self.synced_lsn = self.written_lsn;
            self.unsynced_bytes = 0;
        }
        Ok(())
    }
}

impl Segment {
    /// Appends frames `first_lsn..=last_lsn`, rolling past the size limit.
    fn write(
        &mut self,
        frames: &[u8],
        first_lsn: Lsn,
        last_lsn: Lsn,
        max_segment_bytes: u64,
        progress: &mut Progress,
        dir: &Path,
    ) -> Result<()> {
        if frames.is_empty() {
            return Ok(());
        }
        if let Some(file) = &self.file {
            if self.bytes >= max_segment_bytes {
                // The old segment must be durable before any LSN in the
                // new one can be reported durable.
                progress.sync(file, dir)?;
                self.file = None;
            }
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                self.bytes = SEGMENT_HEADER_BYTES as u64;
                self.first_lsn = first_lsn;
                self.file.insert(create_segment(dir, first_lsn)?)
            }
        };
        file.write_all(frames).map_err(|e| StoreError::io(dir, e))?;
        self.bytes += frames.len() as u64;
        progress.unsynced_bytes += frames.len() as u64;
        progress.written_lsn = last_lsn;
        Ok(())
    }

    /// Ends this segment so frame `next_lsn` begins the next one; made now
    /// so a checkpoint sees the old one followed. With no room for it, it
    /// is made with the next frame instead.
    fn roll(&mut self, next_lsn: Lsn, progress: &mut Progress, dir: &Path) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.first_lsn >= next_lsn {
            return Ok(());
        }
        progress.sync(file, dir)?;
        self.file = None;
        match create_segment(dir, next_lsn) {
            Ok(f) => {
                self.file = Some(f);
                self.bytes = SEGMENT_HEADER_BYTES as u64;
                self.first_lsn = next_lsn;
                Ok(())
            }
            Err(e) if e.is_no_space() => {
                tracing::warn!(error = %e, "no room to roll the journal now; the next frame starts the new segment");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn flush_loop(shared: &Shared, dir: &Path, mut segment: Segment) {
    let mut spare = Vec::new();
    let start_lsn = shared.pending.lock().last_lsn;
    let mut progress = Progress {
        written_lsn: start_lsn,
        synced_lsn: start_lsn,
        unsynced_bytes: 0,
    };
    loop {
        let (mut batch, first_lsn, last_lsn, sync_wanted, closed, roll, roll_ticket) = {
            let mut p = shared.pending.lock();
            while p.buf.is_empty()
                && !p.closed
                && p.roll.is_none()
                && !(p.sync_wanted > progress.synced_lsn
                    && progress.written_lsn > progress.synced_lsn)
            {
                shared.has_work.wait(&mut p);
            }
            let batch = std::mem::replace(&mut p.buf, std::mem::take(&mut spare));
            let roll = p.roll.take();
            (
                batch,
                p.first_lsn,
                p.last_lsn,
                p.sync_wanted,
                p.closed,
                roll,
                p.rolls_asked,
            )
        };
        shared.has_room.notify_all();
        let max = shared.opts.max_segment_bytes;
        let result = (|| -> Result<()> {
            match roll {
                Some((at, next_lsn)) => {
                    let at = at.min(batch.len());
                    let head_last = next_lsn.saturating_sub(1);
                    segment.write(&batch[..at], first_lsn, head_last, max, &mut progress, dir)?;
                    segment.roll(next_lsn, &mut progress, dir)?;
                    segment.write(&batch[at..], next_lsn, last_lsn, max, &mut progress, dir)?;
                }
                None => segment.write(&batch, first_lsn, last_lsn, max, &mut progress, dir)?,
            }
            let must_sync = sync_wanted > progress.synced_lsn
                || closed
                || progress.unsynced_bytes >= shared.opts.max_unsynced_bytes;
            if must_sync {
                if let Some(file) = &segment.file {
                    progress.sync(file, dir)?;
                }
            }
            Ok(())
        })();
        if roll.is_some() {
            let mut done = shared.rolls_done.lock();
            *done = (*done).max(roll_ticket);
            drop(done);
            shared.rolled.notify_all();
        }
        let durable = match result {
            Ok(()) => Durable {
                lsn: progress.synced_lsn,
                failed: false,
            },
            Err(e) => {
                // A journal that cannot be written must stop taking writes:
                // nothing after this point could be promised durable.
                tracing::error!(error = %e, "journal write failed; store stops accepting changes");
                shared.pending.lock().closed = true;
                shared.has_room.notify_all();
                Durable {
                    lsn: progress.synced_lsn,
                    failed: true,
                }
            }
        };
        let changed = *shared.durable_blocking.lock() != durable;
        if changed {
            // The watch first: a caller woken by `durable_changed` must
            // already see its LSN in `durable()` (durable_lsn).
            shared.durable_tx.send_replace(durable);
            *shared.durable_blocking.lock() = durable;
            shared.durable_changed.notify_all();
        }
        if durable.failed
            || (closed
                && shared.pending.lock().buf.is_empty()
                && progress.synced_lsn == progress.written_lsn)
        {
            return;
        }
        batch.clear();
        spare = batch;
    }
}
