//! A switchover interrupted at the former active site (a child module of
//! `daemon`): the site stopped (crash, kill) after its store was demoted
//! and before the peer's answer came. It restarts with the vserver a
//! replica whose outgoing replication settings are still there, which
//! only this case leaves. Whether the peer promoted decides what to do,
//! so it is asked, with the `Replicate` request a sender opens with:
//!
//! * `ActiveHere`: the vserver is active at the peer (it promoted); the
//!   switchover is complete and the outgoing settings go (the peer
//!   replicates back).
//! * `Replicate` (where the replica stands): the peer is a replica and its
//!   session from us is gone (a running one would make it answer BUSY), so
//!   nothing can promote it any more: the demotion is taken back, the
//!   vserver served here again.
//! * Anything else (unreachable, BUSY): asked again later. Until then the
//!   vserver is served nowhere, which is safe: never two writers.

use std::sync::Arc;
use std::time::Duration;

use tandem_repl::peer::{Answer, Connection, Request};

use super::Daemon;
use crate::error::{ControlError, Result};
use crate::replication::{Outgoing, PREFACE_TIMEOUT};

/// Between two questions to an unreachable or busy peer.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

enum PeerSays {
    Promoted(u64),
    Replica,
    Unknown(String),
}

/// Starts one resolver per interrupted switchover found at start.
pub(crate) async fn resume_interrupted(daemon: Arc<Daemon>) {
    for (vserver, out) in daemon.interrupted_switchovers().await {
        tracing::warn!(vserver = %vserver, to = %out.to, "switchover interrupted here; asking the peer whether it promoted");
        let d = daemon.clone();
        tokio::spawn(async move {
            let mut wait = RETRY_MIN;
            loop {
                let done = match d.ask_peer(&vserver, &out).await {
                    PeerSays::Promoted(epoch) => {
                        tracing::warn!(vserver = %vserver, epoch, "the interrupted switchover had completed: the peer is active");
                        d.stop_sending(&vserver).await;
                        true
                    }
                    PeerSays::Replica => match d.take_back(&vserver, &out).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(vserver = %vserver, error = %e, "could not take the interrupted switchover back");
                            false
                        }
                    },
                    PeerSays::Unknown(why) => {
                        tracing::warn!(vserver = %vserver, reason = %why, "interrupted switchover: the peer did not say; asking again");
                        false
                    }
                };
                if done {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        });
    }
}

impl Daemon {
    /// Replicas here whose outgoing settings remain: demoted by a
    /// switchover that did not finish.
    async fn interrupted_switchovers(&self) -> Vec<(String, Outgoing)> {
        let outgoing = self.replication.lock().await.outgoing.clone();
        let table = self.vservers.lock().await;
        outgoing
            .into_iter()
            .filter(|(name, _)| table.get(name).is_some_and(|vs| vs.is_replica()))
            .collect()
    }

    async fn ask_peer(&self, vserver: &str, out: &Outgoing) -> PeerSays {
        let Some(peer) = self.peer_named(&out.to) else {
            return PeerSays::Unknown(format!("peer {} is not paired", out.to));
        };
        let asked = async {
            let stream = crate::replication::link::dial(&peer, &self.peer_tls)
                .await
                .map_err(|e| e.to_string())?;
            let mut conn = Connection::new(stream, PREFACE_TIMEOUT);
            let question = Request::Replicate {
                vserver: vserver.to_string(),
                replica_address: None,
            };
            conn.request(question).await.map_err(|e| e.to_string())
        };
        // The connection drops here, before any Transfer: the peer's
        // session ends at once.
        match asked.await {
            Err(e) => PeerSays::Unknown(e),
            Ok(Answer::Replicate(_)) => PeerSays::Replica,
            // Active there, whatever the epoch (its records may have
            // reached us already): this site must stay a replica.
            Ok(Answer::ActiveHere { epoch, .. }) => PeerSays::Promoted(epoch),
            Ok(other) => PeerSays::Unknown(format!("peer {}: {other:?}", peer.name)),
        }
    }

    /// The peer never promoted: active and served here again, sending to
    /// it as before.
    async fn take_back(&self, vserver: &str, out: &Outgoing) -> Result<()> {
        let _one = self.failover_running.lock().await;
        let policy = out.policy()?;
        let store = {
            let mut table = self.vservers.lock().await;
            let vs = table
                .get_mut(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            if !vs.is_replica() {
                return Ok(());
            }
            vs.undo_demote(&self.service_cfg).await?;
            vs.store()?.clone()
        };
        let mut senders = self.senders.lock().await;
        if !senders.contains_key(vserver) {
            let sender = self.start_sender(vserver, store, out.clone(), policy);
            senders.insert(vserver.to_string(), sender);
        }
        tracing::warn!(vserver, to = %out.to, "interrupted switchover taken back: the peer never promoted; active here again");
        Ok(())
    }
}
