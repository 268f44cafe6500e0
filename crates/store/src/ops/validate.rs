//! Checks of names and values that arrive from clients or operators.

use crate::config::MAX_VSERVER_NAME_BYTES;
use crate::error::{Result, StoreError};
use crate::types::MAX_NAME_BYTES;

/// A name to create, remove or rename: not empty, no '/', no NUL, not "."
/// or "..", at most `MAX_NAME_BYTES`.
pub fn entry_name(name: &[u8]) -> Result<()> {
    if name.len() > MAX_NAME_BYTES {
        return Err(StoreError::NameTooLong {
            max_bytes: MAX_NAME_BYTES,
        });
    }
    if name.is_empty() || name == b"." || name == b".." {
        return Err(StoreError::Inval(format!(
            "{:?} cannot name a new or removed entry",
            String::from_utf8_lossy(name)
        )));
    }
    if name.iter().any(|b| *b == b'/' || *b == 0) {
        return Err(StoreError::Inval("name contains '/' or NUL".into()));
    }
    Ok(())
}

/// Names of vservers and file systems: 1..=64 of [A-Za-z0-9_.-], the first
/// a letter, digit or '_' (they become directory names and command-line
/// words; control's `validate_name` is the same rule with finer messages).
pub fn vserver_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_VSERVER_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Inval(format!(
            "name {name:?} must be 1-{MAX_VSERVER_NAME_BYTES} characters of A-Z a-z 0-9 _ . - and start with a letter, digit or '_'"
        )))
    }
}
