//! The listener other sites connect to, and what it does with each
//! connection: PING, a replication session into one of the daemon's
//! replicas (with its baseline or catch-up), EPOCH, RESYNC, a switchover.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tandem_repl::tls::{self, TlsAcceptor, TlsError};
use tokio::io::{AsyncBufReadExt, AsyncWrite, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::IncomingTarget;
use crate::config::names::parse_address;
use crate::error::{ControlError, Result};
use crate::replication::link::{
    read_line, truncate, write_line, PeerTls, PING_TIMEOUT, REFUSE_EPOCH_PREFIX,
};

/// Concurrent connections on the peer listener; more wait in the backlog.
pub const MAX_PEER_CONNECTIONS: usize = 64;
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
    /// a daemon, REPLICATE is refused).
    pub async fn serve_with(
        self,
        shutdown: CancellationToken,
        daemon: Option<Arc<crate::daemon::Daemon>>,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
        let mut conns = JoinSet::new();
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        let acceptor = self.acceptor.clone();
                        let tls = self.tls.clone();
                        let daemon = daemon.clone();
                        conns.spawn(async move {
                            connection(acceptor, tls, tcp, addr, daemon).await;
                            drop(permit);
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

async fn connection(
    acceptor: TlsAcceptor,
    tls: PeerTls,
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    daemon: Option<Arc<crate::daemon::Daemon>>,
) {
    let (peer_id, stream) =
        match tls::accept(&acceptor, tcp, addr, tls::DEFAULT_HANDSHAKE_TIMEOUT).await {
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
    tracing::info!(peer_addr = %addr, peer_id = %peer_id, "peer connected");
    if let Err(e) = serve_peer(stream, &peer_id, &tls.own_id, daemon).await {
        tracing::debug!(peer_addr = %addr, error = %e, "peer connection ended");
    }
}

/// First bytes of a replication message (the wire envelope's magic).
const REPL_MAGIC: &[u8] = b"TNRP";

/// Tells the line protocol (PING, REPLICATE) apart from replication
/// messages by their first bytes, without consuming them.
async fn serve_peer<S: tokio::io::AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer_id: &str,
    own_id: &str,
    daemon: Option<Arc<crate::daemon::Daemon>>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let first = match tokio::time::timeout(PEER_IDLE_TIMEOUT, stream.fill_buf()).await {
            Err(_) => return Ok(()),
            Ok(r) => r?,
        };
        if first.is_empty() {
            return Ok(());
        }
        if REPL_MAGIC.starts_with(&first[..first.len().min(REPL_MAGIC.len())]) {
            // A session must be preceded by REPLICATE, which names the
            // vserver so its store is ready before Hello is read.
            tracing::warn!(peer_id, "replication message without a REPLICATE preface");
            let msg = tandem_repl::wire::Message::Refuse {
                code: tandem_repl::wire::code::INTERNAL,
                reason: "send \"REPLICATE <vserver> <address|->\" before Hello".into(),
            };
            let _ = tandem_repl::wire::write_message(&mut stream, &msg, PING_TIMEOUT).await;
            return Ok(());
        }
        let line = match tokio::time::timeout(PEER_IDLE_TIMEOUT, read_line(&mut stream)).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Some(l))) => l,
        };
        match line.split_once(' ') {
            // The id in the PING must be the one the handshake proved: a
            // mismatch means a confused or lying peer.
            Some(("PING", id)) if id == peer_id => {
                write_line(&mut stream, &format!("PONG {own_id}")).await?;
            }
            Some(("PING", id)) => {
                tracing::warn!(peer_id, claimed = %truncate(id), "PING names another site id");
                write_line(&mut stream, "ERR site id differs from certificate").await?;
                return Ok(());
            }
            Some(("EPOCH", rest)) => {
                let Some(daemon) = &daemon else {
                    write_line(&mut stream, "ERR this listener takes no replication").await?;
                    return Ok(());
                };
                let answer = daemon.answer_epoch(rest).await;
                write_line(&mut stream, &answer).await?;
                return Ok(());
            }
            Some(("RESYNC", rest)) => {
                let Some(daemon) = daemon else {
                    write_line(&mut stream, "ERR this listener takes no replication").await?;
                    return Ok(());
                };
                return daemon.serve_resync(stream, peer_id, rest).await;
            }
            Some(("REPLICATE", rest)) => {
                let Some(daemon) = daemon else {
                    write_line(&mut stream, "ERR this listener takes no replication").await?;
                    return Ok(());
                };
                return serve_replication(stream, peer_id, own_id, daemon, rest).await;
            }
            _ => {
                tracing::warn!(peer_id, line = %truncate(&line), "unknown message from peer");
                write_line(&mut stream, "ERR unknown message").await?;
                return Ok(());
            }
        }
    }
}

/// "REPLICATE <vserver> <address|->": readies the replica store, answers
/// OK, then runs the receiving session on the same connection.
async fn serve_replication<S: tokio::io::AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: BufReader<S>,
    peer_id: &str,
    own_id: &str,
    daemon: Arc<crate::daemon::Daemon>,
    args: &str,
) -> std::io::Result<()> {
    let (vserver, address) = match args.split_once(' ') {
        Some((v, "-")) => (v, None),
        Some((v, a)) => (v, Some(a)),
        None => (args, None),
    };
    let incoming = async {
        let address = address.map(parse_address).transpose()?;
        daemon.incoming(peer_id, vserver, address).await
    };
    let (target, lock) = match incoming.await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(peer_id, vserver = %truncate(vserver), error = %e, "refusing replication");
            let text: String = e.to_string().replace('\n', " ").chars().take(200).collect();
            // Active here (a failover promoted it): the sender learns the
            // epoch and fences itself if its own is lower ("One writer per epoch").
            let line = match daemon.active_epoch(vserver).await {
                Some(epoch) => format!("ERR {REFUSE_EPOCH_PREFIX}{epoch} {text}"),
                None => format!("ERR {text}"),
            };
            write_line(&mut stream, &line).await?;
            return Ok(());
        }
    };
    let stop = daemon.session_stop(vserver);
    let Ok(_session) = lock.try_lock_owned() else {
        write_line(
            &mut stream,
            &format!("ERR BUSY: another session for {vserver} is running; retry later"),
        )
        .await?;
        return Ok(());
    };
    // "OK <lsn>", plus "baseline" when only a baseline can go on: the
    // sender chooses between streaming and a baseline from this.
    let answer = match &target {
        IncomingTarget::Store(store) => format!("OK {}", store.last_lsn()),
        IncomingTarget::Baseline => "OK 0 baseline".to_string(),
    };
    write_line(&mut stream, &answer).await?;
    let cfg = tandem_repl::session::SessionConfig::new(own_id.to_string());
    let first = match tokio::time::timeout(PEER_IDLE_TIMEOUT, stream.fill_buf()).await {
        Err(_) => return Ok(()),
        Ok(r) => r?,
    };
    let store = if first.starts_with(REPL_MAGIC) {
        match target {
            IncomingTarget::Store(store) => store,
            IncomingTarget::Baseline => {
                let msg = tandem_repl::wire::Message::Refuse {
                    code: tandem_repl::wire::code::NOT_RETAINED,
                    reason: format!("{vserver} here has an unfinished baseline; send a baseline"),
                };
                let _ = tandem_repl::wire::write_message(&mut stream, &msg, PING_TIMEOUT).await;
                return Ok(());
            }
        }
    } else {
        let line = match tokio::time::timeout(PEER_IDLE_TIMEOUT, read_line(&mut stream)).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Some(l))) => l,
        };
        let received = match line.as_str() {
            "BASELINE" => receive_baseline(&mut stream, peer_id, &daemon, vserver).await,
            "CATCHUP" => {
                // The install needs the store closed: let go of ours.
                drop(target);
                receive_catchup(&mut stream, peer_id, &daemon, vserver, &stop).await
            }
            _ => {
                tracing::warn!(peer_id, line = %truncate(&line), "unexpected line after REPLICATE");
                return Ok(());
            }
        };
        match received {
            Some(store) => store,
            None => return Ok(()),
        }
    };
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
            return Ok(());
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
    Ok(())
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

    /// The listener's first-bytes dispatch, without a daemon behind it.
    #[tokio::test]
    async fn line_protocol_and_replication_are_told_apart() {
        // A replication message with no REPLICATE preface: a wire Refuse.
        let (mut client, server) = tokio::io::duplex(4096);
        let serving = tokio::spawn(async move { serve_peer(server, A, B, None).await });
        let first = tandem_repl::wire::Message::Heartbeat { now_ms: 1 };
        tandem_repl::wire::write_message(&mut client, &first, Duration::from_secs(5))
            .await
            .unwrap();
        let answer = tandem_repl::wire::read_message(&mut client, Duration::from_secs(5))
            .await
            .unwrap();
        match answer {
            tandem_repl::wire::Message::Refuse { reason, .. } => {
                assert!(reason.contains("REPLICATE"), "{reason}")
            }
            other => panic!("expected Refuse, got {}", other.kind()),
        }
        serving.await.unwrap().unwrap();

        // PING, then REPLICATE on a listener that takes no replication.
        let (client, server) = tokio::io::duplex(4096);
        let serving = tokio::spawn(async move { serve_peer(server, A, B, None).await });
        let mut client = BufReader::new(client);
        write_line(&mut client, &format!("PING {A}")).await.unwrap();
        assert_eq!(
            read_line(&mut client).await.unwrap().unwrap(),
            format!("PONG {B}")
        );
        write_line(&mut client, "REPLICATE vs -").await.unwrap();
        let line = read_line(&mut client).await.unwrap().unwrap();
        assert!(line.starts_with("ERR "), "{line}");
        serving.await.unwrap().unwrap();

        // An over-long line is an error, not a buffer that grows.
        let (client, server) = tokio::io::duplex(4096);
        let serving = tokio::spawn(async move { serve_peer(server, A, B, None).await });
        let mut client = BufReader::new(client);
        let long = format!(
            "REPLICATE {}",
            "x".repeat(crate::replication::link::MAX_PING_LINE_BYTES + 10)
        );
        write_line(&mut client, &long).await.unwrap();
        assert!(serving.await.unwrap().is_err());
    }
}
