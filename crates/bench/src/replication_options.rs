//! Sizes, rates and addresses of `tandem bench replication`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::BenchError;

/// Size of every client WRITE (the "1 MiB UNSTABLE writes").
pub const WRITE_BYTES: usize = 1 << 20;
/// Largest steady-lag duration per rate.
pub const MAX_PHASE: Duration = Duration::from_secs(600);
/// Most rates in one run.
pub const MAX_RATES: usize = 16;
/// Most files in the catch-up tree and in the mixed change set.
pub const MAX_TREE_FILES: u64 = 100_000;
/// Largest tree the catch-up row builds (it exists four times on disk:
/// both sites, rsync's source and rsync's destination).
pub const MAX_TREE_BYTES: u64 = 64 << 30;
/// Most WRITEs in flight during the steady-lag rows.
pub const MAX_WRITERS: usize = 64;

/// One steady-lag row: a paced rate, or as fast as the writers go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    MegabytesPerSecond(f64),
    Max,
}

impl Rate {
    pub fn label(self) -> String {
        match self {
            Rate::MegabytesPerSecond(r) => format!("{r} MB/s"),
            Rate::Max => "max".into(),
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 && r <= 100_000.0 => Ok(Rate::MegabytesPerSecond(r)),
            _ => Err(BenchError::Config(format!(
                "rate {s:?}: expected MB/s in (0, 100000] or \"max\""
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReplOptions {
    /// Parent of all data (both sites, rsync's trees); `None`: a fresh
    /// temporary directory under /var/tmp, removed at the end.
    pub dir: Option<PathBuf>,
    /// Keep the data afterwards.
    pub keep: bool,
    /// Steady-lag rows, in order.
    pub rates: Vec<Rate>,
    /// How long each steady-lag row writes.
    pub phase: Duration,
    /// The steady-lag file: writes wrap around inside it, so disk use
    /// stays bounded whatever the rate.
    pub lag_file_bytes: u64,
    /// A COMMIT after this many bytes of WRITEs.
    pub commit_every_bytes: u64,
    /// WRITEs in flight (one NFS connection each).
    pub writers: usize,
    /// How often the active site's status is sampled (acknowledged LSN,
    /// lag_ms): the resolution of the per-write lag.
    pub sample_every: Duration,
    /// Mixed change set (wire bytes per changed byte): files written
    /// first, and their total size.
    pub mixed_files: u64,
    pub mixed_bytes: u64,
    /// Catch-up row: the initial tree both sides hold.
    pub tree_files: u64,
    pub tree_bytes: u64,
    /// Fraction of the tree's bytes overwritten in place by the change set.
    pub tree_change_fraction: f64,
    /// New files the change set adds (together `tree_change_fraction / 2`
    /// of the tree's bytes).
    pub tree_new_files: u64,
    /// Run the rsync comparison (needs Debian's rsync).
    pub rsync: bool,
    pub rsync_binary: PathBuf,
    /// Longest wait for the replica to converge after any phase.
    pub converge_timeout: Duration,
    /// NFS address of the active site's vserver, and the replica's
    /// read-only copy; each site's peer listener is on the same address.
    pub active_ip: IpAddr,
    pub replica_ip: IpAddr,
    pub seed: u64,
}

impl Default for ReplOptions {
    fn default() -> Self {
        ReplOptions {
            dir: None,
            keep: false,
            rates: vec![
                Rate::MegabytesPerSecond(25.0),
                Rate::MegabytesPerSecond(50.0),
                Rate::MegabytesPerSecond(100.0),
                Rate::Max,
            ],
            phase: Duration::from_secs(10),
            lag_file_bytes: 256 << 20,
            commit_every_bytes: 16 << 20,
            writers: 4,
            sample_every: Duration::from_millis(5),
            mixed_files: 64,
            mixed_bytes: 128 << 20,
            tree_files: 200,
            tree_bytes: 512 << 20,
            tree_change_fraction: 0.05,
            tree_new_files: 4,
            rsync: true,
            rsync_binary: PathBuf::from("/usr/bin/rsync"),
            converge_timeout: Duration::from_secs(300),
            active_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 41)),
            replica_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 42)),
            seed: 0x7265_706c,
        }
    }
}

impl ReplOptions {
    /// About a minute: shorter rows, smaller trees.
    pub fn quick() -> Self {
        ReplOptions {
            phase: Duration::from_secs(4),
            lag_file_bytes: 64 << 20,
            mixed_files: 16,
            mixed_bytes: 32 << 20,
            tree_files: 50,
            tree_bytes: 64 << 20,
            ..ReplOptions::default()
        }
    }

    /// Checks every number against its limit before anything starts.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |msg: String| Err(BenchError::Config(msg));
        if self.rates.is_empty() || self.rates.len() > MAX_RATES {
            return bad(format!("1..={MAX_RATES} rates, got {}", self.rates.len()));
        }
        if self.phase.is_zero() || self.phase > MAX_PHASE {
            return bad(format!("phase must be in (0, {MAX_PHASE:?}]"));
        }
        if self.lag_file_bytes < WRITE_BYTES as u64 || self.lag_file_bytes > MAX_TREE_BYTES {
            return bad(format!(
                "lag_file_bytes must be in {WRITE_BYTES}..={MAX_TREE_BYTES}"
            ));
        }
        if self.commit_every_bytes < WRITE_BYTES as u64 {
            return bad(format!("commit_every_bytes must be >= {WRITE_BYTES}"));
        }
        if self.writers == 0 || self.writers > MAX_WRITERS {
            return bad(format!("writers must be 1..={MAX_WRITERS}"));
        }
        if self.sample_every < Duration::from_millis(1) || self.sample_every > self.phase {
            return bad("sample_every must be in [1 ms, phase]".into());
        }
        // The mixed change set touches 8 files besides the half it
        // overwrites.
        for (what, files, bytes, min_files) in [
            ("mixed", self.mixed_files, self.mixed_bytes, 16),
            ("tree", self.tree_files, self.tree_bytes, 1),
        ] {
            if files < min_files || files > MAX_TREE_FILES {
                return bad(format!(
                    "{what}_files must be {min_files}..={MAX_TREE_FILES}"
                ));
            }
            if bytes < files * 4096 || bytes > MAX_TREE_BYTES {
                return bad(format!(
                    "{what}_bytes must be in 4 KiB per file..={MAX_TREE_BYTES}"
                ));
            }
        }
        if !(self.tree_change_fraction > 0.0 && self.tree_change_fraction <= 0.5) {
            return bad("tree_change_fraction must be in (0, 0.5]".into());
        }
        if self.tree_new_files == 0 || self.tree_new_files > self.tree_files {
            return bad("tree_new_files must be 1..=tree_files".into());
        }
        if self.converge_timeout.is_zero() {
            return bad("converge_timeout must be positive".into());
        }
        if self.active_ip == self.replica_ip {
            return bad("active_ip and replica_ip must differ".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        ReplOptions::default().validate().expect("default");
        ReplOptions::quick().validate().expect("quick");
    }

    #[test]
    fn bad_values_are_refused() {
        for o in [
            ReplOptions {
                rates: vec![],
                ..ReplOptions::quick()
            },
            ReplOptions {
                writers: 0,
                ..ReplOptions::quick()
            },
            ReplOptions {
                tree_change_fraction: 0.0,
                ..ReplOptions::quick()
            },
            ReplOptions {
                replica_ip: ReplOptions::quick().active_ip,
                ..ReplOptions::quick()
            },
            ReplOptions {
                mixed_bytes: 1,
                ..ReplOptions::quick()
            },
            ReplOptions {
                mixed_files: 15,
                ..ReplOptions::quick()
            },
        ] {
            assert!(o.validate().is_err(), "{o:?}");
        }
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert_eq!("MAX".parse::<Rate>().expect("max"), Rate::Max);
        assert_eq!(
            "100".parse::<Rate>().expect("100"),
            Rate::MegabytesPerSecond(100.0)
        );
    }
}
