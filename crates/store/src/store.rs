//! The public face of one vserver's store: open/recover, commit a record,
//! durability, checkpoints. The file-system operations live in `ops/`, one
//! file each.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use crate::checkpoint;
use crate::checkpointer::{self, Checkpointer};
use crate::config::VserverConfig;
use crate::data::{sync_dir, DataFiles};
use crate::error::{Result, StoreError};
use crate::journal::{self, JournalWriter, WriterOptions};
use crate::pending::PendingData;
use crate::record::{Op, Record};
use crate::state::State;
use crate::types::*;

/// Written at the top of every store directory, so opening something else
/// fails clearly.
pub const FORMAT_FILE: &str = "FORMAT";
pub const FORMAT_TEXT: &str = "tandem-store 1\n";
/// Journal bytes whose decoded records `open` keeps between its check pass
/// and its apply pass; a longer journal is read twice instead.
const REPLAY_KEEP_BYTES: usize = 64 << 20;

/// Default `journal_max_bytes`.
pub const DEFAULT_JOURNAL_MAX_BYTES: u64 = 8 << 30;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Roll to a new journal segment past this size.
    pub max_segment_bytes: u64,
    /// Take a checkpoint once this many journal bytes follow the last one.
    pub checkpoint_every_bytes: u64,
    /// Keep journal segments older than the checkpoint (replication and
    /// replay tests need them); otherwise they are deleted.
    pub retain_journal: bool,
    /// Most journal bytes buffered but not yet written; writers wait past it.
    pub max_buffered_bytes: usize,
    /// Open data-file descriptors kept cached.
    pub max_open_files: usize,
    /// Journal bytes written but not yet synced before a sync is forced.
    pub max_unsynced_bytes: u64,
    /// Most journal kept for an absent replica (> 0). Past it the store
    /// enters journal overflow (overflow.rs): segments go at checkpoints
    /// and changed ranges are tracked for a catch-up instead.
    pub journal_max_bytes: u64,
    /// Disk room kept for changes that free space (space.rs).
    pub reserve_bytes: u64,
    /// Space counts as low while the room above the reserve is under this
    /// share of the file system (1..=90).
    pub low_percent: u8,
    /// Tests only: a pretended disk (space.rs).
    pub space_faults: Option<Arc<crate::space::SpaceFaults>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_segment_bytes: 64 << 20,
            checkpoint_every_bytes: 2 << 30,
            retain_journal: false,
            max_buffered_bytes: 64 << 20,
            max_open_files: 1024,
            max_unsynced_bytes: 256 << 20,
            journal_max_bytes: DEFAULT_JOURNAL_MAX_BYTES,
            reserve_bytes: crate::space::DEFAULT_RESERVE_BYTES,
            low_percent: crate::space::DEFAULT_LOW_PERCENT,
            space_faults: None,
        }
    }
}

pub struct Store {
    pub(crate) dir: PathBuf,
    pub(crate) opts: StoreOptions,
    pub(crate) state: Arc<RwLock<State>>,
    pub(crate) data: Arc<DataFiles>,
    /// Data changes whose records are not yet durable (see pending.rs).
    pub(crate) pending: Arc<PendingData>,
    /// Set when the applier could not write a data file for a reason
    /// other than a full disk: the store then refuses changes (the journal
    /// still holds everything).
    pub(crate) data_failure: Arc<Mutex<Option<String>>>,
    /// Room on the disk and who may use it (space.rs).
    pub(crate) space: Arc<crate::space::Space>,
    applier: Mutex<Option<JoinHandle<()>>>,
    pub(crate) checkpointer: Arc<Checkpointer>,
    checkpoint_thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) journal: JournalWriter,
    /// Replica or active, and the replica's apply bookkeeping (replica.rs).
    pub(crate) replication: crate::replica::Replication,
    /// Set when another site holds a higher epoch (fence.rs).
    pub(crate) fence: crate::fence::Fence,
    /// Per-commit marks for replication lag (lag.rs).
    pub(crate) lsn_marks: crate::lag::LsnMarks,
    /// The replica's ack and the mode replies wait by (replica_sync.rs).
    pub(crate) sync: crate::replica_sync::ReplicaSync,
    /// New at every open and at promotion (promote.rs).
    pub(crate) verifier: std::sync::atomic::AtomicU64,
    /// Held for the store's lifetime: one process per store directory.
    _lock: File,
}

/// Lays out a new store in an empty (or absent) directory: `journal/`,
/// `FORMAT` and then `extra` files (name, contents), synced. A directory
/// holding anything is refused with `Exist`.
pub(crate) fn create_store_dir(dir: &Path, extra: &[(&str, &str)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let non_empty = std::fs::read_dir(dir)
        .map_err(|e| StoreError::io(dir, e))?
        .next()
        .is_some();
    if non_empty {
        return Err(StoreError::Exist);
    }
    std::fs::create_dir_all(dir.join("journal")).map_err(|e| StoreError::io(dir, e))?;
    for (name, text) in std::iter::once(&(FORMAT_FILE, FORMAT_TEXT)).chain(extra) {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| StoreError::io(&path, e))?;
    }
    sync_dir(dir)
}

impl Store {
    /// Creates a new vserver store in an empty (or absent) directory; the
    /// first journal record names the vserver.
    pub fn init(dir: &Path, name: &str, opts: StoreOptions) -> Result<Store> {
        crate::ops::validate::vserver_name(name)?;
        create_store_dir(dir, &[])?;
        let store = Store::open(dir, opts)?;
        let m = store.commit_op(
            None,
            Op::VserverCreated {
                name: name.to_string(),
            },
        )?;
        store.wait_durable_blocking(m)?;
        Ok(store)
    }

    /// Opens an existing store: latest checkpoint + journal replay. A
    /// corrupt journal is a clear error, never a silently shorter store.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store> {
        if opts.journal_max_bytes == 0 {
            return Err(StoreError::Inval("journal_max_bytes must be > 0".into()));
        }
        // First: a baseline that stopped early may not have its FORMAT yet.
        crate::baseline::refuse_if_in_progress(dir)?;
        let format = dir.join(FORMAT_FILE);
        match std::fs::read(&format) {
            Ok(t) if t == FORMAT_TEXT.as_bytes() => {}
            Ok(t) => {
                return Err(StoreError::Corrupt(format!(
                    "{}: unsupported store format {:?}",
                    format.display(),
                    String::from_utf8_lossy(&t).trim()
                )))
            }
            Err(e) => return Err(StoreError::io(&format, e)),
        }
        let marked_replica = crate::replica::marked_replica(dir)?;
        let fence = crate::fence::Fence::load(dir)?;
        let space = Arc::new(crate::space::Space::new(
            dir,
            opts.reserve_bytes,
            opts.low_percent,
            opts.space_faults.clone(),
        )?);
        let lock = lock_dir(dir)?;
        crate::catchup::recover(dir)?;
        let data = Arc::new(
            DataFiles::new(dir.join("data"), opts.max_open_files)?
                .with_faults(opts.space_faults.clone()),
        );
        let journal_dir = dir.join("journal");
        let mut state = checkpoint::read(dir)?.unwrap_or_else(State::empty);
        let checkpoint_lsn = state.lsn;
        let overflow = Arc::new(crate::overflow::load(dir, checkpoint_lsn)?);
        // Check every frame before applying any: replay writes data files,
        // and a store found corrupt must be left exactly as it was. The
        // decoded records are kept for the apply pass while they fit
        // `REPLAY_KEEP_BYTES`; past that the journal is read a second time.
        let mut kept = Some(Vec::new());
        let mut kept_bytes = 0usize;
        let outcome = journal::scan(&journal_dir, checkpoint_lsn, |r| {
            if let Some(records) = &mut kept {
                kept_bytes += r.frame_bytes;
                if kept_bytes <= REPLAY_KEEP_BYTES {
                    records.push(r);
                } else {
                    kept = None;
                }
            }
            Ok(())
        })?;
        let pending = Arc::new(PendingData::default());
        let replay_sink = ReplaySink {
            files: &data,
            pending: &pending,
            spilled: std::cell::Cell::new(false),
        };
        let mut replay = |r: &journal::ScannedRecord| {
            // A replica adopts the epoch its frames carry (replica.rs); replay
            // does the same so a reopened replica equals the running one.
            state.epoch = state.epoch.max(r.epoch);
            let sink = crate::overflow::TrackingSink {
                inner: &replay_sink,
                overflow: &overflow,
            };
            state.apply(r.lsn, &r.record, &sink)
        };
        match kept {
            Some(records) => records.iter().try_for_each(&mut replay)?,
            None => {
                journal::scan(&journal_dir, checkpoint_lsn, |r| replay(&r))?;
            }
        }
        if let Some((path, keep)) = &outcome.torn_tail {
            tracing::warn!(segment = %path.display(), keep_bytes = keep, "cutting torn journal tail left by a crash");
            cut_tail(path, *keep)?;
        }
        if outcome.records > 0 || outcome.torn_tail.is_some() {
            // Not a clean shutdown: writes whose records never became
            // durable may have extended data files past their size.
            trim_data_files(&state, &data)?;
        }
        // A last segment holding nothing past the state is replaced by the
        // writer's fresh one.
        for seg in journal::list_segments(&journal_dir)? {
            if seg.first_lsn > state.lsn {
                std::fs::remove_file(&seg.path).map_err(|e| StoreError::io(&seg.path, e))?;
            }
        }
        let fence = fence.outgrown(dir, state.epoch)?;
        tracing::info!(dir = %dir.display(), checkpoint_lsn, replayed = outcome.records, lsn = state.lsn, "store opened");
        let journal = JournalWriter::start(
            journal_dir,
            state.lsn + 1,
            WriterOptions {
                max_segment_bytes: opts.max_segment_bytes,
                max_buffered_bytes: opts.max_buffered_bytes,
                max_unsynced_bytes: opts.max_unsynced_bytes,
            },
        )?;
        let data_failure = Arc::new(Mutex::new(None));
        let applier = spawn_applier(
            journal.durable_waiter(),
            pending.clone(),
            data.clone(),
            data_failure.clone(),
            space.clone(),
        )?;
        let state = Arc::new(RwLock::new(state));
        let checkpointer = Arc::new(Checkpointer::new(
            dir.to_path_buf(),
            state.clone(),
            data.clone(),
            pending.clone(),
            journal.durable_waiter(),
            journal.appended_bytes_counter(),
            opts.retain_journal,
            opts.journal_max_bytes,
            overflow,
        ));
        let checkpoint_thread = checkpointer::spawn(checkpointer.clone())?;
        let replication = crate::replica::Replication::default();
        if marked_replica {
            replication
                .replica
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            opts,
            state,
            data,
            pending,
            data_failure,
            space,
            applier: Mutex::new(Some(applier)),
            checkpointer,
            checkpoint_thread: Mutex::new(Some(checkpoint_thread)),
            journal,
            replication,
            fence,
            lsn_marks: crate::lag::LsnMarks::default(),
            sync: crate::replica_sync::ReplicaSync::default(),
            verifier: std::sync::atomic::AtomicU64::new(rand::random()),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }

    pub fn config(&self) -> VserverConfig {
        self.read_state().config.clone()
    }

    /// A copy of the whole metadata state (tests and fsck compare these).
    pub fn snapshot(&self) -> State {
        self.read_state().clone()
    }

    pub fn epoch(&self) -> u64 {
        self.read_state().epoch
    }

    /// Journals and applies one operation under the state lock held by the
    /// caller; returns its LSN.
    pub(crate) fn commit(&self, st: &mut State, req: Option<ReqId>, op: Op) -> Result<Lsn> {
        let lsn = st.lsn + 1;
        if let Some(why) = self.data_failure.lock().as_ref() {
            return Err(StoreError::ReadOnly(format!(
                "data files cannot be written: {why}"
            )));
        }
        if let Some(theirs) = self.fence.epoch() {
            return Err(StoreError::Fenced {
                ours: st.epoch,
                theirs,
            });
        }
        if self.replication.is_replica() {
            // A replica changes only through apply_replicated: one writer
            // per vserver, and that writer is the active site.
            return Err(StoreError::ReadOnly(
                "this store is a replica; changes come from the active site".into(),
            ));
        }
        let (need, cost_bytes) = crate::space::need_of(&op, st);
        let space = self
            .space
            .admit(need, cost_bytes, self.outstanding_bytes())
            .inspect_err(|e| {
                if e.is_no_space() && self.journal.appended_bytes() > 0 {
                    // Removals may have emptied data files whose bytes
                    // the journal still holds: a checkpoint lets them go.
                    self.checkpointer.request_compacting();
                }
            })?;
        let record = Record { req, op };
        let frame_bytes = self.journal.append(lsn, st.epoch, &record)?;
        self.lsn_marks.record(lsn, frame_bytes);
        let sink = crate::overflow::TrackingSink {
            inner: &*self.pending,
            overflow: &self.checkpointer.overflow,
        };
        st.apply(lsn, &record, &sink)?;
        self.after_append(space);
        Ok(lsn)
    }

    /// Bytes accepted but not yet on disk: they will take room.
    pub(crate) fn outstanding_bytes(&self) -> u64 {
        self.journal.buffered_bytes() + self.pending.pending_bytes()
    }

    /// Asks for a checkpoint when one is due. Checkpoints are where
    /// overflow is checked and segments go, so they come at least twice
    /// per `journal_max_bytes`, and every `LOW_CHECKPOINT_EVERY_BYTES`
    /// while space is short.
    pub(crate) fn after_append(&self, space: crate::space::SpaceState) {
        let every = (self.opts.checkpoint_every_bytes).min(self.opts.journal_max_bytes / 2);
        let appended = self.journal.appended_bytes();
        if space != crate::space::SpaceState::Ok
            && appended >= crate::space::LOW_CHECKPOINT_EVERY_BYTES.min(every)
        {
            self.checkpointer.request_compacting();
        } else if appended >= every {
            self.checkpointer.request();
        }
    }

    /// Room on the disk now (`tandem status`, metrics).
    pub fn space(&self) -> Result<crate::space::SpaceReport> {
        self.space.report(self.outstanding_bytes())
    }

    pub(crate) fn commit_op(&self, req: Option<ReqId>, op: Op) -> Result<Lsn> {
        let mut st = self.write_state();
        self.commit(&mut st, req, op)
    }

    /// Writes a checkpoint now (on this thread).
    pub fn checkpoint(&self) -> Result<()> {
        self.checkpointer.run()
    }

    /// Highest LSN assigned so far.
    pub fn last_lsn(&self) -> Lsn {
        self.read_state().lsn
    }

    /// Highest LSN known to be on stable storage.
    pub fn durable_lsn(&self) -> Lsn {
        self.journal.durable().lsn
    }

    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.journal.wait_durable(lsn).await
    }

    pub fn wait_durable_blocking(&self, lsn: Lsn) -> Result<()> {
        self.journal.wait_durable_blocking(lsn)
    }

    /// Changes whenever uncommitted data may have been lost: new at every
    /// open of the store.
    pub fn write_verifier(&self) -> [u8; 8] {
        self.verifier
            .load(std::sync::atomic::Ordering::Acquire)
            .to_le_bytes()
    }

    /// Flushes, checkpoints and stops the journal writer.
    pub fn close(&self) -> Result<()> {
        let result = self.checkpoint();
        self.stop_threads();
        result
    }

    /// Bytes written by clients that are not yet in the data files.
    pub fn pending_data_bytes(&self) -> u64 {
        self.pending.pending_bytes()
    }

    /// The journal syncs what it holds on close, so the applier can then
    /// write every waiting change before it stops.
    fn stop_threads(&self) {
        // First, so no thread joined below waits for a digest's hold on the
        // data files: the digest may be dropped only after this store.
        self.pending.close();
        self.checkpointer.close();
        if let Some(t) = self.checkpoint_thread.lock().take() {
            if t.join().is_err() {
                tracing::error!("checkpoint thread panicked");
            }
        }
        self.journal.close();
        if let Some(t) = self.applier.lock().take() {
            if t.join().is_err() {
                tracing::error!("data applier thread panicked");
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// First and longest wait before the applier tries a data file again
/// after a full disk refused it.
const STALL_RETRY_MIN_MS: u64 = 50;
const STALL_RETRY_MAX_MS: u64 = 2000;

/// The thread that moves data changes to the files once durable.
fn spawn_applier(
    waiter: journal::DurableWaiter,
    pending: Arc<PendingData>,
    data: Arc<DataFiles>,
    failure: Arc<Mutex<Option<String>>>,
    space: Arc<crate::space::Space>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tandem-data".into())
        .spawn(move || {
            let mut retry_ms = STALL_RETRY_MIN_MS;
            while let Some(oldest) = pending.wait_oldest() {
                let durable = waiter.wait(oldest);
                if durable.failed {
                    // Nothing more becomes durable; reads keep the overlay.
                    return;
                }
                match pending.apply_durable(&data, durable.lsn) {
                    Ok(()) => {
                        retry_ms = STALL_RETRY_MIN_MS;
                        space.set_stalled(None);
                    }
                    // Closing while a digest holds the files: the journal
                    // keeps what is left for the next open.
                    Err(StoreError::Closed) => return,
                    // Not a failure of the store: the change is durable in
                    // the journal and reads see it from the queue; it is
                    // written once there is room (admission refuses new
                    // writes meanwhile, so the queue does not grow).
                    Err(e) if e.is_no_space() => {
                        space.set_stalled(Some(e.to_string()));
                        if pending.wait_closed(std::time::Duration::from_millis(retry_ms)) {
                            return;
                        }
                        retry_ms = (retry_ms * 2).min(STALL_RETRY_MAX_MS);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "writing data files failed; store refuses changes");
                        *failure.lock() = Some(e.to_string());
                        return;
                    }
                }
            }
        })
        .map_err(|e| StoreError::io("data applier thread", e))
}

/// Most data `open` keeps in memory when replay finds no room to write it
/// to the data files; past it the open fails with `DiskFull`.
pub const REPLAY_SPILL_MAX_BYTES: u64 = 256 << 20;

/// Replay's data sink: straight to the files (the records are durable),
/// unless the disk is full; from the first change that finds no room on,
/// every change waits in the pending queue instead (keeping their order),
/// as if just written, and the applier writes them once there is room.
/// So a store opens on a full disk and serves reads.
struct ReplaySink<'a> {
    files: &'a DataFiles,
    pending: &'a PendingData,
    spilled: std::cell::Cell<bool>,
}

impl crate::pending::DataSink for ReplaySink<'_> {
    fn data_op(&self, lsn: Lsn, ino: Ino, op: crate::pending::DataOp) -> Result<()> {
        if !self.spilled.get() {
            match crate::pending::apply_to_files(self.files, ino, &op) {
                Ok(()) => return Ok(()),
                Err(e) if e.is_no_space() => {
                    tracing::warn!(lsn, error = %e, "no room to replay data into the data files; keeping the rest in memory until there is");
                    self.spilled.set(true);
                }
                Err(e) => return Err(e),
            }
        }
        if self.pending.pending_bytes() > REPLAY_SPILL_MAX_BYTES {
            return Err(StoreError::DiskFull(format!(
                "replaying the journal needs more than {REPLAY_SPILL_MAX_BYTES} bytes of \
                 data kept in memory; free space on the file system"
            )));
        }
        self.pending.data_op(lsn, ino, op)
    }
}

pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StoreError::ReadOnly(format!(
            "{} is in use by another process",
            dir.display()
        )));
    }
    Ok(f)
}

fn cut_tail(path: &Path, keep_bytes: u64) -> Result<()> {
    if keep_bytes == 0 {
        return std::fs::remove_file(path).map_err(|e| StoreError::io(path, e));
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    f.set_len(keep_bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::io(path, e))
}

fn trim_data_files(state: &State, data: &DataFiles) -> Result<()> {
    for ino in data.list()? {
        match state.inodes.get(&ino) {
            Some(inode) if inode.attr.ftype == FileType::Regular => {
                let path = data.path_of(ino);
                let len = std::fs::metadata(&path)
                    .map_err(|e| StoreError::io(&path, e))?
                    .len();
                if len > inode.attr.size {
                    data.set_len(ino, inode.attr.size)?;
                }
            }
            _ => data.remove(ino)?,
        }
    }
    Ok(())
}
