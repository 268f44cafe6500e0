//! The site lock: one process at a time owns a site's stores (the daemon,
//! or an offline `tandem fsck`). An advisory `flock` on DIR/daemon.lock is
//! released by the kernel when its holder dies, so a crash never leaves a
//! stale lock behind; the pid inside is only for messages.

use std::fs::{self, File, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{ControlError, Result};

/// Longest pid text we bother to read back.
const MAX_PID_BYTES: u64 = 32;

#[derive(Debug)]
pub struct SiteLock {
    // Held for its lock; the kernel drops the flock when the file closes.
    _file: File,
    path: PathBuf,
}

impl SiteLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(site_dir: &Path, lock_path: &Path) -> Result<SiteLock> {
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .map_err(|e| ControlError::io(lock_path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&mut file)
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default();
                return Err(ControlError::DaemonRunning {
                    dir: site_dir.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(ControlError::io(lock_path, e)),
        }
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| ControlError::io(lock_path, e))?;
        Ok(SiteLock {
            _file: file,
            path: lock_path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    Read::by_ref(file)
        .take(MAX_PID_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("daemon.lock");
        let first = SiteLock::acquire(tmp.path(), &path).unwrap();
        let err = SiteLock::acquire(tmp.path(), &path).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(SiteLock::acquire(tmp.path(), &path).is_ok());
    }
}
