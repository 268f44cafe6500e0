//! `tandem fsck`: an offline consistency check of one vserver's store.
//!
//! Offline because the check reads the store's files directly: with a
//! daemon writing them at the same time it would report changes in flight
//! as damage. The site lock guarantees no daemon has the store open while
//! the check runs (and keeps one from starting meanwhile).

use std::path::Path;

use crate::error::{ControlError, Result};
use crate::lock::SiteLock;
use crate::names::validate_name;
use crate::site::SitePaths;

pub use store_fsck::FsckReport;

/// Checks vserver `vserver` of the site in `site_dir`. Fails with
/// `DaemonRunning` while the site's daemon runs.
pub fn check_offline(site_dir: &Path, vserver: &str) -> Result<FsckReport> {
    validate_name("vserver name", vserver)?;
    let paths = SitePaths::new(site_dir);
    if !paths.site_toml().exists() {
        return Err(ControlError::NoSite(site_dir.to_path_buf()));
    }
    let _lock = SiteLock::acquire(site_dir, &paths.lock())?;
    let dir = paths.vserver(vserver);
    if !dir.is_dir() {
        return Err(ControlError::NoVserver(vserver.to_string()));
    }
    store_fsck::check(&dir).map_err(|e| ControlError::store(vserver, e))
}

/// Stand-in until `tandem_store::fsck` lands: a store that opens (which
/// verifies checksums and replays the journal) counts as consistent.
mod store_fsck {
    use std::path::Path;

    use tandem_store::{Store, StoreOptions};

    #[derive(Debug, Clone, Default)]
    pub struct FsckReport {
        pub problems: Vec<String>,
        pub records_checked: u64,
        pub inodes: u64,
    }

    impl std::fmt::Display for FsckReport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            writeln!(
                f,
                "{} journal records checked, {} inodes, {} problems",
                self.records_checked,
                self.inodes,
                self.problems.len()
            )?;
            for p in &self.problems {
                writeln!(f, "  {p}")?;
            }
            Ok(())
        }
    }

    pub fn check(dir: &Path) -> tandem_store::Result<FsckReport> {
        let store = Store::open(dir, StoreOptions::default())?;
        let records = store.last_lsn();
        store.close()?;
        Ok(FsckReport {
            records_checked: records,
            ..FsckReport::default()
        })
    }
}
