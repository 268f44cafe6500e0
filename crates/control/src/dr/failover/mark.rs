//! The FAILOVER mark: `<data>/failover/<vserver>.toml`, written before the
//! first change a failover makes and removed after its last, so a crash in
//! between leaves the vserver reserved (no replication session is taken
//! for it) and a rerun of `tandem failover` continues from the step the
//! mark names with the epoch it names. Written like every site file
//! (toml_file.rs): a crash leaves the old mark or the new one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::toml_file::write_atomically;
use crate::error::{ControlError, Result};
use tandem_store::durable;

/// Directory of the marks, under the site's data directory.
pub const FAILOVER_DIR: &str = "failover";
/// Longest mark read (a few short fields).
const MAX_MARK_BYTES: u64 = 64 << 10;
const HEADER: &str = "# Written by `tandem failover`; a rerun continues from `step`.\n";

/// The last step a failover finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Resources reserved; the store is still a replica.
    Reserved,
    /// The store is active at `epoch`; the addresses may not be served yet.
    Promoted,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Reserved => "reserved",
            Step::Promoted => "promoted",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    pub vserver: String,
    /// The epoch the vserver is promoted to (its replica's epoch + 1).
    pub epoch: u64,
    pub step: Step,
    /// Whether the operator forced it past missing resources.
    pub forced: bool,
}

pub fn mark_path(root: &Path, vserver: &str) -> PathBuf {
    root.join(FAILOVER_DIR).join(format!("{vserver}.toml"))
}

/// The mark of `vserver`, if a failover of it is under way here.
pub fn load(root: &Path, vserver: &str) -> Result<Option<Mark>> {
    let path = mark_path(root, vserver);
    let text = match std::fs::metadata(&path) {
        Ok(m) if m.len() > MAX_MARK_BYTES => {
            return Err(ControlError::invalid(
                "failover mark",
                format!("{} is over {MAX_MARK_BYTES} bytes", path.display()),
            ))
        }
        Ok(_) => std::fs::read_to_string(&path).map_err(|e| ControlError::io(&path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ControlError::io(&path, e)),
    };
    let mark: Mark = toml::from_str(&text)
        .map_err(|e| ControlError::invalid("failover mark", format!("{}: {e}", path.display())))?;
    if mark.vserver != vserver {
        return Err(ControlError::invalid(
            "failover mark",
            format!("{} names vserver {}", path.display(), mark.vserver),
        ));
    }
    Ok(Some(mark))
}

/// Writes the mark durably (the directory is created and synced first).
pub fn save(root: &Path, mark: &Mark) -> Result<()> {
    let dir = root.join(FAILOVER_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| ControlError::io(&dir, e))?;
    durable::sync_dir(root)?;
    write_atomically(&mark_path(root, &mark.vserver), HEADER, mark)
}

/// Removes the mark durably: the failover is finished.
pub fn remove(root: &Path, vserver: &str) -> Result<()> {
    let path = mark_path(root, vserver);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ControlError::io(&path, e)),
    }
    let dir = root.join(FAILOVER_DIR);
    Ok(durable::sync_dir(&dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_round_trips_and_bad_marks_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert_eq!(load(root, "vs").unwrap(), None);
        let mark = Mark {
            vserver: "vs".into(),
            epoch: 2,
            step: Step::Reserved,
            forced: false,
        };
        save(root, &mark).unwrap();
        assert_eq!(load(root, "vs").unwrap(), Some(mark.clone()));
        let text = std::fs::read_to_string(mark_path(root, "vs")).unwrap();
        assert!(text.contains("step = \"reserved\""), "{text}");

        std::fs::write(mark_path(root, "vs"), text.replace("\"vs\"", "\"other\"")).unwrap();
        assert!(load(root, "vs").is_err(), "a mark naming another vserver");
        std::fs::write(mark_path(root, "vs"), "step = \"flying\"\n").unwrap();
        assert!(load(root, "vs").is_err(), "an unknown step");
        std::fs::write(mark_path(root, "vs"), vec![b'#'; 70 << 10]).unwrap();
        assert!(load(root, "vs").is_err(), "an oversized mark");

        remove(root, "vs").unwrap();
        remove(root, "vs").unwrap();
        assert_eq!(load(root, "vs").unwrap(), None);
    }
}
