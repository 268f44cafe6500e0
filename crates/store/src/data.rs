//! File contents: one sparse file per regular inode under `data/`, named by
//! inode number and spread over 256 subdirectories so no directory grows
//! past what ext4 handles well. The journal already holds every byte
//! written, so these files need fsync only at checkpoints.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Result, StoreError};
use crate::types::Ino;

pub struct DataFiles {
    root: PathBuf,
    max_open_files: usize,
    open: Mutex<HashMap<Ino, Arc<File>>>,
    /// Inodes written since the last checkpoint: fsynced before the next one.
    dirty: Mutex<HashSet<Ino>>,
    /// Tests only: a pretended full disk (space.rs).
    faults: Option<Arc<crate::space::SpaceFaults>>,
}

impl DataFiles {
    pub fn new(root: PathBuf, max_open_files: usize) -> Result<Self> {
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        Ok(DataFiles {
            root,
            max_open_files: max_open_files.max(1),
            open: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            faults: None,
        })
    }

    /// Writes fail as `faults` says (tests).
    pub fn with_faults(mut self, faults: Option<Arc<crate::space::SpaceFaults>>) -> Self {
        self.faults = faults;
        self
    }

    pub fn path_of(&self, ino: Ino) -> PathBuf {
        self.root
            .join(format!("{:02x}", ino & 0xff))
            .join(format!("{ino:016x}"))
    }

    fn cached(&self, ino: Ino) -> Option<Arc<File>> {
        self.open.lock().get(&ino).cloned()
    }

    fn remember(&self, ino: Ino, file: Arc<File>) {
        let mut open = self.open.lock();
        if open.len() >= self.max_open_files {
            // Dropping the whole cache is crude but bounded; files that are
            // in use stay open through their Arc.
            open.clear();
        }
        open.insert(ino, file);
    }

    /// Opens (creating when `create`) the data file of `ino`.
    fn handle(&self, ino: Ino, create: bool) -> Result<Option<Arc<File>>> {
        if let Some(f) = self.cached(ino) {
            return Ok(Some(f));
        }
        let path = self.path_of(ino);
        let opened = OpenOptions::new().read(true).write(true).open(&path);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
                }
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(|e| StoreError::io(&path, e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let file = Arc::new(file);
        self.remember(ino, file.clone());
        Ok(Some(file))
    }

    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.faults.as_ref().is_some_and(|f| f.data_write_fails()) {
            return Err(StoreError::io(
                self.path_of(ino),
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        let Some(file) = self.handle(ino, true)? else {
            return Err(StoreError::Corrupt(format!(
                "data file of inode {ino} vanished"
            )));
        };
        file.write_all_at(data, offset)
            .map_err(|e| StoreError::io(self.path_of(ino), e))?;
        self.dirty.lock().insert(ino);
        Ok(())
    }

    /// Reads up to `len` bytes at `offset`; holes and bytes past the data
    /// file's end (but inside `size`) read as zeros.
    pub fn read(&self, ino: Ino, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let Some(file) = self.handle(ino, false)? else {
            return Ok(buf);
        };
        let mut done = 0usize;
        while done < len {
            match file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(self.path_of(ino), e)),
            }
        }
        Ok(buf)
    }

    pub fn set_len(&self, ino: Ino, size: u64) -> Result<()> {
        let Some(file) = self.handle(ino, size > 0)? else {
            return Ok(());
        };
        file.set_len(size)
            .map_err(|e| StoreError::io(self.path_of(ino), e))?;
        self.dirty.lock().insert(ino);
        Ok(())
    }

    pub fn remove(&self, ino: Ino) -> Result<()> {
        self.open.lock().remove(&ino);
        self.dirty.lock().remove(&ino);
        let path = self.path_of(ino);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Bytes the data file really occupies (for FSSTAT and fsck).
    pub fn exists(&self, ino: Ino) -> bool {
        self.path_of(ino).exists()
    }

    /// Makes every write since the last call durable.
    pub fn sync_dirty(&self) -> Result<()> {
        let dirty: Vec<Ino> = self.dirty.lock().drain().collect();
        for ino in dirty {
            if let Some(file) = self.handle(ino, false)? {
                file.sync_data()
                    .map_err(|e| StoreError::io(self.path_of(ino), e))?;
            }
        }
        sync_dir(&self.root)
    }

    /// Every inode number that has a data file, for fsck.
    pub fn list(&self) -> Result<Vec<Ino>> {
        let mut out = Vec::new();
        let shards = match std::fs::read_dir(&self.root) {
            Ok(r) => r,
            Err(e) => return Err(StoreError::io(&self.root, e)),
        };
        for shard in shards {
            let shard = shard.map_err(|e| StoreError::io(&self.root, e))?;
            let shard_path = shard.path();
            let entries =
                std::fs::read_dir(&shard_path).map_err(|e| StoreError::io(&shard_path, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(&shard_path, e))?;
                if let Some(ino) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| u64::from_str_radix(n, 16).ok())
                {
                    out.push(ino);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// Makes a directory's entries durable (see [`crate::durable`]).
pub fn sync_dir(path: &Path) -> Result<()> {
    Ok(crate::durable::sync_dir(path)?)
}

/// Replaces `dir/name` with `bytes` so a crash leaves the old file or the
/// new one (see [`crate::durable`]).
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    Ok(crate::durable::replace_file(
        &dir.join(name),
        &[bytes],
        crate::durable::MODE_READABLE,
    )?)
}
