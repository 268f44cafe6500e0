//! Durable file replacement for every small file Tandem keeps beside its
//! data (checkpoint, marks, epochs, the site's TOML files): the bytes go to
//! `<name>.tmp`, which is synced and renamed over `<name>`, then the
//! directory is synced. A crash leaves the old file or the new one, never
//! half of either, and once this returns the new one survives power loss.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode of a file anyone may read, as `File::create` makes it (the umask
/// decides the rest).
pub const MODE_READABLE: u32 = 0o666;
/// Mode of a file only its owner may read or write.
pub const MODE_PRIVATE: u32 = 0o600;

/// What failed, on which path (the temporary file, the file or its
/// directory), so each crate can wrap it in its own error.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct DurableError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> DurableError + '_ {
    move |source| DurableError {
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces `path` with the concatenation of `parts`. A new file gets
/// `mode` (before the umask), so a private file is never readable by others,
/// not even while it is being written.
pub fn replace_file(path: &Path, parts: &[&[u8]], mode: u32) -> Result<(), DurableError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(at(&tmp))?;
    let written = parts
        .iter()
        .try_for_each(|part| f.write_all(part))
        .and_then(|_| f.sync_all());
    if let Err(e) = written {
        // A half-written temporary only takes room (a full disk fails here).
        let _ = std::fs::remove_file(&tmp);
        return Err(at(&tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(at(path))?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Makes the directory's entries (a file created, renamed or removed)
/// survive power loss.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mark");
        std::fs::write(&path, b"an older and longer content").unwrap();
        replace_file(&path, &[b"new ", b"one"], 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new one");
        assert!(!tmp.path().join("mark.tmp").exists());
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_new_file_gets_the_mode_asked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("site.toml");
        replace_file(&path, &[b"x"], 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_directory_names_the_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("absent").join("f");
        let err = replace_file(&path, &[b"x"], 0o644).unwrap_err();
        assert_eq!(err.path, tmp.path().join("absent").join("f.tmp"));
        assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
    }
}
