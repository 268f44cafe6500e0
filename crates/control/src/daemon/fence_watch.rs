//! Runtime fencing's last step: a sender that learns a higher epoch fences
//! the store (replication.rs) and notifies; this task then stops serving
//! the vserver, so its addresses are released ("One writer per epoch": one site holds
//! a vserver's addresses).

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Daemon;

impl Daemon {
    /// Stops serving every active vserver whose store is fenced.
    pub(crate) async fn stop_serving_fenced(&self) {
        let mut table = self.vservers.lock().await;
        for vs in table.values_mut() {
            vs.stop_serving_if_fenced().await;
        }
    }
}

/// Runs until `stopped` is cancelled; `fenced` is the daemon's notifier the senders use.
pub(crate) fn spawn(
    daemon: Arc<Daemon>,
    fenced: Arc<Notify>,
    stopped: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = fenced.notified() => daemon.stop_serving_fenced().await,
                () = stopped.cancelled() => return,
            }
        }
    })
}
