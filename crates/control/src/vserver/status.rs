//! What `tandem status` reports, as sent over the control API and printed
//! with `--json`. Field names are part of the CLI's contract.

use serde::{Deserialize, Serialize};
use tandem_store::{AddressSpec, Lsn, User};

use crate::vserver::service::Endpoint;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub site: SiteStatus,
    pub vservers: Vec<VserverStatus>,
}

impl StatusReport {
    /// The first vserver's last replication error, or "no error reported":
    /// what a tool waiting on one replicated vserver tells when it gives up.
    pub fn replication_error(&self) -> String {
        self.vservers
            .first()
            .and_then(|v| v.replication.as_ref())
            .and_then(|r| r.last_error.clone())
            .unwrap_or_else(|| "no error reported".into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteStatus {
    pub name: String,
    /// Hex SHA-256 of the site certificate.
    pub id: String,
    pub listen: String,
    pub data_dir: String,
    pub daemon_pid: u32,
    /// Paired sites.
    #[serde(default)]
    pub peers: usize,
    /// Connections to the peer listener whose TLS handshake was refused
    /// (unpaired site, no or bad certificate, timeout) since the start.
    #[serde(default)]
    pub refused_peer_connections: u64,
    /// Why the peer listener is not running, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_listener_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VserverState {
    /// Open and served from this site.
    Active,
    /// Its store could not be opened; `error` says why.
    Failed,
    /// A copy of a vserver active at another site (read-only here).
    Replica,
    /// A former active copy fenced by a higher epoch elsewhere: it never
    /// takes another write; `tandem resync` makes it a replica.
    Diverged,
}

impl std::fmt::Display for VserverState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VserverState::Active => "active",
            VserverState::Failed => "failed",
            VserverState::Replica => "replica",
            VserverState::Diverged => "diverged",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VserverStatus {
    pub name: String,
    pub state: VserverState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// As text, "IP/PREFIX[@INTERFACE]".
    #[serde(with = "crate::config::address_text::list")]
    pub addresses: Vec<AddressSpec>,
    pub filesystems: Vec<FsStatus>,
    pub users: Vec<User>,
    pub last_lsn: Lsn,
    pub durable_lsn: Lsn,
    /// Addresses being served.
    pub endpoints: Vec<Endpoint>,
    /// Addresses that could not be served, and why.
    pub bind_failures: Vec<BindFailure>,
    /// Replication to or from another site, if any (boxed: large, and
    /// most vservers have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Box<crate::replication::ReplicationStatus>>,
    /// Room on the disk holding the store (none when it is not open here;
    /// boxed, like `replication`, to keep the reply small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<Box<SpaceStatus>>,
}

/// The disk under a vserver's store, as `tandem status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceStatus {
    /// `ok`, `low` (under `store.space_low_percent` free above the
    /// reserve: a warning) or `full` (writes refused, or data files
    /// waiting for room).
    pub state: tandem_store::space::SpaceState,
    pub total_bytes: u64,
    /// Free for the store now; writes stop when only `reserve_bytes` is
    /// left, which removals and truncations may still use.
    pub free_bytes: u64,
    pub reserve_bytes: u64,
    pub low_percent: u8,
    /// Why data files are not being written, while they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled: Option<String>,
    /// Why the figures could not be read, if they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SpaceStatus {
    pub fn of(store: &tandem_store::Store) -> SpaceStatus {
        match store.space() {
            Ok(r) => SpaceStatus {
                state: r.state,
                total_bytes: r.total_bytes,
                free_bytes: r.free_bytes,
                reserve_bytes: r.reserve_bytes,
                low_percent: r.low_percent,
                stalled: r.stalled,
                error: None,
            },
            Err(e) => SpaceStatus {
                state: tandem_store::space::SpaceState::Full,
                total_bytes: 0,
                free_bytes: 0,
                reserve_bytes: 0,
                low_percent: 0,
                stalled: None,
                error: Some(e.to_string()),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStatus {
    pub name: String,
    pub fsid: u64,
    /// The path clients mount.
    pub export: String,
    pub clients: Vec<ipnet::IpNet>,
    pub read_only: bool,
    pub root_squash: bool,
    pub anon_uid: u32,
    pub anon_gid: u32,
}

impl FsStatus {
    pub fn from_config(fs: &tandem_store::FsConfig) -> Self {
        FsStatus {
            name: fs.name.clone(),
            fsid: fs.fsid,
            export: fs.export.path.clone(),
            clients: fs.export.clients.clone(),
            read_only: fs.export.read_only,
            root_squash: fs.export.root_squash,
            anon_uid: fs.export.anon_uid,
            anon_gid: fs.export.anon_gid,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindFailure {
    pub address: String,
    pub error: String,
}
