//! What to run, how big, and where the servers listen.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::error::BenchError;

/// Largest READ/WRITE size the workload asks for (NFS servers cap at 1 MiB
/// in practice; FSINFO's rtmax/wtmax lower it further if needed).
pub const MAX_IO_BYTES: u32 = 1 << 20;
/// Most requests kept in flight (one connection each).
pub const MAX_IN_FLIGHT: usize = 256;
/// Most repetitions of each row.
pub const MAX_REPEATS: u32 = 100;
/// Largest directory the READDIRPLUS row builds.
pub const MAX_FILES: u64 = 10_000_000;

/// The NFS servers the bench knows how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// Tandem's NFS service, started in-process on its own runtime.
    Tandem,
    /// NFS-Ganesha (FSAL VFS), a separate process.
    Ganesha,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Tandem => "Tandem",
            ServerKind::Ganesha => "Ganesha",
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServerKind {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tandem" => Ok(ServerKind::Tandem),
            "ganesha" => Ok(ServerKind::Ganesha),
            other => Err(BenchError::Config(format!(
                "unknown server {other:?}: expected \"tandem\" or \"ganesha\""
            ))),
        }
    }
}

/// Everything one bench run needs. `Default` is the full workload of the
/// issue (1 GiB, 10,000 files); [`BenchOptions::quick`] is a smoke-test size.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOptions {
    /// Parent directory for both servers' data (Tandem's store and
    /// Ganesha's export), so both use the same disk. `None`: a fresh
    /// temporary directory under `/var/tmp`, removed at the end.
    pub dir: Option<PathBuf>,
    /// Keep each server's data directory after the run (for inspection).
    pub keep: bool,
    /// Servers to run, in this order, one after the other.
    pub servers: Vec<ServerKind>,
    /// Times each row is measured per server; the report gives the median.
    /// Servers alternate within each row (A B, B A, A B, ...) so that
    /// changing background load hits both alike.
    pub repeats: u32,
    /// One untimed run of each write row per server before the timed
    /// ones, so no timed run pays for first writes to never-used blocks.
    pub warmup: bool,
    /// Requests kept in flight; `nfs3_client` has one outstanding call per
    /// connection, so this is also the number of TCP connections.
    pub in_flight: usize,
    /// Size of the sequentially written, then read, file.
    pub seq_bytes: u64,
    /// READ/WRITE size of the sequential rows.
    pub seq_io_bytes: u32,
    /// Size of the file the random writes land in.
    pub random_file_bytes: u64,
    /// Number of random writes.
    pub random_writes: u64,
    /// Size (and alignment) of each random write.
    pub random_io_bytes: u32,
    /// Files created, chmod'ed and removed.
    pub meta_files: u64,
    /// Entries in the directory READDIRPLUS lists.
    pub readdir_entries: u64,
    /// Full listings of that directory.
    pub readdir_rounds: u32,
    /// READDIRPLUS `dircount` and `maxcount`.
    pub readdir_dircount: u32,
    pub readdir_maxcount: u32,
    /// Seed of the random offsets and of the data pattern.
    pub seed: u64,
    /// Address Tandem's vserver listens on.
    pub tandem_address: IpAddr,
    /// Tandem's NFS and MOUNT ports; 0 picks a free port.
    pub tandem_nfs_port: u16,
    pub tandem_mount_port: u16,
    /// The Ganesha daemon.
    pub ganesha_binary: PathBuf,
    /// Address Ganesha binds (`Bind_addr`).
    pub ganesha_address: IpAddr,
    /// Ganesha's NFS and MOUNT ports; 0 picks a free port.
    pub ganesha_nfs_port: u16,
    pub ganesha_mount_port: u16,
    /// How long Ganesha may take to accept connections.
    pub ganesha_start_timeout: Duration,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            dir: None,
            keep: false,
            servers: vec![ServerKind::Ganesha, ServerKind::Tandem],
            repeats: 3,
            warmup: true,
            in_flight: 8,
            seq_bytes: 1 << 30,
            seq_io_bytes: 1 << 20,
            random_file_bytes: 256 << 20,
            random_writes: 20_000,
            random_io_bytes: 4096,
            meta_files: 10_000,
            readdir_entries: 10_000,
            readdir_rounds: 10,
            readdir_dircount: 32 << 10,
            readdir_maxcount: 128 << 10,
            seed: 0x7a4d_656d,
            tandem_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tandem_nfs_port: 0,
            tandem_mount_port: 0,
            ganesha_binary: PathBuf::from("/usr/bin/ganesha.nfsd"),
            ganesha_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ganesha_nfs_port: 0,
            ganesha_mount_port: 0,
            ganesha_start_timeout: Duration::from_secs(30),
        }
    }
}

impl BenchOptions {
    /// A small preset for smoke tests: 64 MiB, 1,000 files, a few seconds
    /// per server.
    pub fn quick() -> Self {
        BenchOptions {
            seq_bytes: 64 << 20,
            random_file_bytes: 64 << 20,
            random_writes: 2_000,
            meta_files: 1_000,
            readdir_entries: 1_000,
            readdir_rounds: 3,
            repeats: 1,
            warmup: false,
            ..BenchOptions::default()
        }
    }

    /// Checks every number against its limit before anything starts.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |msg: String| Err(BenchError::Config(msg));
        if self.servers.is_empty() {
            return bad("no server to run".into());
        }
        for (i, s) in self.servers.iter().enumerate() {
            if self.servers[..i].contains(s) {
                return bad(format!("server {s} listed twice"));
            }
        }
        if self.repeats == 0 || self.repeats > MAX_REPEATS {
            return bad(format!(
                "repeats must be 1..={MAX_REPEATS}, got {}",
                self.repeats
            ));
        }
        if self.in_flight == 0 || self.in_flight > MAX_IN_FLIGHT {
            return bad(format!(
                "in_flight must be 1..={MAX_IN_FLIGHT}, got {}",
                self.in_flight
            ));
        }
        for (what, v) in [
            ("seq_io_bytes", self.seq_io_bytes),
            ("random_io_bytes", self.random_io_bytes),
        ] {
            if v == 0 || v > MAX_IO_BYTES || v & 3 != 0 {
                return bad(format!(
                    "{what} must be a multiple of 4 in 4..={MAX_IO_BYTES}, got {v}"
                ));
            }
        }
        if self.seq_bytes == 0 {
            return bad("seq_bytes must be positive".into());
        }
        if self.random_file_bytes < u64::from(self.random_io_bytes) {
            return bad(format!(
                "random_file_bytes ({}) is smaller than one random write ({})",
                self.random_file_bytes, self.random_io_bytes
            ));
        }
        for (what, v) in [
            ("meta_files", self.meta_files),
            ("readdir_entries", self.readdir_entries),
            ("random_writes", self.random_writes),
        ] {
            if v > MAX_FILES {
                return bad(format!("{what} must be at most {MAX_FILES}, got {v}"));
            }
        }
        if self.readdir_dircount < 512 || self.readdir_maxcount < 1024 {
            return bad(format!(
                "readdir_dircount must be >= 512 and readdir_maxcount >= 1024, got {} and {}",
                self.readdir_dircount, self.readdir_maxcount
            ));
        }
        if self.ganesha_start_timeout.is_zero() {
            return bad("ganesha_start_timeout must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        BenchOptions::default().validate().expect("default");
        BenchOptions::quick().validate().expect("quick");
    }

    #[test]
    fn bad_values_are_refused() {
        let o = BenchOptions {
            in_flight: 0,
            ..BenchOptions::quick()
        };
        assert!(o.validate().is_err());
        let o = BenchOptions {
            seq_io_bytes: 3,
            ..BenchOptions::quick()
        };
        assert!(o.validate().is_err());
        let o = BenchOptions {
            servers: vec![ServerKind::Tandem, ServerKind::Tandem],
            ..BenchOptions::quick()
        };
        assert!(o.validate().is_err());
        assert!("nfsd".parse::<ServerKind>().is_err());
        assert_eq!(
            "Ganesha".parse::<ServerKind>().expect("parse"),
            ServerKind::Ganesha
        );
    }
}
