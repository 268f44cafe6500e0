//! The replica side: a peer's session into a vserver here (the
//! Replicate request), the store it runs against, its baseline or
//! catch-up install, and the token a failover ends it with.

use std::sync::Arc;

use tandem_store::{AddressSpec, Store};
use tokio_util::sync::CancellationToken;

use super::Daemon;
use crate::config::names::validate_name;
use crate::dr::failover::mark as failover_mark;
use crate::error::{ControlError, Result};
use crate::replication::{self, Incoming};
use crate::vserver::release::wait_sole_holder;
use crate::vserver::Vserver;

/// Longest wait for a replica store's last users (in-flight NFS reads)
/// before a catch-up gives up for this attempt.
const CATCHUP_RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a replication session at this site runs against.
pub enum IncomingTarget {
    /// A replica's open store.
    Store(Arc<Store>),
    /// A replica whose baseline is unfinished: only a baseline can go on.
    Baseline,
}

impl Daemon {
    /// A peer asks to replicate `vserver` here (the Replicate request):
    /// returns the store the session runs against and the lock that keeps
    /// it to one session. A vserver unknown here gets an empty replica
    /// store; an active one is refused. Serves `replica_address` read-only
    /// if given.
    pub async fn incoming(
        &self,
        peer_id: &str,
        vserver: &str,
        replica_address: Option<AddressSpec>,
    ) -> Result<(IncomingTarget, Arc<tokio::sync::Mutex<()>>)> {
        validate_name("vserver name", vserver)?;
        let mut table = self.vservers.lock().await;
        // Checked under the table lock, which reserve takes too.
        if let Some(mark) = failover_mark::load(&self.site.paths.root, vserver)? {
            return Err(ControlError::Exists {
                what: "failover".into(),
                detail: format!(
                    "{vserver} is being failed over here (step {}, epoch {}); refusing to replicate into it",
                    mark.step, mark.epoch
                ),
            });
        }
        if let Some(vs) = table.get(vserver) {
            if !vs.is_replica() && !vs.in_baseline() {
                // Refused before any session: whatever the journals hold,
                // an active vserver is never overwritten by another site.
                vs.store()?;
                return Err(ControlError::Exists {
                    what: "vserver".into(),
                    detail: format!(
                        "{vserver} is active here, not a replica; refusing to replicate over it"
                    ),
                });
            }
        } else {
            self.room_for_another(table.len())?;
            let dir = self.site.paths.vserver(vserver);
            if dir.exists() {
                return Err(ControlError::Exists {
                    what: "vserver directory".into(),
                    detail: dir.display().to_string(),
                });
            }
            let vs = Vserver::create_replica(&dir, vserver, self.store_options()).await?;
            table.insert(vserver.to_string(), vs);
        }
        let mut settings = self.replication.lock().await;
        let known = settings.incoming.get(vserver).cloned();
        if let Some(k) = &known {
            if k.from != peer_id {
                return Err(ControlError::Exists {
                    what: "replica".into(),
                    detail: format!("{vserver} here is replicated from site {}", k.from),
                });
            }
        }
        let entry = Incoming {
            from: peer_id.to_string(),
            replica_address: replica_address
                .or_else(|| known.as_ref().and_then(|k| k.replica_address.clone())),
        };
        if known.as_ref() != Some(&entry) {
            let mut next = settings.clone();
            next.incoming.insert(vserver.to_string(), entry.clone());
            replication::save(&self.site.paths, &next)?;
            *settings = next;
        }
        drop(settings);
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        vs.set_replica_source(peer_id);
        self.set_session_stop(vserver, false);
        if let Some(addr) = &entry.replica_address {
            vs.serve_replica_address(addr, &self.service_cfg).await;
        }
        let lock = vs
            .session_lock()
            .ok_or_else(|| ControlError::Internal(format!("{vserver} is not a replica")))?;
        if vs.in_baseline() {
            return Ok((IncomingTarget::Baseline, lock));
        }
        Ok((IncomingTarget::Store(vs.store()?.clone()), lock))
    }

    /// Sets the stop flag of `vserver`'s incoming sessions (true: end
    /// them; false: let a new session run after a stop).
    pub(super) fn set_session_stop(&self, vserver: &str, stop: bool) {
        let mut stops = self.session_stops.lock();
        let token = stops.entry(vserver.to_string()).or_default();
        if stop {
            token.cancel();
        } else if token.is_cancelled() {
            *token = CancellationToken::new();
        }
    }

    /// What an incoming session of `vserver` watches: cancelled once a
    /// failover promoted the vserver here. Take it after `incoming`
    /// accepted.
    pub fn session_stop(&self, vserver: &str) -> CancellationToken {
        self.session_stops
            .lock()
            .entry(vserver.to_string())
            .or_default()
            .clone()
    }

    /// The epoch of `vserver` if it is active here (told to a sender that
    /// asks to replicate over it, so an older active site fences itself).
    pub async fn active_epoch(&self, vserver: &str) -> Option<u64> {
        let table = self.vservers.lock().await;
        let vs = table.get(vserver)?;
        if vs.is_replica() || vs.in_baseline() {
            return None;
        }
        vs.store().ok().map(|s| s.epoch())
    }

    /// Readies a replica that never received a record for a baseline:
    /// stops serving it and closes its store. Returns its directory.
    pub async fn begin_baseline(&self, vserver: &str) -> Result<std::path::PathBuf> {
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        if !vs.is_replica() && !vs.in_baseline() {
            return Err(ControlError::invalid(
                "vserver",
                format!("{vserver} is not a replica here"),
            ));
        }
        let dir = self.site.paths.vserver(vserver);
        if !vs.in_baseline() {
            vs.begin_baseline(&dir).await?;
        } else if matches!(tandem_store::baseline::baseline_in_progress(&dir), Ok(None)) {
            // No progress mark: a baseline that stopped before writing one
            // left a directory with no record in it; start clean.
            crate::vserver::discard_empty_replica_dir(&dir)?;
        }
        Ok(dir)
    }

    /// A baseline arrived whole: the vserver is a replica of `store` from
    /// now on, served on its replica address if it has one.
    pub async fn finish_baseline(&self, vserver: &str, store: Store) -> Result<Arc<Store>> {
        let address = self
            .replication
            .lock()
            .await
            .incoming
            .get(vserver)
            .and_then(|i| i.replica_address.clone());
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        vs.finish_baseline(store);
        if let Some(a) = &address {
            vs.serve_replica_address(a, &self.service_cfg).await;
        }
        Ok(vs.store()?.clone())
    }

    /// Readies a replica for a catch-up: stops serving it (its read-only
    /// address too) and closes its store, then waits until nothing holds
    /// the store any more (in-flight requests), so the install can lock the
    /// directory. Returns the directory.
    pub async fn begin_catchup(&self, vserver: &str) -> Result<std::path::PathBuf> {
        let store = {
            let mut table = self.vservers.lock().await;
            let vs = table
                .get_mut(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            vs.begin_catchup().await?
        };
        if wait_sole_holder(store, CATCHUP_RELEASE_TIMEOUT)
            .await
            .is_err()
        {
            // Reopened by `finish_catchup(None)` once the holder lets go.
            return Err(ControlError::Unavailable {
                vserver: vserver.to_string(),
                reason: "the replica store is still in use; catch-up postponed".into(),
            });
        }
        Ok(self.site.paths.vserver(vserver))
    }

    /// After a catch-up: the installed store, or (`None`: the catch-up
    /// failed, leaving the replica as it was) the directory reopened. The
    /// vserver is a replica again, served on its replica address.
    pub async fn finish_catchup(&self, vserver: &str, store: Option<Store>) -> Result<Arc<Store>> {
        let store = match store {
            Some(s) => s,
            None => {
                let dir = self.site.paths.vserver(vserver);
                let opts = self.store_options();
                tokio::task::spawn_blocking(move || Store::open_replica(&dir, opts))
                    .await
                    .map_err(|e| ControlError::Internal(format!("reopening {vserver}: {e}")))?
                    .map_err(|e| ControlError::store(vserver, e))?
            }
        };
        self.finish_baseline(vserver, store).await
    }

    /// A promoted vserver is no replica any more: its replication.toml
    /// incoming entry goes (failover, switchover).
    pub(super) async fn forget_incoming(&self, vserver: &str) -> Result<()> {
        let mut settings = self.replication.lock().await;
        if settings.incoming.contains_key(vserver) {
            let mut next = settings.clone();
            next.incoming.remove(vserver);
            replication::save(&self.site.paths, &next)?;
            *settings = next;
        }
        Ok(())
    }
}
