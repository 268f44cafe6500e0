//! `tandem fsck`: an offline consistency check of one vserver's store.
//!
//! Offline because the check reads the store's files directly: with a
//! daemon writing them at the same time it would report changes in flight
//! as damage. The site lock guarantees no daemon has the store open while
//! the check runs (and keeps one from starting meanwhile).

use std::path::Path;

use crate::config::lock::SiteLock;
use crate::config::names::validate_name;
use crate::config::site::SitePaths;
use crate::error::{ControlError, Result};

pub use tandem_store::fsck::FsckReport;

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
    tandem_store::fsck::check(&dir).map_err(|e| ControlError::store(vserver, e))
}
