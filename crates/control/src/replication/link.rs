//! Connections to paired sites: this site's TLS material, `dial` (every
//! site-to-site connection starts there) and `peer check`'s Ping/Pong.

use std::fs;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tandem_repl::peer::{Answer, Connection, PeerError, Request};
use tandem_repl::tls::{self, AllowedIds, TlsError};
use tandem_repl::wire::WireError;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::config::peers::Peer;
use crate::config::site::SitePaths;
use crate::error::{ControlError, Result};

/// How long `peer check` waits for the PONG, and each exchange of a
/// connection's preface (tandem_repl::peer) may take.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The outcome of `peer check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCheck {
    pub name: String,
    pub addr: String,
    pub id: String,
    /// TCP connect plus TLS handshake.
    pub connect_us: u64,
    /// Ping sent to Pong received.
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

/// Connects to `peer` with mutual TLS and exchanges one Ping/Pong.
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
    let mut conn = Connection::new(stream, PING_TIMEOUT);
    let ping_start = Instant::now();
    let ping = Request::Ping {
        site_id: tls.own_id.clone(),
    };
    let answer = match conn.request(ping).await {
        Ok(a) => a,
        Err(PeerError::Wire(WireError::Timeout { .. })) => {
            return Err(fail(format!(
                "no answer within {} ms",
                PING_TIMEOUT.as_millis()
            )))
        }
        Err(PeerError::Wire(WireError::Closed)) => {
            return Err(fail(
                "it closed the connection without answering; is this site paired there?".into(),
            ))
        }
        Err(PeerError::Wire(WireError::Io(e))) => return Err(refused_us(e)),
        Err(e) => return Err(fail(format!("unexpected answer: {e}"))),
    };
    let rtt_us = elapsed_us(ping_start);
    match answer {
        Answer::Pong { site_id } if site_id == peer.id => {}
        other => return Err(fail(format!("unexpected answer {other:?}"))),
    }
    // Best effort: the check already succeeded.
    let _ = conn.get_mut().shutdown().await;
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

/// Clips text from a peer for a log line.
pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
