//! A daemon running inside this process: the site lock, and the tasks a
//! started site runs (control socket, peer listener, metrics endpoint,
//! fence watch), all ended by one cancellation token.

use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{fence_watch, switchover, Daemon, PeerListener};
use crate::api::server::ApiServer;
use crate::config::lock::SiteLock;
use crate::config::site::Site;
use crate::error::Result;

/// A daemon running inside this process.
pub struct RunningDaemon {
    daemon: Arc<Daemon>,
    /// Cancels every task's token when dropped: a daemon dropped without
    /// `stop` still ends its tasks.
    stop: DropGuard,
    server: JoinHandle<()>,
    peer_server: Option<JoinHandle<()>>,
    metrics_server: Option<JoinHandle<()>>,
    fence_watch: JoinHandle<()>,
    _lock: SiteLock,
}

impl RunningDaemon {
    /// Locks the site, opens its vservers and starts the control socket.
    pub async fn start(site_dir: &Path) -> Result<RunningDaemon> {
        let site = Site::load(site_dir)?;
        let lock = SiteLock::acquire(site_dir, &site.paths.lock())?;
        let server = ApiServer::bind(&site.paths.socket())?;
        let settings = site.config.control.clone();
        tracing::info!(
            site = %site.config.name,
            id = %site.identity.id,
            dir = %site_dir.display(),
            "starting daemon"
        );
        let mut daemon = Daemon::open(site).await?;
        // A listen address that cannot be bound (taken, not local) must not
        // stop NFS service: it is logged and shown in status instead.
        let listen = daemon.site.config.listen.clone();
        let peer_listener = match PeerListener::bind(&listen, daemon.peer_tls.clone()).await {
            Ok(l) => {
                tracing::info!(listen = %listen, "peer listener ready (mutual TLS, paired sites only)");
                Some(l)
            }
            Err(e) => {
                tracing::error!(listen = %listen, error = %e, "peer listener not started");
                daemon.peer_listener_error = Some(e.to_string());
                None
            }
        };
        let daemon = Arc::new(daemon);
        daemon.start_senders().await;
        switchover::resume::resume_interrupted(daemon.clone()).await;
        let stop = CancellationToken::new();
        let fence_watch = fence_watch::spawn(daemon.clone(), daemon.fenced.clone(), stop.clone());
        let peer_server =
            peer_listener.map(|l| tokio::spawn(l.serve_with(stop.clone(), Some(daemon.clone()))));
        let metrics_server = match daemon.site.config.metrics.listen.clone() {
            None => None,
            // Like the peer listener: a metrics address that cannot be
            // bound is logged, never a reason to stop serving NFS.
            Some(addr) => match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => {
                    tracing::info!(listen = %addr, "metrics on /metrics");
                    Some(tokio::spawn(crate::api::metrics::serve(
                        l,
                        daemon.clone(),
                        stop.clone(),
                    )))
                }
                Err(e) => {
                    tracing::error!(listen = %addr, error = %e, "metrics endpoint not started");
                    None
                }
            },
        };
        let server = tokio::spawn(server.serve(daemon.clone(), settings, stop.clone()));
        Ok(RunningDaemon {
            daemon,
            stop: stop.drop_guard(),
            server,
            peer_server,
            metrics_server,
            fence_watch,
            _lock: lock,
        })
    }

    pub fn daemon(&self) -> &Arc<Daemon> {
        &self.daemon
    }

    /// Stops the control socket (requests in progress finish), then the
    /// vservers; the site lock is released last.
    pub async fn stop(self) {
        drop(self.stop);
        if let Err(e) = self.server.await {
            tracing::error!(error = %e, "control server task failed");
        }
        if let Some(peer_server) = self.peer_server {
            if let Err(e) = peer_server.await {
                tracing::error!(error = %e, "peer listener task failed");
            }
        }
        if let Some(metrics_server) = self.metrics_server {
            if let Err(e) = metrics_server.await {
                tracing::error!(error = %e, "metrics task failed");
            }
        }
        if let Err(e) = self.fence_watch.await {
            tracing::error!(error = %e, "fence watch task failed");
        }
        self.daemon.shutdown().await;
        tracing::info!("daemon stopped");
    }
}
