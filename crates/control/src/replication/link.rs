//! Connections to paired sites: this site's TLS material, `dial` (every
//! site-to-site connection starts there) and `peer check`'s PING/PONG.

use std::fs;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tandem_repl::tls::{self, AllowedIds, TlsError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::config::peers::Peer;
use crate::config::site::SitePaths;
use crate::error::{ControlError, Result};

/// A line of the peer line protocol: PING/PONG (word, site id) or
/// REPLICATE (word, vserver name up to 64, an IPv6 address with prefix and
/// interface), with room to spare.
pub const MAX_PING_LINE_BYTES: usize = 256;
/// Starts a REPLICATE refusal from a site where the vserver is active:
/// "ERR EPOCH <n> <reason>".
pub const REFUSE_EPOCH_PREFIX: &str = "EPOCH ";
/// How long `peer check` waits for the PONG.
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

/// Reads one bounded line; None at end of stream.
pub(crate) async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
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

pub(crate) async fn write_line<W: AsyncWrite + Unpin>(
    w: &mut W,
    line: &str,
) -> std::io::Result<()> {
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

/// Clips text from a peer for a log line.
pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
