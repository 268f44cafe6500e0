//! A virtual server's configuration: addresses, file systems and their
//! exports, the user map. It lives in the store and changes only through
//! journal records, so it replicates with the data.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::types::{Fsid, Ino};

pub const MAX_VSERVER_NAME_BYTES: usize = 64;
pub const MAX_ADDRESSES: usize = 16;
pub const MAX_FILESYSTEMS: usize = 64;
pub const MAX_USERS: usize = 100_000;
pub const MAX_CLIENT_RULES: usize = 64;
pub const MAX_EXPORT_PATH_BYTES: usize = 1024;
pub const MAX_GROUPS_PER_USER: usize = 16;
/// Default anonymous id ("nobody").
pub const NOBODY: u32 = 65534;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressSpec {
    pub ip: IpAddr,
    pub prefix: u8,
    /// Interface the address belongs on; `None` means "already present on
    /// this host" (e.g. loopback addresses).
    pub interface: Option<String>,
}

impl std::fmt::Display for AddressSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)?;
        if let Some(i) = &self.interface {
            write!(f, "@{i}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// Path clients mount, e.g. "/data".
    pub path: String,
    /// Client networks allowed; empty means everyone.
    pub clients: Vec<ipnet::IpNet>,
    pub read_only: bool,
    pub root_squash: bool,
    pub anon_uid: u32,
    pub anon_gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsConfig {
    pub name: String,
    pub fsid: Fsid,
    pub root_ino: Ino,
    pub export: Export,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VserverConfig {
    pub name: String,
    pub addresses: Vec<AddressSpec>,
    /// Keyed by file-system name.
    pub filesystems: BTreeMap<String, FsConfig>,
    /// Keyed by user name.
    pub users: BTreeMap<String, User>,
}

impl VserverConfig {
    pub fn fs_by_export_path(&self, path: &str) -> Option<&FsConfig> {
        let wanted = normalize_export_path(path);
        self.filesystems
            .values()
            .find(|fs| normalize_export_path(&fs.export.path) == wanted)
    }

    pub fn fs_by_fsid(&self, fsid: Fsid) -> Option<&FsConfig> {
        self.filesystems.values().find(|fs| fs.fsid == fsid)
    }
}

/// "/data/" and "/data" name the same export.
pub fn normalize_export_path(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}
