//! A temporary directory, removed when dropped. `tandem demo` is the one
//! user, and the demo is part of the server binary: these few lines keep
//! the `tempfile` crate out of that binary (everything else that uses a
//! temporary directory is a test or the bench, which may use `tempfile`).

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Names tried before giving up, each taken by someone else already.
const MAX_ATTEMPTS: u32 = 64;

#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// A new, empty directory `<prefix><pid>-<n>` in the system's temporary
    /// directory, open to its owner only. Never reuses a directory that
    /// exists: creating it is the test of its name.
    pub fn new(prefix: &str) -> io::Result<ScratchDir> {
        ScratchDir::new_in(&std::env::temp_dir(), prefix)
    }

    /// `new` in `parent`.
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<ScratchDir> {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for n in 0..MAX_ATTEMPTS {
            let name = format!("{prefix}{}-{}", std::process::id(), start.wrapping_add(n));
            let path = parent.join(name);
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{MAX_ATTEMPTS} names {prefix}* in {} are all taken",
                parent.display()
            ),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove a temporary directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn each_dir_is_new_private_and_gone_after_drop() {
        let parent = tempfile::tempdir().expect("tempdir");
        let a = ScratchDir::new_in(parent.path(), "t-").expect("a");
        let b = ScratchDir::new_in(parent.path(), "t-").expect("b");
        assert_ne!(a.path(), b.path());
        let mode = std::fs::metadata(a.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(a.path().join("f"), b"x").expect("write inside");
        let gone = a.path().to_path_buf();
        drop(a);
        assert!(!gone.exists());
        assert!(b.path().is_dir());
    }

    #[test]
    fn a_parent_that_is_missing_is_an_error() {
        let parent = tempfile::tempdir().expect("tempdir");
        let err = ScratchDir::new_in(&parent.path().join("missing"), "t-").expect_err("no parent");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
