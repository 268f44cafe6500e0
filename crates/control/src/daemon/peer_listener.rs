//! The listener other sites connect to, and what it does with each
//! connection's request (tandem_repl::peer): Ping, a replication session
//! into one of the daemon's replicas (with its baseline or catch-up, and a
//! switchover), an epoch question, a resync.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tandem_repl::peer::{Answer, Connection, PeerError, Request};
use tandem_repl::tls::{self, TlsAcceptor, TlsError};
use tandem_repl::wire::{self, code, Message, ReplicaAt, TransferKind, WireError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::peer_admission::{Handshakes, MAX_HANDSHAKES, MAX_HANDSHAKES_PER_ADDRESS};
use super::IncomingTarget;
use crate::config::names::parse_address;
use crate::error::{ControlError, Result};
use crate::replication::link::{truncate, PeerTls, PING_TIMEOUT};

/// Authenticated connections (paired sites) at once; past it a new one is
/// closed after its handshake and the peer retries.
pub const MAX_PEER_CONNECTIONS: usize = 64;
/// A connecting site has this long to complete its TLS handshake (one or
/// two round trips; a silent connection gives its place back sooner).
pub const PEER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a paired connection may sit idle between messages.
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The listener other sites connect to.
pub struct PeerListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tls: PeerTls,
}

impl PeerListener {
    pub async fn bind(listen: &str, tls: PeerTls) -> Result<PeerListener> {
        let config = tls::server_config(&tls.cert_pem, &tls.key_pem, tls.allowed.clone())
            .map_err(|e| ControlError::Identity(e.to_string()))?;
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            ControlError::invalid("listen address", format!("cannot listen on {listen}: {e}"))
        })?;
        Ok(PeerListener {
            listener,
            acceptor: TlsAcceptor::from(config),
            tls,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` is cancelled; connections in progress are
    /// dropped then (they carry nothing that needs finishing yet).
    pub async fn serve(self, shutdown: CancellationToken) {
        self.serve_with(shutdown, None).await;
    }

    /// `serve`, and replication sessions into `daemon`'s vservers (without
    /// a daemon, Replicate is refused).
    pub async fn serve_with(
        self,
        shutdown: CancellationToken,
        daemon: Option<Arc<crate::daemon::Daemon>>,
    ) {
        let sessions = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
        let handshakes = Handshakes::new(MAX_HANDSHAKES, MAX_HANDSHAKES_PER_ADDRESS);
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        // Never a wait here: the loop keeps accepting.
                        let Some(place) = handshakes.admit(addr.ip()) else {
                            self.tls.refused.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer_addr = %addr, "closing connection: its address has its share of handshakes");
                            continue;
                        };
                        let acceptor = self.acceptor.clone();
                        let tls = self.tls.clone();
                        let daemon = daemon.clone();
                        let sessions = sessions.clone();
                        conns.spawn(async move {
                            let handshake = tls::accept(&acceptor, tcp, addr, PEER_HANDSHAKE_TIMEOUT);
                            let handshake = tokio::select! {
                                r = handshake => r,
                                () = place.dropped.cancelled() => {
                                    tracing::debug!(peer_addr = %addr, "handshake dropped for a newer connection");
                                    tls.refused.fetch_add(1, Ordering::Relaxed);
                                    return;
                                }
                            };
                            drop(place);
                            connection(handshake, tls, addr, daemon, &sessions).await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept on peer listener failed");
                        // Out of descriptors and the like: back off, not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            while conns.try_join_next().is_some() {}
        }
        conns.abort_all();
        // Wait until the aborted sessions have dropped their stores, so the
        // daemon closes each store with no session left holding it.
        while conns.join_next().await.is_some() {}
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    handshake: std::result::Result<(String, S), TlsError>,
    tls: PeerTls,
    addr: SocketAddr,
    daemon: Option<Arc<crate::daemon::Daemon>>,
    sessions: &Arc<Semaphore>,
) {
    let (peer_id, stream) = match handshake {
        Ok(ok) => ok,
        Err(e) => {
            tls.refused.fetch_add(1, Ordering::Relaxed);
            let (presented, reason) = match &e {
                TlsError::Handshake {
                    presented, reason, ..
                } => (presented.clone(), reason.clone()),
                other => (None, other.to_string()),
            };
            tracing::warn!(
                peer_addr = %addr,
                presented_id = presented.as_deref().unwrap_or("none"),
                reason = %reason,
                "refused peer connection"
            );
            return;
        }
    };
    let Ok(_session) = sessions.clone().try_acquire_owned() else {
        tracing::warn!(peer_addr = %addr, peer_id = %peer_id, "closing peer connection: {MAX_PEER_CONNECTIONS} peer connections are open");
        return;
    };
    tracing::info!(peer_addr = %addr, peer_id = %peer_id, "peer connected");
    if let Err(e) = serve_peer(stream, &peer_id, &tls.own_id, daemon).await {
        tracing::debug!(peer_addr = %addr, error = %e, "peer connection ended");
    }
}

/// Answers the connecting site's requests (tandem_repl::peer): pings
/// until another request takes the connection over, or it ends.
async fn serve_peer<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer_id: &str,
    own_id: &str,
    daemon: Option<Arc<crate::daemon::Daemon>>,
) -> std::result::Result<(), PeerError> {
    let mut conn = Connection::new(stream, PEER_IDLE_TIMEOUT);
    loop {
        let request = match conn.read_request().await {
            Ok(r) => r,
            Err(PeerError::Wire(WireError::Closed | WireError::Timeout { .. })) => return Ok(()),
            Err(e @ PeerError::Unexpected { .. }) => {
                // A session message without the preface, say: a Hello
                // before Replicate, which names the vserver so its store
                // is ready before Hello is read.
                tracing::warn!(peer_id, error = %e, "message out of place from peer");
                let reason = format!("{e}: open with Replicate before Hello");
                conn.answer(refused(reason)).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let daemon = match (&request, &daemon) {
            (Request::Ping { .. }, _) => None,
            (_, Some(d)) => Some(d.clone()),
            (_, None) => {
                conn.answer(refused("this listener takes no replication".into()))
                    .await?;
                return Ok(());
            }
        };
        match (request, daemon) {
            // The id in the Ping must be the one the handshake proved: a
            // mismatch means a confused or lying peer.
            (Request::Ping { site_id }, _) if site_id == peer_id => {
                let pong = Answer::Pong {
                    site_id: own_id.to_string(),
                };
                conn.answer(pong).await?;
            }
            (Request::Ping { site_id }, _) => {
                tracing::warn!(peer_id, claimed = %truncate(&site_id), "Ping names another site id");
                conn.answer(refused("site id differs from certificate".into()))
                    .await?;
                return Ok(());
            }
            (Request::Epoch { vserver, epoch }, Some(daemon)) => {
                let answer = daemon.answer_epoch(&vserver, epoch).await;
                conn.answer(answer).await?;
                return Ok(());
            }
            (Request::Resync(open), Some(daemon)) => {
                return daemon.serve_resync(conn, peer_id, open).await;
            }
            (
                Request::Replicate {
                    vserver,
                    replica_address,
                },
                Some(daemon),
            ) => {
                let address = replica_address.as_deref();
                return serve_replication(conn, peer_id, own_id, daemon, &vserver, address).await;
            }
            (other, _) => {
                tracing::warn!(peer_id, request = ?other, "request out of place from peer");
                conn.answer(refused(format!("{other:?} does not open a connection")))
                    .await?;
                return Ok(());
            }
        }
    }
}

/// A refusal with a reason and no more specific code.
fn refused(reason: String) -> Answer {
    Answer::Refused {
        code: code::INTERNAL,
        reason,
    }
}

/// Replicate: readies the replica store, answers where it stands, then
/// runs what the sender's `Transfer` announces (a baseline or a catch-up
/// first, or at once) and the receiving session, on the same connection.
async fn serve_replication<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut conn: Connection<S>,
    peer_id: &str,
    own_id: &str,
    daemon: Arc<crate::daemon::Daemon>,
    vserver: &str,
    address: Option<&str>,
) -> std::result::Result<(), PeerError> {
    let incoming = async {
        let address = address.map(parse_address).transpose()?;
        daemon.incoming(peer_id, vserver, address).await
    };
    let (target, lock) = match incoming.await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(peer_id, vserver = %truncate(vserver), error = %e, "refusing replication");
            let reason: String = e.to_string().replace('\n', " ").chars().take(200).collect();
            // Active here (a failover promoted it): the sender learns the
            // epoch and fences itself if its own is lower ("One writer per epoch").
            let answer = match daemon.active_epoch(vserver).await {
                Some(epoch) => Answer::ActiveHere { epoch, reason },
                None => refused(reason),
            };
            conn.answer(answer).await?;
            return Ok(());
        }
    };
    let stop = daemon.session_stop(vserver);
    let Ok(_session) = lock.try_lock_owned() else {
        let busy = Answer::Refused {
            code: code::BUSY,
            reason: format!("another session for {vserver} is running; retry later"),
        };
        conn.answer(busy).await?;
        return Ok(());
    };
    // The sender chooses between streaming, a catch-up and a baseline
    // from this.
    let at = match &target {
        IncomingTarget::Store(store) => ReplicaAt {
            lsn: store.last_lsn(),
            unfinished_baseline: false,
        },
        IncomingTarget::Baseline => ReplicaAt {
            lsn: 0,
            unfinished_baseline: true,
        },
    };
    conn.answer(Answer::Replicate(at)).await?;
    let kind = match conn.read_request().await {
        Ok(Request::Transfer(kind)) => kind,
        Ok(other) => {
            tracing::warn!(peer_id, request = ?other, "expected Transfer after Replicate");
            return Ok(());
        }
        Err(PeerError::Wire(WireError::Closed | WireError::Timeout { .. })) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut stream = conn.into_inner();
    let received = match (kind, target) {
        (TransferKind::Stream, IncomingTarget::Store(store)) => Some(store),
        (TransferKind::Stream, IncomingTarget::Baseline) => {
            let msg = Message::Refuse {
                code: code::NOT_RETAINED,
                reason: format!("{vserver} here has an unfinished baseline; send a baseline"),
            };
            let _ = wire::write_message(&mut stream, &msg, PING_TIMEOUT).await;
            None
        }
        (TransferKind::Baseline, _) => {
            receive_baseline(&mut stream, peer_id, &daemon, vserver).await
        }
        (TransferKind::Catchup, target) => {
            // The install needs the store closed: let go of ours.
            drop(target);
            receive_catchup(&mut stream, peer_id, &daemon, vserver, &stop).await
        }
    };
    if let Some(store) = received {
        receive_session(stream, peer_id, own_id, &daemon, vserver, store, stop).await;
    }
    Ok(())
}

/// The receiving session, until the sender ends it, it fails, or a
/// failover promotes the vserver here.
async fn receive_session<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer_id: &str,
    own_id: &str,
    daemon: &Arc<crate::daemon::Daemon>,
    vserver: &str,
    store: Arc<tandem_store::Store>,
    stop: CancellationToken,
) {
    let cfg = tandem_repl::session::SessionConfig::new(own_id.to_string());
    tracing::info!(
        peer_id,
        vserver,
        lsn = store.last_lsn(),
        "replication session starting"
    );
    let received = tokio::select! {
        r = super::switchover::peer::receive(daemon.clone(), peer_id, store.clone(), vserver, stream, &cfg) => r,
        () = stop.cancelled() => {
            tracing::warn!(peer_id, vserver, lsn = store.last_lsn(), "replication session ended: the vserver was failed over to this site");
            return;
        }
    };
    match received {
        Ok(()) => {
            tracing::info!(
                peer_id,
                vserver,
                lsn = store.last_lsn(),
                "replication session closed by the sender"
            )
        }
        Err(e) => {
            tracing::warn!(peer_id, vserver, lsn = store.last_lsn(), error = %e, "replication session ended")
        }
    }
}

/// Receives a baseline into the replica's directory; the replica store it
/// yields, or None after logging why (the sender is told where possible).
async fn receive_baseline<S: tokio::io::AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer_id: &str,
    daemon: &crate::daemon::Daemon,
    vserver: &str,
) -> Option<Arc<tandem_store::Store>> {
    let dir = match daemon.begin_baseline(vserver).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(peer_id, vserver, error = %e, "refusing baseline");
            tell_refused(stream, &e).await;
            return None;
        }
    };
    tracing::info!(peer_id, vserver, "receiving baseline");
    let store = match receive_transfer(
        stream,
        &dir,
        vserver,
        Transfer::Baseline,
        daemon.store_options(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(peer_id, vserver, error = %e, "baseline ended unfinished");
            return None;
        }
    };
    tracing::info!(
        peer_id,
        vserver,
        lsn = store.last_lsn(),
        "baseline installed"
    );
    match daemon.finish_baseline(vserver, store).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(peer_id, vserver, error = %e, "baseline installed but not opened");
            None
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Transfer {
    Baseline,
    Catchup,
}

/// Runs the replica's side of a baseline or a catch-up into `dir`, with
/// the same settings for both (default timeouts and sizes, the site's
/// store options).
async fn receive_transfer<S: tokio::io::AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    dir: &std::path::Path,
    vserver: &str,
    transfer: Transfer,
    opts: tandem_store::StoreOptions,
) -> std::result::Result<tandem_store::Store, tandem_repl::baseline::BaselineSessionError> {
    let cfg = tandem_repl::baseline::BaselineConfig::default();
    match transfer {
        Transfer::Baseline => {
            tandem_repl::baseline::receive_baseline(stream, dir, vserver, opts, &cfg, None).await
        }
        Transfer::Catchup => {
            tandem_repl::catchup::receive_catchup(stream, dir, vserver, opts, &cfg, None).await
        }
    }
}

/// Receives a catch-up into the replica's directory (its store closed and
/// its service paused meanwhile); the replica store afterwards, or None
/// after logging why. A failed catch-up leaves the replica as it was, and
/// it is opened and served again.
async fn receive_catchup<S: tokio::io::AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer_id: &str,
    daemon: &crate::daemon::Daemon,
    vserver: &str,
    stop: &CancellationToken,
) -> Option<Arc<tandem_store::Store>> {
    let dir = match daemon.begin_catchup(vserver).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(peer_id, vserver, error = %e, "refusing catch-up");
            tell_refused(stream, &e).await;
            // A store closed before the refusal is opened again.
            if let Err(e) = daemon.finish_catchup(vserver, None).await {
                tracing::error!(peer_id, vserver, error = %e, "replica not reopened");
            }
            return None;
        }
    };
    tracing::info!(peer_id, vserver, "receiving catch-up");
    // A forced failover ends the catch-up (failover/catchup.rs): the
    // staging, never switched in, is discarded when the store reopens.
    let transfer = receive_transfer(
        stream,
        &dir,
        vserver,
        Transfer::Catchup,
        daemon.store_options(),
    );
    let received = tokio::select! {
        r = transfer => Some(r),
        () = stop.cancelled() => None,
    };
    let installed = match received {
        None => {
            tracing::warn!(
                peer_id,
                vserver,
                "catch-up ended: a forced failover brings the replica up as it was"
            );
            None
        }
        Some(Ok(s)) => {
            tracing::info!(peer_id, vserver, lsn = s.last_lsn(), "catch-up installed");
            Some(s)
        }
        Some(Err(e)) => {
            tracing::warn!(peer_id, vserver, error = %e, "catch-up ended unfinished; the replica is as it was");
            None
        }
    };
    let ok = installed.is_some();
    match daemon.finish_catchup(vserver, installed).await {
        Ok(s) if ok => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(peer_id, vserver, error = %e, "replica not reopened after the catch-up");
            None
        }
    }
}

/// Tells the sender why its baseline or catch-up is refused (best effort).
async fn tell_refused<S: AsyncWrite + Unpin>(stream: &mut S, e: &ControlError) {
    let msg = tandem_repl::wire::Message::Error {
        code: tandem_repl::wire::code::INTERNAL,
        text: e.to_string().chars().take(1000).collect(),
    };
    let _ = tandem_repl::wire::write_message(stream, &msg, PING_TIMEOUT).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// The listener's dispatch, without a daemon behind it.
    #[tokio::test]
    async fn requests_are_dispatched_and_others_refused() {
        let timeout = Duration::from_secs(5);
        // A replication message with no preface: a refusal naming it.
        let (client, server) = tokio::io::duplex(4096);
        let serving = tokio::spawn(async move { serve_peer(server, A, B, None).await });
        let mut client = client;
        let first = Message::Heartbeat { now_ms: 1 };
        wire::write_message(&mut client, &first, timeout)
            .await
            .unwrap();
        match wire::read_message(&mut client, timeout).await.unwrap() {
            Message::Refuse { reason, .. } => assert!(reason.contains("Replicate"), "{reason}"),
            other => panic!("expected Refuse, got {}", other.kind()),
        }
        serving.await.unwrap().unwrap();

        // Ping, then Replicate on a listener that takes no replication.
        let (client, server) = tokio::io::duplex(4096);
        let serving = tokio::spawn(async move { serve_peer(server, A, B, None).await });
        let mut conn = Connection::new(client, timeout);
        let pong = conn
            .request(Request::Ping { site_id: A.into() })
            .await
            .unwrap();
        assert_eq!(pong, Answer::Pong { site_id: B.into() });
        let replicate = Request::Replicate {
            vserver: "vs".into(),
            replica_address: None,
        };
        let answer = conn.request(replicate).await.unwrap();
        assert!(matches!(answer, Answer::Refused { .. }), "{answer:?}");
        serving.await.unwrap().unwrap();

        // A Ping naming another site id is refused.
        let (client, server) = tokio::io::duplex(4096);
        let serving = tokio::spawn(async move { serve_peer(server, A, B, None).await });
        let mut conn = Connection::new(client, timeout);
        let answer = conn
            .request(Request::Ping { site_id: B.into() })
            .await
            .unwrap();
        assert!(matches!(answer, Answer::Refused { .. }), "{answer:?}");
        serving.await.unwrap().unwrap();

        // Bytes that are no message end the connection with an error.
        let (client, server) = tokio::io::duplex(4096);
        let serving = tokio::spawn(async move { serve_peer(server, A, B, None).await });
        let mut client = client;
        tokio::io::AsyncWriteExt::write_all(&mut client, b"REPLICATE vs -\n")
            .await
            .unwrap();
        assert!(serving.await.unwrap().is_err());
    }
}
