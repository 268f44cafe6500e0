//! The site's TOML files (site.toml, peers.toml, replication.toml) are all
//! written the same way: a header comment, then the value, into a
//! temporary file (mode 0600) that is synced and renamed over the old one,
//! then the directory is synced. A crash leaves the old file or the new
//! one, never half of either.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

use crate::error::{ControlError, Result};

pub fn write_atomically(path: &Path, header: &str, value: &impl Serialize) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = toml::to_string_pretty(value)
        .map_err(|e| ControlError::Internal(format!("serializing {name}: {e}")))?;
    let tmp = path.with_extension("toml.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ControlError::io(&tmp, e))?;
    f.write_all(header.as_bytes())
        .and_then(|_| f.write_all(text.as_bytes()))
        .and_then(|_| f.sync_all())
        .map_err(|e| ControlError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ControlError::io(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ControlError::io(dir, e))
}
