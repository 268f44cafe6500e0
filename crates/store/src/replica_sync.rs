//! Synchronous replication at the active site: the LSN the replica has
//! acknowledged as durable (the sender reports it), the vserver's chosen
//! mode, and the wait a client reply makes for the replica's ack.
//!
//! The store holds this (not the NFS server or the control daemon) because
//! both sides meet here: the sender sets the ack, every NFS reply reads it,
//! and both already hold the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Result;
use crate::store::Store;
use crate::types::Lsn;

/// How long a blocked reply waits before it looks at the policy again, so
/// a reply blocked on a replica that is then dropped from replication (or
/// switched to degrade) does not wait for ever.
pub const POLICY_RECHECK_MS: u64 = 1_000;
/// Default for `sync_timeout_ms`.
pub const DEFAULT_SYNC_TIMEOUT_MS: u64 = 5_000;

/// Which client replies wait for the replica (docs/design.md, "Replication
/// modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Not replicated.
    #[default]
    Off,
    /// Replies wait for the local journal only.
    Async,
    /// COMMIT, FILE_SYNC/DATA_SYNC writes and namespace/attribute changes
    /// also wait for the replica's durable ack.
    CommitSync,
    /// Every write waits for the replica's durable ack, UNSTABLE included.
    Sync,
}

/// What a reply does when the replica's ack does not come in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnReplicaLoss {
    /// Reply anyway (as in async), raise the degraded alert, and return to
    /// the chosen mode once the replica has caught up.
    #[default]
    Degrade,
    /// Keep waiting: the client retransmits, and nothing is told stable
    /// that the replica lacks.
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPolicy {
    pub mode: SyncMode,
    pub sync_timeout_ms: u64,
    pub on_replica_loss: OnReplicaLoss,
    /// Async only: while the oldest record the replica lacks is older than
    /// this, change replies wait (as commit-sync's do, up to
    /// `sync_timeout_ms`, then `on_replica_loss`), which throttles writers
    /// so the RPO stays within it. `None`: replies never wait in async.
    pub max_lag_ms: Option<u64>,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            mode: SyncMode::Off,
            sync_timeout_ms: DEFAULT_SYNC_TIMEOUT_MS,
            on_replica_loss: OnReplicaLoss::Degrade,
            max_lag_ms: None,
        }
    }
}

/// Which kind of reply is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// COMMIT, FILE_SYNC/DATA_SYNC WRITE, namespace or attribute change.
    Stable,
    /// UNSTABLE WRITE.
    Unstable,
}

pub(crate) struct ReplicaSync {
    /// Highest LSN the replica acknowledged as durable.
    acked: watch::Sender<Lsn>,
    policy: Mutex<SyncPolicy>,
    degraded: AtomicBool,
    degraded_replies: AtomicU64,
}

impl Default for ReplicaSync {
    fn default() -> Self {
        ReplicaSync {
            acked: watch::Sender::new(0),
            policy: Mutex::new(SyncPolicy::default()),
            degraded: AtomicBool::new(false),
            degraded_replies: AtomicU64::new(0),
        }
    }
}

impl ReplicaSync {
    fn policy(&self) -> SyncPolicy {
        *self.policy.lock()
    }
}

impl Store {
    /// The sender reports the replica's durable ack; LSNs only grow (a new
    /// session may start from an older figure, which changes nothing).
    pub fn set_replica_acked(&self, lsn: Lsn) {
        let s = &self.sync;
        s.acked.send_if_modified(|v| {
            if lsn > *v {
                *v = lsn;
                true
            } else {
                false
            }
        });
        if s.degraded.load(Ordering::Acquire)
            && (lsn >= self.durable_lsn() || self.within_max_lag(&s.policy()))
        {
            self.recover(lsn);
        }
    }

    pub fn replica_acked(&self) -> Lsn {
        *self.sync.acked.borrow()
    }

    pub fn set_replication_mode(&self, policy: SyncPolicy) {
        *self.sync.policy.lock() = policy;
        let waits = match policy.mode {
            SyncMode::Off => false,
            SyncMode::Async => policy.max_lag_ms.is_some(),
            SyncMode::CommitSync | SyncMode::Sync => true,
        };
        if !waits {
            // Nothing waits any more, so there is nothing to be degraded from.
            self.sync.degraded.store(false, Ordering::Release);
        }
    }

    pub fn sync_policy(&self) -> SyncPolicy {
        self.sync.policy()
    }

    /// Whether replies currently skip the replica (the alert), and how many
    /// replies did so since the store opened.
    pub fn replication_degraded(&self) -> (bool, u64) {
        (
            self.sync.degraded.load(Ordering::Acquire),
            self.sync.degraded_replies.load(Ordering::Relaxed),
        )
    }

    /// Waits until the replica acknowledged `lsn`; false if `timeout` passed
    /// first.
    pub async fn wait_replicated(&self, lsn: Lsn, timeout: Duration) -> Result<bool> {
        let mut rx = self.sync.acked.subscribe();
        // The sender half lives in this store, so the channel cannot close
        // while we borrow the store; an error would only mean that.
        let acked =
            tokio::time::timeout(timeout, async { rx.wait_for(|v| *v >= lsn).await.is_ok() }).await;
        Ok(acked.unwrap_or(false))
    }

    /// What a client reply whose record is `lsn` (already durable here)
    /// waits for before it is sent, by the vserver's mode.
    pub async fn wait_replica_for_reply(&self, lsn: Lsn, kind: ReplyKind) -> Result<()> {
        loop {
            let p = self.sync.policy();
            let needed = match p.mode {
                SyncMode::Off => false,
                SyncMode::Async => p.max_lag_ms.is_some(),
                SyncMode::CommitSync => kind == ReplyKind::Stable,
                SyncMode::Sync => true,
            };
            if !needed {
                return Ok(());
            }
            let degraded = self.sync.degraded.load(Ordering::Acquire);
            if self.reply_may_go(lsn, &p) {
                if degraded {
                    // The replica holds all this reply needs: it caught up
                    // with where this reply stood.
                    self.recover(lsn);
                }
                return Ok(());
            }
            match p.on_replica_loss {
                OnReplicaLoss::Block => {
                    let wait = Duration::from_millis(POLICY_RECHECK_MS);
                    if self.wait_reply_may_go(lsn, &p, wait).await {
                        return Ok(());
                    }
                }
                OnReplicaLoss::Degrade => {
                    if degraded {
                        self.sync.degraded_replies.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    let wait = Duration::from_millis(p.sync_timeout_ms);
                    if self.wait_reply_may_go(lsn, &p, wait).await {
                        return Ok(());
                    }
                    if !self.sync.degraded.swap(true, Ordering::AcqRel) {
                        tracing::warn!(
                            lsn,
                            replica_acked = self.replica_acked(),
                            sync_timeout_ms = p.sync_timeout_ms,
                            "replica did not acknowledge in time; replying without it (degraded to async) until it catches up"
                        );
                    }
                    self.sync.degraded_replies.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
    }

    /// Async with a max lag: whether the oldest record the replica lacks
    /// is at most `max_lag_ms` old. False for any other policy.
    fn within_max_lag(&self, p: &SyncPolicy) -> bool {
        match (p.mode, p.max_lag_ms) {
            (SyncMode::Async, Some(max)) => {
                self.lag_behind(self.replica_acked()).oldest_unacked_ms <= max
            }
            _ => false,
        }
    }

    /// Whether a reply whose record is `lsn` may go out under `p`: the
    /// replica acked it, or (async with a max lag) the lag is within it.
    fn reply_may_go(&self, lsn: Lsn, p: &SyncPolicy) -> bool {
        self.replica_acked() >= lsn || self.within_max_lag(p)
    }

    /// Waits up to `timeout` for `reply_may_go`. The lag only shrinks when
    /// an ack arrives, so each ack is a moment to look again.
    async fn wait_reply_may_go(&self, lsn: Lsn, p: &SyncPolicy, timeout: Duration) -> bool {
        let mut rx = self.sync.acked.subscribe();
        let ok = tokio::time::timeout(timeout, async {
            rx.wait_for(|_| self.reply_may_go(lsn, p)).await.is_ok()
        })
        .await;
        ok.unwrap_or(false)
    }

    fn recover(&self, lsn: Lsn) {
        if self.sync.degraded.swap(false, Ordering::AcqRel) {
            tracing::info!(
                replica_acked = lsn,
                "replica caught up; replies wait for it again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::init(&tmp.path().join("vs"), "vs", StoreOptions::default()).unwrap();
        (tmp, s)
    }

    /// Waits for one reply; then whether degraded, and the count.
    async fn reply(s: &Store, lsn: Lsn, kind: ReplyKind) -> (bool, u64) {
        s.wait_replica_for_reply(lsn, kind).await.unwrap();
        s.replication_degraded()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn degrade_counts_late_replies_and_recovers_on_catch_up() {
        let (_tmp, s) = store();
        let lsn = s.durable_lsn();
        s.set_replication_mode(SyncPolicy {
            mode: SyncMode::CommitSync,
            sync_timeout_ms: 20,
            on_replica_loss: OnReplicaLoss::Degrade,
            max_lag_ms: None,
        });
        rt().block_on(async {
            // UNSTABLE never waits in commit-sync.
            assert_eq!(reply(&s, lsn, ReplyKind::Unstable).await, (false, 0));
            assert_eq!(reply(&s, lsn, ReplyKind::Stable).await, (true, 1));
            assert_eq!(reply(&s, lsn, ReplyKind::Stable).await, (true, 2));
        });
        s.set_replica_acked(lsn);
        assert_eq!(s.replication_degraded(), (false, 2));
        // Acks never go back.
        s.set_replica_acked(0);
        assert_eq!(s.replica_acked(), lsn);
    }

    #[test]
    fn block_waits_for_the_ack_and_async_does_not() {
        let (_tmp, s) = store();
        let s = std::sync::Arc::new(s);
        let lsn = s.durable_lsn();
        rt().block_on(async {
            s.set_replication_mode(SyncPolicy {
                mode: SyncMode::Async,
                ..SyncPolicy::default()
            });
            s.wait_replica_for_reply(lsn, ReplyKind::Stable)
                .await
                .unwrap();
            s.set_replication_mode(SyncPolicy {
                mode: SyncMode::Sync,
                sync_timeout_ms: 1,
                on_replica_loss: OnReplicaLoss::Block,
                max_lag_ms: None,
            });
            let waiting = s.wait_replica_for_reply(lsn, ReplyKind::Unstable);
            tokio::pin!(waiting);
            let early = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await;
            assert!(early.is_err(), "block mode replied without the ack");
            s.set_replica_acked(lsn);
            waiting.await.unwrap();
            assert_eq!(s.replication_degraded(), (false, 0));
            assert!(!s
                .wait_replicated(lsn + 1, Duration::from_millis(1))
                .await
                .unwrap());
        });
    }

    /// Waits (polling with a deadline) until the oldest unacked record is
    /// older than `ms`.
    fn wait_lag_above(s: &Store, ms: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while s.lag_behind(s.replica_acked()).oldest_unacked_ms <= ms {
            assert!(std::time::Instant::now() < deadline, "lag never grew");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn change(s: &Store, name: &str) -> Lsn {
        let fs = s
            .create_fs(
                name,
                crate::Export {
                    path: format!("/{name}"),
                    clients: Vec::new(),
                    read_only: false,
                    root_squash: false,
                    anon_uid: 65534,
                    anon_gid: 65534,
                },
            )
            .unwrap();
        s.wait_durable_blocking(fs.lsn).unwrap();
        fs.lsn
    }

    #[test]
    fn max_lag_holds_replies_until_the_replica_catches_up() {
        let (_tmp, s) = store();
        let lsn = change(&s, "a");
        let policy = SyncPolicy {
            mode: SyncMode::Async,
            sync_timeout_ms: 1,
            on_replica_loss: OnReplicaLoss::Block,
            max_lag_ms: Some(1),
        };
        s.set_replication_mode(policy);
        wait_lag_above(&s, 1);
        rt().block_on(async {
            // Both kinds wait while the lag is over the bound.
            for kind in [ReplyKind::Unstable, ReplyKind::Stable] {
                let waiting = s.wait_replica_for_reply(lsn, kind);
                tokio::pin!(waiting);
                let early = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await;
                assert!(early.is_err(), "replied with the lag over max_lag_ms");
            }
            s.set_replica_acked(lsn);
            assert_eq!(reply(&s, lsn, ReplyKind::Unstable).await, (false, 0));
        });
        // Without a max lag, async never waits.
        s.set_replication_mode(SyncPolicy {
            max_lag_ms: None,
            ..policy
        });
        let later = change(&s, "b");
        wait_lag_above(&s, 1);
        rt().block_on(s.wait_replica_for_reply(later, ReplyKind::Stable))
            .unwrap();
    }

    #[test]
    fn max_lag_degrades_when_the_replica_stays_behind() {
        let (_tmp, s) = store();
        let lsn = change(&s, "a");
        s.set_replication_mode(SyncPolicy {
            mode: SyncMode::Async,
            sync_timeout_ms: 20,
            on_replica_loss: OnReplicaLoss::Degrade,
            max_lag_ms: Some(1),
        });
        wait_lag_above(&s, 1);
        rt().block_on(async {
            assert_eq!(reply(&s, lsn, ReplyKind::Unstable).await, (true, 1));
            assert_eq!(reply(&s, lsn, ReplyKind::Stable).await, (true, 2));
        });
        // The ack brings the lag back within the bound: no longer degraded.
        s.set_replica_acked(lsn);
        assert_eq!(s.replication_degraded(), (false, 2));
    }
}
