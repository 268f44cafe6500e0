//! A TCP relay between the active site and the replica's peer listener
//! that counts every byte it forwards, TLS records and all: the "bytes on
//! the wire" of the replication rows. The active site is paired with the
//! relay's address instead of the replica's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

/// Copy buffer per direction of one connection.
const BUF_BYTES: usize = 256 << 10;
/// Pause after a failed accept.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Default)]
struct Counters {
    /// Active to replica.
    forward: AtomicU64,
    /// Replica to active (acknowledgements, handshake replies).
    backward: AtomicU64,
    /// Connections that reached the replica.
    sessions: AtomicU64,
    /// When the last one did.
    last_session: Mutex<Option<Instant>>,
}

/// Bytes counted so far, both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireBytes {
    pub forward: u64,
    pub backward: u64,
}

impl WireBytes {
    pub fn total(self) -> u64 {
        self.forward + self.backward
    }

    pub fn since(self, earlier: WireBytes) -> WireBytes {
        WireBytes {
            forward: self.forward.saturating_sub(earlier.forward),
            backward: self.backward.saturating_sub(earlier.backward),
        }
    }
}

pub struct CountingProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on `listen` (port 0: a free one) and relays every
    /// connection to `upstream`. Spawns on the current runtime.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the counting proxy on {listen}"))?;
        let addr = listener.local_addr().context("the proxy's address")?;
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let inbound = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of descriptors, say: wait rather than spin.
                        debug!(error = %e, "proxy: accept failed");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                };
                tokio::spawn(relay(inbound, upstream, c.clone()));
            }
        });
        Ok(CountingProxy {
            addr,
            counters,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn bytes(&self) -> WireBytes {
        WireBytes {
            forward: self.counters.forward.load(Ordering::Relaxed),
            backward: self.counters.backward.load(Ordering::Relaxed),
        }
    }

    /// Connections relayed to the replica so far, and when the last began.
    pub fn sessions(&self) -> (u64, Option<Instant>) {
        let at = *self.counters.last_session.lock();
        (self.counters.sessions.load(Ordering::Relaxed), at)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(inbound: TcpStream, upstream: SocketAddr, counters: Arc<Counters>) {
    // A refused upstream (the replica is stopped) just closes the inbound
    // connection, as the replica itself would have.
    let outbound = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%upstream, error = %e, "proxy: upstream refused");
            return;
        }
    };
    counters.sessions.fetch_add(1, Ordering::Relaxed);
    *counters.last_session.lock() = Some(Instant::now());
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ir, iw) = inbound.into_split();
    let (or, ow) = outbound.into_split();
    let c2 = counters.clone();
    let fwd = tokio::spawn(async move { pump(ir, ow, &counters.forward).await });
    let back = pump(or, iw, &c2.backward).await;
    let _ = fwd.await;
    debug!(?back, "proxy: connection closed");
}

/// Copies until either side closes, counting what was written.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: &AtomicU64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; BUF_BYTES];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}
