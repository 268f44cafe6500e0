//! The NFS layer of Tandem: ONC RPC over TCP, NFSv3 (RFC 1813), MOUNT v3,
//! the lock manager (NLM v4, NSM v1) and a minimal portmapper, turning
//! calls into `tandem_store` calls.
//!
//! The store is synchronous, so every store call runs on the blocking pool;
//! replies that promise durability wait for `Store::wait_durable` first.

mod budget;
mod dispatch;
mod error;
mod exports;
mod handle;
mod listener;
mod mount;
mod nfs3;
mod nlm;
mod nsm;
pub mod pause;
mod portmap;
mod rpc;
mod server;
mod xdr;

use std::net::IpAddr;
use std::sync::Arc;

use tandem_store::{Store, MAX_IO_BYTES};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

pub use error::NfsError;
pub use nlm::NlmConfig;

use dispatch::Service;
use listener::{bind, Limits};
use server::Shared;

/// Room for RPC and NFS headers around the largest WRITE payload.
const RPC_HEADROOM_BYTES: usize = 4096;
/// Smallest WRITE size we would still advertise.
const MIN_WRITE_BYTES: usize = 4096;

/// The standard ports; a site serves PORTMAP on its port only when asked
/// (binding 111 needs root).
pub const DEFAULT_NFS_PORT: u16 = 2049;
pub const DEFAULT_MOUNT_PORT: u16 = 20048;
pub const DEFAULT_PORTMAP_PORT: u16 = 111;

/// One service's settings. Its defaults are a site's too (control's
/// site.toml `[nfs]` starts from them).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub nfs_port: u16,
    pub mount_port: u16,
    pub portmap_port: Option<u16>,
    pub max_connections: usize,
    pub max_record_bytes: usize,
    pub max_requests_per_connection: usize,
    /// Requests being read, run or answered at once across every connection
    /// of the service: with `max_record_bytes`, the bound on request memory.
    pub max_requests_total: usize,
    /// The lock manager (NLM and NSM, served on the MOUNT port).
    pub nlm: NlmConfig,
    /// Shares of connections and requests, so no client host and no port
    /// can lock the others out.
    pub shares: Shares,
}

/// How the service's connections and requests are shared out. A hostile
/// or broken client (many silent connections, a client that never reads
/// its replies) spends its own share, not everyone's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shares {
    /// Connections one client host may hold across the NFS, MOUNT and
    /// portmap ports of the service; past it new ones are closed at once.
    pub max_connections_per_host: usize,
    /// Connections to the MOUNT and portmap ports (NLM and NSM included):
    /// a budget of their own, so a flood there leaves NFS served and the
    /// other way round. `max_connections` is the NFS port's.
    pub max_other_connections: usize,
    /// Requests of one client host in progress at once, out of
    /// `max_requests_total`.
    pub max_requests_per_host: usize,
    /// A connection with nothing in progress that sends nothing for this
    /// long is closed (clients reconnect on their next call, as they do
    /// with knfsd, which closes idle connections after about 6 minutes).
    pub idle_timeout_ms: u64,
    /// Once a record's first header arrived, the whole record must arrive
    /// within this.
    pub record_timeout_ms: u64,
}

impl Default for Shares {
    fn default() -> Self {
        Shares {
            max_connections_per_host: 64,
            max_other_connections: 128,
            max_requests_per_host: 128,
            idle_timeout_ms: 360_000,
            record_timeout_ms: 15_000,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            nfs_port: DEFAULT_NFS_PORT,
            mount_port: DEFAULT_MOUNT_PORT,
            portmap_port: None,
            max_connections: 1024,
            // A 1 MiB WRITE plus RPC and NFS headers.
            max_record_bytes: (1 << 20) + (64 << 10),
            max_requests_per_connection: 128,
            max_requests_total: 256,
            nlm: NlmConfig::default(),
            shares: Shares::default(),
        }
    }
}

/// The ports actually bound on one address (also where status tells
/// clients to reach it, so it crosses the control socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub nfs_port: u16,
    pub mount_port: u16,
    pub portmap_port: Option<u16>,
}

pub struct VserverService {
    endpoints: Vec<Endpoint>,
    pause: Arc<pause::PauseGate>,
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
}

impl VserverService {
    /// Binds NFS, MOUNT (and portmap if configured) on every address; port 0
    /// means "pick one" (tests).
    pub async fn start(
        store: Arc<Store>,
        addrs: Vec<IpAddr>,
        cfg: ServerConfig,
    ) -> Result<VserverService, NfsError> {
        let max_write_bytes = validate(&cfg)?;
        let mut endpoints = Vec::with_capacity(addrs.len());
        let mut bound = Vec::new();
        for ip in addrs {
            let nfs = bind(ip, cfg.nfs_port)?;
            let mount = bind(ip, cfg.mount_port)?;
            let portmap = cfg.portmap_port.map(|port| bind(ip, port)).transpose()?;
            endpoints.push(Endpoint {
                ip,
                nfs_port: nfs.port,
                mount_port: mount.port,
                portmap_port: portmap.as_ref().map(|p| p.port),
            });
            bound.push((nfs, Service::Nfs));
            bound.push((mount, Service::Mount));
            if let Some(p) = portmap {
                bound.push((p, Service::Portmap));
            }
        }
        let pause = Arc::new(pause::PauseGate::default());
        let shared = Arc::new(Shared {
            pause: pause.clone(),
            store,
            endpoints: endpoints.clone(),
            max_write_bytes,
            nlm: nlm::NlmState::new(cfg.nlm.clone()),
        });
        let limits = Limits {
            budget: Arc::new(budget::Budget::new(
                cfg.shares.clone(),
                cfg.max_connections,
                cfg.max_requests_total,
            )),
            max_record_bytes: cfg.max_record_bytes,
            max_requests_per_connection: cfg.max_requests_per_connection,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let listeners = bound
            .into_iter()
            .map(|(l, service)| {
                tokio::spawn(listener::accept_loop(
                    l.listener,
                    service,
                    shared.clone(),
                    limits.clone(),
                    shutdown_rx.clone(),
                ))
            })
            .collect();
        info!(?endpoints, "NFS service started");
        Ok(VserverService {
            endpoints,
            pause,
            shutdown,
            listeners,
        })
    }

    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.endpoints.clone()
    }

    /// The switchover pause of this service's NFS calls.
    pub fn pause_gate(&self) -> Arc<pause::PauseGate> {
        self.pause.clone()
    }

    /// Stops accepting, closes every connection and waits for the listeners.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        for l in self.listeners {
            if let Err(e) = l.await {
                tracing::warn!(error = %e, "listener task ended abnormally");
            }
        }
        info!(endpoints = ?self.endpoints, "NFS service stopped");
    }
}

fn validate(cfg: &ServerConfig) -> Result<u32, NfsError> {
    if cfg.max_connections == 0 {
        return Err(NfsError::Config(
            "max_connections must be at least 1".into(),
        ));
    }
    if cfg.max_requests_total == 0 {
        return Err(NfsError::Config(
            "max_requests_total must be at least 1".into(),
        ));
    }
    let shares = &cfg.shares;
    for (name, value) in [
        ("max_connections_per_host", shares.max_connections_per_host),
        ("max_other_connections", shares.max_other_connections),
        ("max_requests_per_host", shares.max_requests_per_host),
    ] {
        if value == 0 {
            return Err(NfsError::Config(format!("{name} must be at least 1")));
        }
    }
    if shares.idle_timeout_ms == 0 || shares.record_timeout_ms == 0 {
        return Err(NfsError::Config(
            "idle_timeout_ms and record_timeout_ms must be at least 1".into(),
        ));
    }
    if cfg.max_requests_per_connection == 0 {
        return Err(NfsError::Config(
            "max_requests_per_connection must be at least 1".into(),
        ));
    }
    let max_write_bytes = cfg
        .max_record_bytes
        .saturating_sub(RPC_HEADROOM_BYTES)
        .min(MAX_IO_BYTES);
    if max_write_bytes < MIN_WRITE_BYTES {
        return Err(NfsError::Config(format!(
            "max_record_bytes must be at least {}",
            MIN_WRITE_BYTES + RPC_HEADROOM_BYTES
        )));
    }
    u32::try_from(max_write_bytes)
        .map_err(|_| NfsError::Config("max_record_bytes too large".into()))
}
