//! `tandem switchover` at the replica site (a child module of `daemon`):
//! the incoming session hands a `SwitchoverRequest` here; the vserver is
//! promoted exactly as a failover promotes it, served on its addresses,
//! and replicated back to the site that asked, in the same mode.
//! Anything that fails before the promotion refuses (nothing changed);
//! after it, failures are notes in the answer: the vserver is active here.

use std::sync::Arc;

use tandem_repl::session::{SessionConfig, SessionError};
use tandem_repl::switchover::PromoteAsk;
use tandem_store::Store;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::Daemon;
use crate::error::{ControlError, Result};
use crate::replication::Outgoing;

/// Runs the receiving session of `vserver` from `peer_id`, answering a
/// switchover request through this daemon.
pub(crate) async fn receive<S>(
    daemon: Arc<Daemon>,
    peer_id: &str,
    store: Arc<Store>,
    vserver: &str,
    stream: S,
    cfg: &SessionConfig,
) -> std::result::Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<PromoteAsk>(1);
    let from = peer_id.to_string();
    // Its own task: a promotion that started finishes even if the session
    // is dropped meanwhile.
    tokio::spawn(async move {
        while let Some(ask) = rx.recv().await {
            let answer = daemon
                .promote_for_switchover(&from, &ask)
                .await
                .map_err(|e| e.to_string());
            let _ = ask.reply.send(answer);
        }
    });
    tandem_repl::session::receive_switchable(store, vserver, stream, cfg, Some(tx)).await
}

impl Daemon {
    /// Promotes `ask`'s vserver here at its LSN and epoch, serves it and
    /// starts replicating it back to `from` (the TLS-proven site id).
    /// Returns notes (what could not be done after the promotion).
    async fn promote_for_switchover(&self, from: &str, ask: &PromoteAsk) -> Result<String> {
        let req = &ask.request;
        let vserver = req.vserver.as_str();
        let Ok(_one) = self.failover_running.try_lock() else {
            return Err(ControlError::Unavailable {
                vserver: vserver.to_string(),
                reason: "a failover or switchover is running at this site".into(),
            });
        };
        let peer = self.peer_with_id(from).ok_or_else(|| {
            ControlError::invalid("switchover", format!("site {from} is not paired here"))
        })?;
        let mut out: Outgoing = toml::from_str(&req.settings).map_err(|e| {
            ControlError::invalid("switchover", format!("replication settings: {e}"))
        })?;
        out.to = peer.name.clone();
        let policy = out.policy()?;
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        if !vs.is_replica() {
            return Err(ControlError::invalid(
                "switchover",
                format!("{vserver} is not a replica here"),
            ));
        }
        if vs.store()?.last_lsn() != req.lsn {
            return Err(ControlError::invalid(
                "switchover",
                format!(
                    "{vserver} here holds LSN {}, not {}",
                    vs.store()?.last_lsn(),
                    req.lsn
                ),
            ));
        }
        // The failover's promotion (epoch record, new verifier, no ROLE);
        // the session is not stopped: it answers Done and ends itself.
        vs.promote(req.epoch).await?;
        tracing::warn!(vserver, epoch = req.epoch, lsn = req.lsn, from = %peer.name, "switchover: promoted here");
        let mut notes = Vec::new();
        if let Err(e) = self.forget_incoming(vserver).await {
            notes.push(format!(
                "could not drop the incoming replication settings: {e}"
            ));
        }
        if let Err(e) = vs.serve_active(&self.service_cfg).await {
            notes.push(format!("not serving: {e}"));
        }
        for f in vs.status().bind_failures {
            notes.push(format!("not serving {}: {}", f.address, f.error));
        }
        let store = vs.store()?.clone();
        drop(table);
        {
            let mut settings = self.replication.lock().await;
            let mut next = settings.clone();
            next.outgoing.insert(vserver.to_string(), out.clone());
            match crate::replication::save(&self.site.paths, &next) {
                Ok(()) => *settings = next,
                Err(e) => notes.push(format!(
                    "replicating back to {} is not recorded (it stops at a restart): {e}",
                    peer.name
                )),
            }
        }
        let mut senders = self.senders.lock().await;
        if let Some(old) = senders.remove(vserver) {
            old.stop().await;
        }
        let sender = self.start_sender(vserver, store, out, policy);
        senders.insert(vserver.to_string(), sender);
        Ok(notes.join("\n"))
    }
}
