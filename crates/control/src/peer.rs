//! Paired sites: the peer list (`peers.toml`), the listener other sites
//! connect to, and `peer check`.
//!
//! Trust is by site id only (see tandem_repl::tls): the listener accepts a
//! connection only from a site whose id is in the peer list, and a site
//! connects to a peer only if the peer proves the id it was given. The peer
//! list lives in its own file, not site.toml, because it is changed by the
//! daemon at run time while site.toml is the operator's to edit.
//!
//! For now a paired connection carries one exchange, used by `peer check`:
//! "PING <client id>\n" answered by "PONG <server id>\n". Replication
//! messages replace it later.

use std::fs;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tandem_repl::tls::{self, AllowedIds, TlsAcceptor, TlsError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::daemon::IncomingTarget;
use crate::error::{ControlError, Result};
use crate::names::validate_name;
use crate::site::{parse_listen, SitePaths};

/// Most peers one site may have.
pub const MAX_PEERS: usize = 64;
/// peers.toml holds at most MAX_PEERS short entries.
pub const MAX_PEERS_TOML_BYTES: u64 = 64 * 1024;
/// Concurrent connections on the peer listener; more wait in the backlog.
pub const MAX_PEER_CONNECTIONS: usize = 64;
/// A line of the peer line protocol: PING/PONG (word, site id) or
/// REPLICATE (word, vserver name up to 64, an IPv6 address with prefix and
/// interface), with room to spare.
pub const MAX_PING_LINE_BYTES: usize = 256;
/// How long a paired connection may sit idle between messages.
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `peer check` waits for the PONG.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// One paired site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    /// "HOST:PORT" of the peer's listener.
    pub addr: String,
    /// The peer's site id (hex SHA-256 of its certificate).
    pub id: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    #[serde(default)]
    peers: Vec<Peer>,
}

/// Checks and normalises a peer as typed by an operator or read from disk:
/// a valid name, an address to connect to, a well-formed id that is not
/// ours. Returns the normalised peer (address with port, id lower-case).
pub fn validate_peer(peer: &Peer, own_id: &str) -> Result<Peer> {
    validate_name("peer name", &peer.name)?;
    let addr = parse_listen(&peer.addr).map_err(|e| match e {
        ControlError::Invalid { reason, .. } => ControlError::invalid("peer address", reason),
        other => other,
    })?;
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        // parse_listen lets "IP:0" through (fine for binding, never for
        // connecting).
        if sa.port() == 0 {
            return Err(ControlError::invalid("peer address", "port must not be 0"));
        }
        if sa.ip().is_unspecified() || sa.ip().is_multicast() {
            return Err(ControlError::invalid(
                "peer address",
                format!(
                    "{} cannot be connected to; give the peer's own address",
                    sa.ip()
                ),
            ));
        }
    }
    let id = peer.id.trim().to_ascii_lowercase();
    if !tls::is_site_id(&id) {
        return Err(ControlError::invalid(
            "peer id",
            format!(
                "{:?} is not a site id ({} hex characters, as `tandem status` shows at the peer)",
                truncate(&peer.id),
                tls::SITE_ID_HEX_CHARS
            ),
        ));
    }
    if id == own_id {
        return Err(ControlError::invalid(
            "peer id",
            format!("{id} is this site's own id; give the id of the other site"),
        ));
    }
    Ok(Peer {
        name: peer.name.clone(),
        addr,
        id,
    })
}

/// Refuses a peer whose name, id or address is already in `peers`.
pub fn check_unique(peers: &[Peer], new: &Peer) -> Result<()> {
    for p in peers {
        let clash = if p.name == new.name {
            Some(format!("peer {} (id {})", p.name, p.id))
        } else if p.id == new.id {
            Some(format!("id {} is peer {}", new.id, p.name))
        } else if p.addr == new.addr {
            Some(format!("address {} is peer {}", new.addr, p.name))
        } else {
            None
        };
        if let Some(detail) = clash {
            return Err(ControlError::Exists {
                what: "peer".into(),
                detail,
            });
        }
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Reads peers.toml; a missing file is no peers. Every entry is checked as
/// if typed, so a bad hand edit is a clear start-up error.
pub fn load(paths: &SitePaths, own_id: &str) -> Result<Vec<Peer>> {
    let path = paths.peers_toml();
    let bad = |reason: String| ControlError::SiteConfig {
        path: path.clone(),
        reason,
    };
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ControlError::io(&path, e)),
    };
    if meta.len() > MAX_PEERS_TOML_BYTES {
        return Err(bad(format!("larger than {MAX_PEERS_TOML_BYTES} bytes")));
    }
    let text = fs::read_to_string(&path).map_err(|e| ControlError::io(&path, e))?;
    let file: PeersFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if file.peers.len() > MAX_PEERS {
        return Err(bad(format!("more than {MAX_PEERS} peers")));
    }
    let mut peers: Vec<Peer> = Vec::with_capacity(file.peers.len());
    for p in &file.peers {
        let p = validate_peer(p, own_id).map_err(|e| bad(e.to_string()))?;
        check_unique(&peers, &p).map_err(|e| bad(e.to_string()))?;
        peers.push(p);
    }
    Ok(peers)
}

/// Writes peers.toml through a temporary file, fsync and rename, then
/// fsyncs the directory, so a crash leaves the old list or the new one.
pub fn save(paths: &SitePaths, peers: &[Peer]) -> Result<()> {
    let path = paths.peers_toml();
    let file = PeersFile {
        peers: peers.to_vec(),
    };
    crate::toml_file::write_atomically(
        &path,
        "# Paired sites, written by `tandem peer add/remove`. See docs/operating.md.\n",
        &file,
    )
}

/// What the daemon needs to speak TLS as this site.
#[derive(Clone)]
pub struct PeerTls {
    pub own_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub allowed: AllowedIds,
    /// Handshakes the listener refused (unknown site, no or bad
    /// certificate, timeout).
    pub refused: Arc<AtomicU64>,
}

impl std::fmt::Debug for PeerTls {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("own_id", &self.own_id)
            .finish_non_exhaustive()
    }
}

/// Reads the site's private key (PEM), bounded in size.
pub fn load_key_pem(paths: &SitePaths) -> Result<String> {
    let path = paths.key();
    let meta = fs::metadata(&path).map_err(|e| ControlError::io(&path, e))?;
    if meta.len() > tls::MAX_PEM_BYTES as u64 {
        return Err(ControlError::Identity(format!(
            "{} is larger than {} bytes",
            path.display(),
            tls::MAX_PEM_BYTES
        )));
    }
    fs::read_to_string(&path).map_err(|e| ControlError::io(&path, e))
}

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

    /// Serves until `shutdown` turns true; connections in progress are
    /// dropped then (they carry nothing that needs finishing yet).
    pub async fn serve(self, shutdown: watch::Receiver<bool>) {
        self.serve_with(shutdown, None).await;
    }

    /// `serve`, and replication sessions into `daemon`'s vservers (without
    /// a daemon, REPLICATE is refused).
    pub async fn serve_with(
        self,
        mut shutdown: watch::Receiver<bool>,
        daemon: Option<Arc<crate::daemon::Daemon>>,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
        let mut conns = JoinSet::new();
        loop {
            let permit = tokio::select! {
                () = stopped(&mut shutdown) => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            tokio::select! {
                () = stopped(&mut shutdown) => break,
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

/// Resolves once shutdown is asked for (or its sender is gone). Returns
/// nothing so no watch guard is held across an await (the task must be Send).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = rx.wait_for(|stop| *stop).await;
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
                let answer = crate::resync::answer_epoch(daemon, rest).await;
                write_line(&mut stream, &answer).await?;
                return Ok(());
            }
            Some(("RESYNC", rest)) => {
                let Some(daemon) = daemon else {
                    write_line(&mut stream, "ERR this listener takes no replication").await?;
                    return Ok(());
                };
                return crate::resync::serve_resync(stream, peer_id, &daemon, rest).await;
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

/// Starts a REPLICATE refusal from a site where the vserver is active:
/// "ERR EPOCH <n> <reason>".
pub const REFUSE_EPOCH_PREFIX: &str = "EPOCH ";

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
    let (target, lock) = match daemon.incoming(peer_id, vserver, address).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(peer_id, vserver = %truncate(vserver), error = %e, "refusing replication");
            let text: String = e.to_string().replace('\n', " ").chars().take(200).collect();
            // Active here (a failover promoted it): the sender learns the
            // epoch and fences itself if its own is lower (invariant 3).
            let line = match daemon.active_epoch(vserver).await {
                Some(epoch) => format!("ERR {REFUSE_EPOCH_PREFIX}{epoch} {text}"),
                None => format!("ERR {text}"),
            };
            write_line(&mut stream, &line).await?;
            return Ok(());
        }
    };
    let mut stop = daemon.session_stop(vserver);
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
                receive_catchup(&mut stream, peer_id, &daemon, vserver, &mut stop).await
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
    let stopped = async {
        // The flag's sender lives as long as the daemon; if it went, the
        // session just runs on.
        if stop.wait_for(|promoted| *promoted).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let received = tokio::select! {
        r = crate::daemon::switchover_peer::receive(daemon.clone(), peer_id, store.clone(), vserver, stream, &cfg) => r,
        () = stopped => {
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
    stop: &mut watch::Receiver<bool>,
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
    // A forced failover ends the catch-up (failover_catchup.rs): the
    // staging, never switched in, is discarded when the store reopens.
    let stopped = async {
        if stop.wait_for(|promoted| *promoted).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let transfer = receive_transfer(
        stream,
        &dir,
        vserver,
        Transfer::Catchup,
        daemon.store_options(),
    );
    let received = tokio::select! {
        r = transfer => Some(r),
        () = stopped => None,
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

/// Reads one bounded line; None at end of stream.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_PING_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > MAX_PING_LINE_BYTES || line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line longer than {MAX_PING_LINE_BYTES} bytes or cut short"),
        ));
    }
    line.pop();
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "line is not UTF-8"))
}

async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> std::io::Result<()> {
    w.write_all(format!("{line}\n").as_bytes()).await?;
    w.flush().await
}

/// The outcome of `peer check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCheck {
    pub name: String,
    pub addr: String,
    pub id: String,
    /// TCP connect plus TLS handshake.
    pub connect_us: u64,
    /// PING sent to PONG received.
    pub rtt_us: u64,
}

/// Opens a mutual-TLS connection to `peer`: this site proves its identity
/// and the peer must present the id it was paired with. Every exchange
/// between sites (ping, replication, resync, a switchover's question)
/// starts here, so a wrong id reads the same everywhere.
pub async fn dial(
    peer: &Peer,
    own: &PeerTls,
) -> Result<impl tokio::io::AsyncRead + AsyncWrite + Unpin + Send> {
    let config = tls::client_config(&own.cert_pem, &own.key_pem, &peer.id)
        .map_err(|e| ControlError::Identity(e.to_string()))?;
    tls::connect(
        peer.addr.as_str(),
        config,
        tls::DEFAULT_CONNECT_TIMEOUT,
        tls::DEFAULT_HANDSHAKE_TIMEOUT,
    )
    .await
    .map_err(|e| {
        let reason = match e {
            TlsError::Handshake {
                presented: Some(p),
                ..
            } => format!(
                "it presented site id {p}, not the paired id {}; check the id given to `tandem peer add`",
                peer.id
            ),
            other => other.to_string(),
        };
        ControlError::PeerUnreachable {
            name: peer.name.clone(),
            addr: peer.addr.clone(),
            reason,
        }
    })
}

/// Connects to `peer` with mutual TLS and exchanges one PING/PONG.
pub async fn check(peer: &Peer, tls: &PeerTls) -> Result<PeerCheck> {
    let fail = |reason: String| ControlError::PeerUnreachable {
        name: peer.name.clone(),
        addr: peer.addr.clone(),
        reason,
    };
    let start = Instant::now();
    let stream = dial(peer, tls).await?;
    let connect_us = elapsed_us(start);
    let refused_us = |e: std::io::Error| match tls::alert_of(&e) {
        Some(alert) => fail(format!(
            "it refused this site (id {}) with TLS alert {alert}; is this site paired there? \
             Run `tandem peer add NAME --addr ADDR --id {}` at the peer",
            tls.own_id, tls.own_id
        )),
        // A reset instead of an alert can also be a refusal, depending on
        // timing; say what to check.
        None => fail(format!(
            "talking to it: {e} (check that this site, id {}, is paired there)",
            tls.own_id
        )),
    };
    let mut stream = BufReader::new(stream);
    let ping_start = Instant::now();
    let exchange = async {
        write_line(&mut stream, &format!("PING {}", tls.own_id)).await?;
        read_line(&mut stream).await
    };
    let line = match tokio::time::timeout(PING_TIMEOUT, exchange).await {
        Err(_) => {
            return Err(fail(format!(
                "no answer within {} ms",
                PING_TIMEOUT.as_millis()
            )))
        }
        Ok(Err(e)) => return Err(refused_us(e)),
        Ok(Ok(None)) => {
            return Err(fail(
                "it closed the connection without answering; is this site paired there?".into(),
            ))
        }
        Ok(Ok(Some(l))) => l,
    };
    let rtt_us = elapsed_us(ping_start);
    match line.split_once(' ') {
        Some(("PONG", id)) if id == peer.id => {}
        _ => return Err(fail(format!("unexpected answer {:?}", truncate(&line)))),
    }
    // Best effort: the check already succeeded.
    let _ = stream.get_mut().shutdown().await;
    Ok(PeerCheck {
        name: peer.name.clone(),
        addr: peer.addr.clone(),
        id: peer.id.clone(),
        connect_us,
        rtt_us,
    })
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn peer(name: &str, addr: &str, id: &str) -> Peer {
        Peer {
            name: name.into(),
            addr: addr.into(),
            id: id.into(),
        }
    }

    #[test]
    fn validation() {
        let ok = validate_peer(&peer("b", "127.0.0.3", &B.to_uppercase()), A).unwrap();
        assert_eq!(ok.addr, "127.0.0.3:7447");
        assert_eq!(ok.id, B);
        for (p, needle) in [
            (peer("b/x", "127.0.0.3", B), "peer name"),
            (peer("b", "127.0.0.3:0", B), "peer address"),
            (peer("b", "0.0.0.0:7447", B), "cannot be connected to"),
            (peer("b", "127.0.0.3", "abc"), "not a site id"),
            (peer("b", "127.0.0.3", &"g".repeat(64)), "not a site id"),
            (peer("b", "127.0.0.3", A), "own id"),
        ] {
            let e = validate_peer(&p, A).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let list = vec![peer("b", "127.0.0.3:7447", B)];
        assert!(check_unique(&list, &peer("b", "127.0.0.4:1", &"c".repeat(64))).is_err());
        assert!(check_unique(&list, &peer("c", "127.0.0.4:1", B)).is_err());
        assert!(check_unique(&list, &peer("c", "127.0.0.3:7447", &"c".repeat(64))).is_err());
        assert!(check_unique(&list, &peer("c", "127.0.0.4:1", &"c".repeat(64))).is_ok());
    }

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
        let long = format!("REPLICATE {}", "x".repeat(MAX_PING_LINE_BYTES + 10));
        write_line(&mut client, &long).await.unwrap();
        assert!(serving.await.unwrap().is_err());
    }

    #[test]
    fn save_then_load_and_bad_files() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = SitePaths::new(tmp.path());
        assert!(load(&paths, A).unwrap().is_empty());
        let list = vec![peer("b", "127.0.0.3:7447", B)];
        save(&paths, &list).unwrap();
        assert_eq!(load(&paths, A).unwrap(), list);
        // Our own id in the file (a copy of the other site's list?) is refused.
        assert!(load(&paths, B).is_err());
        fs::write(paths.peers_toml(), "[[peers]]\nname = 1\n").unwrap();
        let e = load(&paths, A).unwrap_err().to_string();
        assert!(e.contains("peers.toml"), "{e}");
    }
}
