//! The site's TOML files (site.toml, peers.toml, replication.toml, failover
//! marks) are all written the same way: a header comment, then the value,
//! replaced durably and privately (mode 0600) by
//! `tandem_store::durable::replace_file`, so a crash leaves the old file or
//! the new one, never half of either.

use std::path::Path;

use serde::Serialize;
use tandem_store::durable;

use crate::error::{ControlError, Result};

pub fn write_atomically(path: &Path, header: &str, value: &impl Serialize) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = toml::to_string_pretty(value)
        .map_err(|e| ControlError::Internal(format!("serializing {name}: {e}")))?;
    let parts = [header.as_bytes(), text.as_bytes()];
    Ok(durable::replace_file(path, &parts, durable::MODE_PRIVATE)?)
}
