//! NLM v4 (program 100021): byte-range locks and share reservations for
//! NFSv3 clients, one file per procedure. The lock state is the store's
//! (journaled, replicated); what lives here is what never outlives a
//! connection's purpose: blocked requests waiting for a lock
//! (`waiters.rs`), the GRANTED callbacks that hand a waited-for lock to
//! its client (`callback.rs`), and a reply cache for retransmissions
//! (`drc.rs`).

mod args;
mod callback;
mod cancel;
mod drc;
mod free_all;
mod granted;
mod granted_res;
mod lock;
mod msg;
mod nm_lock;
mod share;
mod test;
mod unlock;
mod unshare;
pub(crate) mod waiters;

use std::sync::Arc;

use tandem_store::{Ino, Lsn, StoreError};
use tracing::{debug, warn};

pub(crate) use args::Stat;
pub(crate) use free_all::free_host;

use crate::dispatch::Call;
use crate::exports::client_allowed;
use crate::nfs3::common::{blocking, durable};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(crate) const PROGRAM: u32 = 100_021;
pub(crate) const VERSION: u32 = 4;

/// Settings of the lock manager; every queue and retry is bounded.
#[derive(Debug, Clone)]
pub struct NlmConfig {
    /// Port of the client's portmapper, asked where its lock manager is
    /// when a blocked lock is granted (111; tests use another).
    pub callback_portmap_port: u16,
    /// One attempt at a GRANTED callback (connect, ask, answer).
    pub callback_timeout_ms: u64,
    /// Attempts before a granted lock whose client never answered is
    /// released again.
    pub callback_attempts: u32,
    pub callback_retry_delay_ms: u64,
    /// Blocked LOCK requests waiting, in all and per client host.
    pub max_waiters: usize,
    pub max_waiters_per_host: usize,
    /// Callbacks (GRANTED, _RES) running at once.
    pub max_callbacks_in_flight: usize,
    /// Replies kept for retransmitted calls.
    pub max_cached_replies: usize,
}

impl Default for NlmConfig {
    fn default() -> Self {
        NlmConfig {
            callback_portmap_port: 111,
            callback_timeout_ms: 5_000,
            callback_attempts: 5,
            callback_retry_delay_ms: 2_000,
            max_waiters: 4_096,
            max_waiters_per_host: 256,
            max_callbacks_in_flight: 64,
            max_cached_replies: 4_096,
        }
    }
}

/// The lock manager's in-memory part, shared by every connection.
pub(crate) struct NlmState {
    pub(crate) cfg: NlmConfig,
    pub(crate) waiters: waiters::Waiters,
    pub(crate) drc: drc::ReplyCache,
    pub(crate) callbacks: Arc<tokio::sync::Semaphore>,
    pub(crate) pending_grants: callback::PendingGrants,
}

impl NlmState {
    pub(crate) fn new(cfg: NlmConfig) -> Self {
        NlmState {
            waiters: waiters::Waiters::new(cfg.max_waiters, cfg.max_waiters_per_host),
            drc: drc::ReplyCache::new(cfg.max_cached_replies),
            callbacks: Arc::new(tokio::sync::Semaphore::new(cfg.max_callbacks_in_flight)),
            pending_grants: callback::PendingGrants::default(),
            cfg,
        }
    }
}

pub(crate) async fn dispatch(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    // Calls that change lock state: a retransmission gets the first reply.
    let cached = matches!(call.proc_num, 2..=4 | 20..=22);
    if cached {
        if let Some(reply) = shared.nlm.drc.recall(call) {
            debug!(
                xid = call.xid,
                "answering a retransmitted NLM call from the reply cache"
            );
            return ReplyStatus::Success(reply);
        }
    }
    let status = match call.proc_num {
        0 => ReplyStatus::Success(Vec::new()),
        1 => test::call(shared, call, args).await,
        2 => lock::call(shared, call, args).await,
        3 => cancel::call(shared, call, args).await,
        4 => unlock::call(shared, call, args).await,
        5 => granted::call(args),
        6..=10 => msg::call(shared, call, args).await,
        // Results of _MSG calls we never make: accepted and dropped.
        11..=14 => ReplyStatus::Success(Vec::new()),
        15 => granted_res::call(shared, args).await,
        20 => share::call(shared, call, args).await,
        21 => unshare::call(shared, call, args).await,
        22 => nm_lock::call(shared, call, args).await,
        23 => free_all::call(shared, args).await,
        _ => ReplyStatus::ProcUnavail,
    };
    if cached {
        if let ReplyStatus::Success(body) = &status {
            shared.nlm.drc.remember(call, body.clone());
        }
    }
    status
}

/// The file a lock call names: the handle checked as NFS checks it (ours,
/// its file system exported to this client, the inode alive).
pub(crate) async fn open_file(shared: &Arc<Shared>, call: &Call, fh: &[u8]) -> Result<Ino, Stat> {
    let handle = crate::handle::decode(fh).ok_or(Stat::StaleFh)?;
    let peer = call.peer.ip();
    blocking(shared, move |store| {
        let fs = store.fs_by_fsid(handle.fsid).ok_or(Stat::StaleFh)?;
        if !client_allowed(&fs.export, peer) {
            return Err(Stat::Failed);
        }
        store.resolve(&handle).map_err(|_| Stat::StaleFh)?;
        Ok(handle.ino)
    })
    .await
    .map_err(|_| Stat::Failed)?
}

/// The NLM status for a store refusal.
pub(crate) fn stat_of(e: &StoreError) -> Stat {
    match e {
        // No resources to record the lock: the disk or the lock table.
        StoreError::TooManyLocks { .. } | StoreError::DiskFull(_) => Stat::DeniedNoLocks,
        StoreError::Stale | StoreError::NoEnt => Stat::StaleFh,
        // A copy that takes no changes now (a replica, a fenced or
        // switching-over store): the client retries as in a grace period.
        StoreError::ReadOnly(_) | StoreError::Fenced { .. } => Stat::DeniedGracePeriod,
        other => {
            warn!(error = %other, "lock call failed");
            Stat::Failed
        }
    }
}

/// Waits until a lock record is durable (and replicated as the sync mode
/// asks) before a reply may say the lock is held or released.
pub(crate) async fn settle(shared: &Arc<Shared>, lsn: Option<Lsn>) -> Stat {
    match lsn {
        None => Stat::Granted,
        Some(lsn) => match durable(shared, lsn).await {
            Ok(()) => Stat::Granted,
            Err(_) => Stat::Failed,
        },
    }
}
