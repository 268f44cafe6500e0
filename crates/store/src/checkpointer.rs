//! Checkpoints run off the request path. A checkpoint needs the state at
//! one LSN and data files holding at least every change up to it; it takes
//! the state lock only to copy the state, then (unlocked) waits for that
//! LSN to be durable, applies the waiting data changes up to it, syncs the
//! data files and writes the checkpoint. Data files may also hold changes
//! after that LSN: replaying the journal from it converges regardless.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use crate::checkpoint;
use crate::data::DataFiles;
use crate::error::{Result, StoreError};
use crate::journal::{self, DurableWaiter};
use crate::pending::PendingData;
use crate::state::State;

pub(crate) struct Checkpointer {
    pub(crate) dir: PathBuf,
    pub(crate) state: Arc<RwLock<State>>,
    pub(crate) data: Arc<DataFiles>,
    pub(crate) pending: Arc<PendingData>,
    pub(crate) waiter: DurableWaiter,
    pub(crate) appended_bytes: Arc<AtomicU64>,
    pub(crate) retain_journal: bool,
    /// Highest LSN every replica is known to hold; segments holding later
    /// LSNs are kept across checkpoints so they can still be shipped.
    /// `u64::MAX`: no floor (no replica to wait for).
    pub(crate) retention_floor: AtomicU64,
    /// Journal overflow: the limit and the change map (overflow.rs).
    pub(crate) journal_max_bytes: u64,
    pub(crate) overflow: Arc<crate::overflow::Overflow>,
    /// One checkpoint at a time.
    pub(crate) running: Mutex<()>,
    wanted: Mutex<Wanted>,
    wake: Condvar,
}

#[derive(Default)]
struct Wanted {
    requested: bool,
    /// Roll the journal first (`request_compacting`).
    compact: bool,
    closed: bool,
}

impl Checkpointer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        dir: PathBuf,
        state: Arc<RwLock<State>>,
        data: Arc<DataFiles>,
        pending: Arc<PendingData>,
        waiter: DurableWaiter,
        appended_bytes: Arc<AtomicU64>,
        retain_journal: bool,
        journal_max_bytes: u64,
        overflow: Arc<crate::overflow::Overflow>,
    ) -> Self {
        Checkpointer {
            dir,
            state,
            data,
            pending,
            waiter,
            appended_bytes,
            retain_journal,
            retention_floor: AtomicU64::new(u64::MAX),
            journal_max_bytes,
            overflow,
            running: Mutex::new(()),
            wanted: Mutex::new(Wanted::default()),
            wake: Condvar::new(),
        }
    }

    /// Asks the background thread for a checkpoint; returns at once.
    pub(crate) fn request(&self) {
        let mut w = self.wanted.lock();
        if !w.requested {
            w.requested = true;
            drop(w);
            self.wake.notify_one();
        }
    }

    /// Asks for a checkpoint that rolls the journal first, so every
    /// segment up to it can go (space is short: space.rs).
    pub(crate) fn request_compacting(&self) {
        self.wanted.lock().compact = true;
        self.request();
    }

    pub(crate) fn close(&self) {
        self.wanted.lock().closed = true;
        self.wake.notify_all();
    }

    /// Takes a checkpoint now, on the calling thread.
    pub(crate) fn run(&self) -> Result<()> {
        let compact = std::mem::take(&mut self.wanted.lock().compact);
        self.run_rolling(compact)
    }

    /// A checkpoint; with `roll`, the journal starts a new segment right
    /// after the checkpoint's LSN, so no segment straddles it.
    fn run_rolling(&self, roll: bool) -> Result<()> {
        let _one = self.running.lock();
        let (state, roll_ticket) = {
            let st = self.state.read();
            // Counted from here: what is appended during this checkpoint
            // belongs to the next one.
            self.appended_bytes.store(0, Ordering::Relaxed);
            // Under the lock, so no change of the active site lands between
            // the state copied and the roll (a replica may append frames
            // ahead of its state: its segment then goes next time).
            let ticket = roll.then(|| self.waiter.request_roll());
            (st.clone(), ticket)
        };
        if let Some(ticket) = roll_ticket {
            self.waiter.wait_rolled(ticket);
        }
        self.waiter.wait_synced(state.lsn)?;
        self.pending.apply_durable(&self.data, state.lsn)?;
        self.data.sync_dirty()?;
        if !self.retain_journal {
            // Before the checkpoint: the persisted change map must cover
            // through its LSN, as replay adds only what follows.
            crate::overflow::before_checkpoint(self)?;
        }
        checkpoint::write(&self.dir, &state)?;
        if !self.retain_journal {
            let segments = journal::list_segments(&self.dir.join("journal"))?;
            // A segment's last LSN is the next one's first minus one; it
            // may go once both the checkpoint and every replica have it.
            let floor = self.retention_floor.load(Ordering::Relaxed);
            let deletable_to = state.lsn.min(floor);
            for pair in segments.windows(2) {
                if pair[1].first_lsn.saturating_sub(1) <= deletable_to {
                    std::fs::remove_file(&pair[0].path)
                        .map_err(|e| StoreError::io(&pair[0].path, e))?;
                }
            }
        }
        tracing::debug!(lsn = state.lsn, "checkpoint written");
        Ok(())
    }
}

pub(crate) fn spawn(ckpt: Arc<Checkpointer>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tandem-checkpoint".into())
        .spawn(move || loop {
            {
                let mut w = ckpt.wanted.lock();
                while !w.requested && !w.closed {
                    ckpt.wake.wait(&mut w);
                }
                if w.closed {
                    return;
                }
                w.requested = false;
            }
            match ckpt.run() {
                Ok(()) => {}
                // Data files that cannot be written yet (a full disk): the
                // journal keeps them, and the next request tries again.
                Err(e) if e.is_no_space() => {
                    tracing::warn!(error = %e, "checkpoint put off: no room on the disk")
                }
                // The journal still holds everything; the next request
                // tries again.
                Err(e) => tracing::error!(error = %e, "background checkpoint failed"),
            }
        })
        .map_err(|e| StoreError::io("checkpoint thread", e))
}
