//! The journal writer: callers append encoded frames to a shared buffer
//! (under the store lock, so LSN order is apply order); one thread writes
//! whatever has gathered and makes it durable with a single fdatasync. Many
//! concurrent writers therefore share one sync: group commit.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::segment::{create_segment, SEGMENT_HEADER_BYTES};
use crate::data::lock;
use crate::error::{Result, StoreError};
use crate::record::Record;
use crate::types::Lsn;

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub max_segment_bytes: u64,
    pub max_buffered_bytes: usize,
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
    opts: WriterOptions,
}

pub struct JournalWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    durable_rx: watch::Receiver<Durable>,
    /// Journal bytes appended since the writer started (for checkpoints).
    appended_bytes: Mutex<u64>,
}

impl JournalWriter {
    /// Starts writing at `next_lsn` into a fresh segment in `dir`.
    pub fn start(dir: PathBuf, next_lsn: Lsn, opts: WriterOptions) -> Result<JournalWriter> {
        let file = create_segment(&dir, next_lsn)?;
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
            }),
            has_work: Condvar::new(),
            has_room: Condvar::new(),
            durable_blocking: Mutex::new(durable),
            durable_changed: Condvar::new(),
            durable_tx,
            opts,
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-journal".into())
            .spawn(move || flush_loop(worker, dir, file, SEGMENT_HEADER_BYTES as u64))
            .map_err(|e| StoreError::io("journal writer thread", e))?;
        Ok(JournalWriter {
            shared,
            thread: Mutex::new(Some(thread)),
            durable_rx,
            appended_bytes: Mutex::new(0),
        })
    }

    /// Queues the record as frame `lsn`. Must be called in LSN order.
    pub fn append(&self, lsn: Lsn, epoch: u64, record: &Record) -> Result<()> {
        let mut p = lock(&self.shared.pending);
        while p.buf.len() >= self.shared.opts.max_buffered_bytes && !p.closed {
            p = self
                .shared
                .has_room
                .wait(p)
                .unwrap_or_else(|e| e.into_inner());
        }
        if p.closed || self.durable().failed {
            return Err(StoreError::Closed);
        }
        debug_assert_eq!(lsn, p.last_lsn + 1, "journal appends out of order");
        if p.buf.is_empty() {
            p.first_lsn = lsn;
        }
        let n = super::frame::encode_frame(&mut p.buf, lsn, epoch, record)?;
        p.last_lsn = lsn;
        drop(p);
        *lock(&self.appended_bytes) += n as u64;
        self.shared.has_work.notify_one();
        Ok(())
    }

    pub fn appended_bytes(&self) -> u64 {
        *lock(&self.appended_bytes)
    }

    pub fn reset_appended_bytes(&self) {
        *lock(&self.appended_bytes) = 0;
    }

    pub fn durable(&self) -> Durable {
        *self.durable_rx.borrow()
    }

    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
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
        let mut d = lock(&self.shared.durable_blocking);
        while d.lsn < lsn && !d.failed {
            d = self
                .shared
                .durable_changed
                .wait(d)
                .unwrap_or_else(|e| e.into_inner());
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
        lock(&self.shared.pending).closed = true;
        self.shared.has_work.notify_all();
        self.shared.has_room.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            if t.join().is_err() {
                tracing::error!("journal writer thread panicked");
            }
        }
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn flush_loop(shared: Arc<Shared>, dir: PathBuf, mut file: File, mut file_bytes: u64) {
    let mut spare = Vec::new();
    loop {
        let (mut batch, first_lsn, last_lsn) = {
            let mut p = lock(&shared.pending);
            while p.buf.is_empty() && !p.closed {
                p = shared.has_work.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            if p.buf.is_empty() && p.closed {
                return;
            }
            let batch = std::mem::replace(&mut p.buf, std::mem::take(&mut spare));
            (batch, p.first_lsn, p.last_lsn)
        };
        shared.has_room.notify_all();
        let result = (|| -> Result<()> {
            if file_bytes >= shared.opts.max_segment_bytes {
                file = create_segment(&dir, first_lsn)?;
                file_bytes = SEGMENT_HEADER_BYTES as u64;
            }
            file.write_all(&batch)
                .and_then(|_| file.sync_data())
                .map_err(|e| StoreError::io(&dir, e))?;
            file_bytes += batch.len() as u64;
            Ok(())
        })();
        let durable = match result {
            Ok(()) => Durable {
                lsn: last_lsn,
                failed: false,
            },
            Err(e) => {
                // A journal that cannot be written must stop taking writes:
                // nothing after this point could be promised durable.
                tracing::error!(error = %e, "journal write failed; store stops accepting changes");
                let mut d = *lock(&shared.durable_blocking);
                d.failed = true;
                lock(&shared.pending).closed = true;
                shared.has_room.notify_all();
                d
            }
        };
        *lock(&shared.durable_blocking) = durable;
        shared.durable_changed.notify_all();
        shared.durable_tx.send_replace(durable);
        if durable.failed {
            return;
        }
        batch.clear();
        spare = batch;
    }
}
