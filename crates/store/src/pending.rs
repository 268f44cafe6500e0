//! Data changes wait here until their journal record is durable, and only
//! then reach the data files. Two things follow:
//!
//! * After a crash the data files hold nothing the journal does not: bytes
//!   of a write whose record was lost never reached them, and a truncation
//!   or removal whose record was lost never destroyed anything. Recovery
//!   (checkpoint + replay) is therefore exact.
//! * A write costs the caller one copy into the journal buffer; the data
//!   file is written later, off the request's path.
//!
//! Reads see the data file overlaid with the changes still waiting, in LSN
//! order, so they always see the state the metadata describes.

use std::collections::{HashMap, VecDeque};
use std::ops::Deref;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use bytes::Bytes;

use crate::data::DataFiles;
use crate::error::Result;
use crate::types::{Ino, Lsn};

#[derive(Debug, Clone)]
pub enum DataOp {
    Write { offset: u64, data: Bytes },
    SetLen(u64),
    Remove,
}

/// Where `State::apply` sends changes to file contents.
pub trait DataSink {
    fn data_op(&self, lsn: Lsn, ino: Ino, op: DataOp) -> Result<()>;
}

/// Replay applies straight to the files: its records are already durable.
impl DataSink for DataFiles {
    fn data_op(&self, _lsn: Lsn, ino: Ino, op: DataOp) -> Result<()> {
        apply_to_files(self, ino, &op)
    }
}

pub(crate) fn apply_to_files(files: &DataFiles, ino: Ino, op: &DataOp) -> Result<()> {
    match op {
        DataOp::Write { offset, data } => files.write(ino, *offset, data),
        DataOp::SetLen(size) => files.set_len(ino, *size),
        DataOp::Remove => files.remove(ino),
    }
}

#[derive(Default)]
struct Queue {
    /// Every waiting change in LSN order.
    fifo: VecDeque<(Lsn, Ino)>,
    /// The same changes by inode, for reads.
    by_ino: HashMap<Ino, VecDeque<(Lsn, DataOp)>>,
    bytes: u64,
    closed: bool,
}

#[derive(Default)]
pub struct PendingData {
    queue: Mutex<Queue>,
    arrived: Condvar,
    /// True while someone writes changes to the files (the applier thread,
    /// a checkpoint, a baseline) or holds them still (`hold`, for a verify
    /// digest): one at a time, so no change is applied twice concurrently
    /// and a held file set changes not at all. A flag rather than a mutex
    /// guard so the hold can be owned and moved between threads.
    applying: Mutex<bool>,
    applying_free: Condvar,
}

/// Exclusive right to write changes to the data files; released on drop,
/// on every path.
pub struct ApplyHold<P: Deref<Target = PendingData>> {
    pending: P,
}

impl<P: Deref<Target = PendingData>> ApplyHold<P> {
    /// Waits for the hold, whatever happens meanwhile.
    fn take(mut pending: P) -> Self {
        loop {
            match Self::take_while(pending, |_| true) {
                Ok(hold) => return hold,
                Err(p) => pending = p,
            }
        }
    }

    /// Waits for the hold while `keep_waiting` says so (it sees the
    /// pending data); gives the pointer back if it stops waiting.
    fn take_while(
        pending: P,
        keep_waiting: impl Fn(&PendingData) -> bool,
    ) -> std::result::Result<Self, P> {
        let mut busy = pending.applying.lock();
        while *busy {
            if !keep_waiting(&pending) {
                drop(busy);
                return Err(pending);
            }
            pending.applying_free.wait(&mut busy);
        }
        *busy = true;
        drop(busy);
        Ok(ApplyHold { pending })
    }

    /// Writes every waiting change with LSN <= `durable_lsn` to the files.
    pub fn apply_durable(&self, files: &DataFiles, durable_lsn: Lsn) -> Result<()> {
        self.pending.apply_held(files, durable_lsn)
    }

    /// Bytes of writes waiting (they grow while the hold is kept).
    pub fn pending_bytes(&self) -> u64 {
        self.pending.pending_bytes()
    }
}

impl<P: Deref<Target = PendingData>> Drop for ApplyHold<P> {
    fn drop(&mut self) {
        *self.pending.applying.lock() = false;
        self.pending.applying_free.notify_all();
    }
}

impl DataSink for PendingData {
    fn data_op(&self, lsn: Lsn, ino: Ino, op: DataOp) -> Result<()> {
        let mut q = self.queue.lock();
        if let DataOp::Write { data, .. } = &op {
            q.bytes += data.len() as u64;
        }
        q.fifo.push_back((lsn, ino));
        q.by_ino.entry(ino).or_default().push_back((lsn, op));
        drop(q);
        self.arrived.notify_one();
        Ok(())
    }
}

impl PendingData {
    /// Bytes of writes not yet in the data files.
    pub fn pending_bytes(&self) -> u64 {
        self.queue.lock().bytes
    }

    /// LSN of the oldest waiting change; blocks while there is none.
    /// `None` once closed and empty.
    pub fn wait_oldest(&self) -> Option<Lsn> {
        let mut q = self.queue.lock();
        loop {
            if let Some((lsn, _)) = q.fifo.front() {
                return Some(*lsn);
            }
            if q.closed {
                return None;
            }
            self.arrived.wait(&mut q);
        }
    }

    /// Waits up to `timeout` (or until closed); whether it is closed.
    pub fn wait_closed(&self, timeout: std::time::Duration) -> bool {
        let mut q = self.queue.lock();
        if !q.closed {
            self.arrived.wait_for(&mut q, timeout);
        }
        q.closed
    }

    pub fn close(&self) {
        self.queue.lock().closed = true;
        self.arrived.notify_all();
        // Wakes waiters for the hold so they see `closed`; the flag is
        // taken so the wake-up cannot slip between their check and wait.
        let _applying = self.applying.lock();
        self.applying_free.notify_all();
    }

    /// Writes every waiting change with LSN <= `durable_lsn` to the files.
    /// `Closed` if the store closes while a digest holds the files: what
    /// was not written stays in the journal, and the next open replays it.
    pub fn apply_durable(&self, files: &DataFiles, durable_lsn: Lsn) -> Result<()> {
        // A digest snapshot may be dropped only after its store (the last
        // `Arc<Store>` can go first), so the store's own threads must not
        // wait for the hold once the store is closing.
        ApplyHold::take_while(self, |p| !p.queue.lock().closed)
            .map_err(|_| crate::error::StoreError::Closed)?
            .apply_durable(files, durable_lsn)
    }

    /// Keeps every change out of the data files until the hold is dropped
    /// (waits for an apply in progress to finish first). Reads stay right:
    /// they overlay what waits.
    pub fn hold(self: &Arc<Self>) -> ApplyHold<Arc<PendingData>> {
        ApplyHold::take(self.clone())
    }

    /// `apply_durable`'s work; the caller holds `applying`.
    fn apply_held(&self, files: &DataFiles, durable_lsn: Lsn) -> Result<()> {
        loop {
            let next = {
                let q = self.queue.lock();
                match q.fifo.front() {
                    Some(&(lsn, ino)) if lsn <= durable_lsn => q
                        .by_ino
                        .get(&ino)
                        .and_then(|ops| ops.front())
                        .map(|(l, op)| (*l, ino, op.clone())),
                    _ => None,
                }
            };
            let Some((lsn, ino, op)) = next else {
                return Ok(());
            };
            // Written first, forgotten second: a read in between sees the
            // change both in the file and in the overlay, which is the same.
            apply_to_files(files, ino, &op)?;
            let mut q = self.queue.lock();
            q.fifo.pop_front();
            if let Some(ops) = q.by_ino.get_mut(&ino) {
                if ops.front().is_some_and(|(l, _)| *l == lsn) {
                    ops.pop_front();
                }
                if ops.is_empty() {
                    q.by_ino.remove(&ino);
                }
            }
            if let DataOp::Write { data, .. } = &op {
                q.bytes = q.bytes.saturating_sub(data.len() as u64);
            }
        }
    }

    /// Reads `len` bytes at `offset` of `ino` as the metadata sees them: the
    /// data file overlaid with the waiting changes, oldest first.
    pub fn read(&self, files: &DataFiles, ino: Ino, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset.saturating_add(len as u64);
        let overlay: Vec<DataOp> = {
            let q = self.queue.lock();
            q.by_ino
                .get(&ino)
                .map(|ops| {
                    ops.iter()
                        .filter(|(_, op)| match op {
                            DataOp::Write { offset: o, data } => {
                                *o < end && o.saturating_add(data.len() as u64) > offset
                            }
                            DataOp::SetLen(size) => *size < end,
                            DataOp::Remove => false,
                        })
                        .map(|(_, op)| op.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut buf = files.read(ino, offset, len)?;
        for op in overlay {
            match op {
                DataOp::Write { offset: o, data } => {
                    let from = offset.max(o);
                    let to = end.min(o + data.len() as u64);
                    if from < to {
                        let src = &data[(from - o) as usize..(to - o) as usize];
                        buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
                    }
                }
                DataOp::SetLen(size) => {
                    // Bytes past a truncation read as zeros, even if a later
                    // extension brings the size back over them.
                    let from = size.max(offset);
                    if from < end {
                        buf[(from - offset) as usize..].fill(0);
                    }
                }
                DataOp::Remove => {}
            }
        }
        Ok(buf)
    }
}
