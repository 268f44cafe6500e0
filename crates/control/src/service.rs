//! The seam between control and the NFS layer: one NFS service per vserver
//! address, so that an address that cannot be bound fails alone.
//!
//! STUB: until `tandem_nfs::VserverService` lands, this binds the ports
//! (so bind failures and endpoints are real) but serves nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tandem_store::Store;
use tokio::net::TcpListener;

/// Mirror of `tandem_nfs::ServerConfig`, built from site.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub nfs_port: u16,
    pub mount_port: u16,
    pub portmap_port: Option<u16>,
    pub max_connections: usize,
    pub max_record_bytes: usize,
    pub max_requests_per_connection: usize,
}

/// Where clients reach one address's services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub nfs_port: u16,
    pub mount_port: u16,
    pub portmap_port: Option<u16>,
}

pub struct Service {
    endpoint: Endpoint,
    _listeners: Vec<TcpListener>,
}

impl Service {
    /// Starts NFS, MOUNT (and portmap if configured) on one address.
    pub async fn start(
        _store: Arc<Store>,
        ip: IpAddr,
        cfg: &ServiceConfig,
    ) -> std::result::Result<Service, String> {
        let mut ports = vec![cfg.nfs_port, cfg.mount_port];
        ports.extend(cfg.portmap_port);
        let mut listeners = Vec::new();
        for port in ports {
            let addr = SocketAddr::new(ip, port);
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            listeners.push(l);
        }
        Ok(Service {
            endpoint: Endpoint {
                ip,
                nfs_port: cfg.nfs_port,
                mount_port: cfg.mount_port,
                portmap_port: cfg.portmap_port,
            },
            _listeners: listeners,
        })
    }

    pub fn endpoints(&self) -> Vec<Endpoint> {
        vec![self.endpoint.clone()]
    }

    pub async fn shutdown(self) {}
}
