//! Listening sockets and the accept loop with its connection limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::budget::{Budget, Refusal};
use crate::dispatch::Service;
use crate::error::NfsError;
use crate::rpc::conn::{serve_connection, ConnLimits};
use crate::server::Shared;

const LISTEN_BACKLOG: u32 = 1024;
/// Pause after a failed accept (e.g. out of descriptors) so the loop does
/// not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub(crate) struct Limits {
    /// Connections and request slots, shared by every listener.
    pub(crate) budget: Arc<Budget>,
    pub(crate) max_record_bytes: usize,
    pub(crate) max_requests_per_connection: usize,
}

pub(crate) struct Bound {
    pub(crate) listener: TcpListener,
    pub(crate) port: u16,
}

/// SO_REUSEADDR so a restarted daemon is not refused while old
/// connections sit in TIME_WAIT.
pub(crate) fn bind(ip: IpAddr, port: u16) -> Result<Bound, NfsError> {
    let addr = SocketAddr::new(ip, port);
    let err = |source| NfsError::Bind { addr, source };
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    let listener = socket.listen(LISTEN_BACKLOG).map_err(err)?;
    let port = listener.local_addr().map_err(err)?.port();
    Ok(Bound { listener, port })
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    service: Service,
    shared: Arc<Shared>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let conn_limits = ConnLimits {
        max_record_bytes: limits.max_record_bytes,
        max_requests_per_connection: limits.max_requests_per_connection,
        record_timeout: limits.budget.record_timeout(),
    };
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ticket = match limits.budget.admit(service, peer.ip()) {
                        Ok(t) => t,
                        Err(Refusal::HostFull) => {
                            warn!(%peer, ?service, "refusing connection: the host holds max_connections_per_host");
                            continue;
                        }
                        Err(Refusal::AllBusy) => {
                            warn!(%peer, ?service, "refusing connection: the port's connections are all busy");
                            continue;
                        }
                    };
                    debug!(%peer, ?service, "connection accepted");
                    let shared = shared.clone();
                    let shutdown = shutdown.clone();
                    let conn_limits = conn_limits.clone();
                    conns.spawn(serve_connection(stream, service, shared, conn_limits, ticket, shutdown));
                }
                Err(e) => {
                    warn!(error = %e, ?service, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

/// Resolves once shutdown is requested (or the service handle is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}
