//! Where the workload connects: one server's address, ports and export.

use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Target {
    /// Server name used in errors and the report.
    pub server: &'static str,
    pub ip: IpAddr,
    pub nfs_port: u16,
    pub mount_port: u16,
    /// The path given to MOUNT.
    pub export: String,
}
