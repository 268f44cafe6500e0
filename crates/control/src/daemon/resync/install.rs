//! The diverged site's install: the vserver is closed (its sender
//! stopped, its store let go by every request), the promoted site's
//! catch-up installed, and the vserver made a replica here; a resync that
//! does not install leaves it as it was.

use std::path::PathBuf;
use std::time::Duration;

use tandem_store::{Lsn, Store};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::daemon::Daemon;
use crate::error::{ControlError, Result};
use crate::replication;
use crate::vserver::release::wait_sole_holder;
use crate::vserver::{blocking, Vserver};

/// How long `close_for_resync` waits for in-flight users of the store.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

impl Daemon {
    /// Closes the vserver, installs the catch-up, and makes the vserver a
    /// replica here; on failure before the install commits, reopens it as it
    /// was (diverged). Returns the installed LSN.
    pub(super) async fn install<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        vserver: &str,
        conn: &mut S,
        request: tandem_repl::wire::ResyncRequest,
    ) -> Result<Lsn> {
        let dir: PathBuf = self.site().paths.vserver(vserver);
        self.stop_sender(vserver).await;
        self.close_for_resync(vserver).await?;
        let d = dir.clone();
        blocking(vserver, move || tandem_store::resync::mark_replica(&d)).await?;
        let cfg = tandem_repl::baseline::BaselineConfig::default();
        let opts = self.store_options();
        let received =
            tandem_repl::resync::receive_resync(conn, &dir, request, opts.clone(), &cfg).await;
        let store = match received {
            Ok(s) => s,
            Err(e) => {
                let d = dir.clone();
                let undone =
                    blocking(vserver, move || tandem_store::resync::undo_mark_replica(&d)).await;
                self.reopen_after_resync(vserver).await;
                if let Err(u) = undone {
                    tracing::error!(vserver, error = %u, "could not undo the replica mark");
                }
                return Err(ControlError::Internal(format!(
                    "resync of {vserver} failed, the vserver is as it was (diverged): {e}"
                )));
            }
        };
        // Opened at the promoted site's epoch, the store dropped its fence
        // (outgrown, fence.rs).
        let lsn = store.last_lsn();
        self.finish_resync(vserver, store).await?;
        Ok(lsn)
    }

    /// Stops serving `vserver` and closes its store, waiting until no one
    /// holds it (in-flight requests), so the install can lock it.
    async fn close_for_resync(&self, vserver: &str) -> Result<()> {
        let store = {
            let mut table = self.vservers.lock().await;
            let vs = table
                .get_mut(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            vs.close_for_resync().await?
        };
        if let Err(store) = wait_sole_holder(store, RELEASE_TIMEOUT).await {
            drop(store);
            self.reopen_after_resync(vserver).await;
            return Err(ControlError::Unavailable {
                vserver: vserver.to_string(),
                reason: "the store is still in use; resync not started".into(),
            });
        }
        Ok(())
    }

    /// A resync that did not install: the vserver is opened and served
    /// again as it was, and its sender restarted.
    async fn reopen_after_resync(&self, vserver: &str) {
        let dir = self.site.paths.vserver(vserver);
        let mut vs = Vserver::open_unserved(&dir, vserver, self.store_options()).await;
        super::serve_unless_diverged(&mut vs, &self.service_cfg).await;
        let store = vs.store().ok().cloned();
        self.vservers.lock().await.insert(vserver.to_string(), vs);
        let out = self.replication.lock().await.outgoing.get(vserver).cloned();
        if let (Some(store), Some(out)) = (store, out) {
            match out.policy() {
                Ok(policy) => {
                    let sender = self.start_sender(vserver, store, out, policy);
                    self.senders
                        .lock()
                        .await
                        .insert(vserver.to_string(), sender);
                }
                Err(e) => {
                    tracing::error!(vserver, error = %e, "replication.toml: not replicating this vserver")
                }
            }
        }
    }

    /// A resync installed: the vserver is a replica here and no longer
    /// replicated from here (the promoted site replicates to it).
    async fn finish_resync(&self, vserver: &str, store: Store) -> Result<()> {
        let mut settings = self.replication.lock().await;
        let mut next = settings.clone();
        next.outgoing.remove(vserver);
        replication::save(&self.site.paths, &next)?;
        *settings = next;
        drop(settings);
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        vs.finish_baseline(store);
        Ok(())
    }
}
