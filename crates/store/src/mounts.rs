//! The MOUNT list (what DUMP reports), kept in the state so it travels in
//! the journal: after a failover the DR site lists the clients that had
//! mounted at the old active site. Advisory only (clients do not always
//! UMNT), so it is bounded and the oldest entry makes way, the same one at
//! every site because it changes only by applying records.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::record::Op;
use crate::store::Store;
use crate::types::Lsn;

pub const MAX_MOUNT_ENTRIES: usize = 4096;
/// Longest host name or export path a mount entry keeps (MNTNAMLEN and
/// MNTPATHLEN of RFC 1813).
pub const MAX_MOUNT_HOST_BYTES: usize = 255;
pub const MAX_MOUNT_PATH_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MountList {
    /// (client host, export path), oldest first.
    entries: VecDeque<(String, String)>,
}

impl MountList {
    pub fn contains(&self, host: &str, path: &str) -> bool {
        self.entries.iter().any(|(h, p)| h == host && p == path)
    }

    fn has_host(&self, host: &str) -> bool {
        self.entries.iter().any(|(h, _)| h == host)
    }

    pub(crate) fn add(&mut self, host: &str, path: &str) {
        if self.contains(host, path) {
            return;
        }
        if self.entries.len() >= MAX_MOUNT_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back((host.to_owned(), path.to_owned()));
    }

    /// Forgets `host`'s mount of `path`, or all of its mounts for `None`.
    pub(crate) fn remove(&mut self, host: &str, path: Option<&str>) {
        self.entries
            .retain(|(h, p)| !(h == host && path.is_none_or(|path| p == path)));
    }

    pub fn entries(&self) -> impl Iterator<Item = &(String, String)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Store {
    /// Journals that `host` mounted `path`; `None` if it was listed already
    /// (nothing written). Fails, writing nothing, where the store takes no
    /// changes (a replica, a fenced copy).
    pub fn mount_added(&self, host: &str, path: &str) -> Result<Option<Lsn>> {
        if host.len() > MAX_MOUNT_HOST_BYTES {
            return Err(StoreError::NameTooLong {
                max_bytes: MAX_MOUNT_HOST_BYTES,
            });
        }
        if path.len() > MAX_MOUNT_PATH_BYTES {
            return Err(StoreError::NameTooLong {
                max_bytes: MAX_MOUNT_PATH_BYTES,
            });
        }
        let mut st = self.write_state();
        if st.mounts.contains(host, path) {
            return Ok(None);
        }
        let op = Op::MountAdded {
            host: host.to_owned(),
            path: path.to_owned(),
        };
        self.commit(&mut st, None, op).map(Some)
    }

    /// Journals that `host` unmounted `path` (UMNT), or everything (UMNTALL,
    /// `None`); `None` back if nothing of it was listed.
    pub fn mount_removed(&self, host: &str, path: Option<&str>) -> Result<Option<Lsn>> {
        let mut st = self.write_state();
        let listed = match path {
            Some(path) => st.mounts.contains(host, path),
            None => st.mounts.has_host(host),
        };
        if !listed {
            return Ok(None);
        }
        let op = Op::MountRemoved {
            host: host.to_owned(),
            path: path.map(str::to_owned),
        };
        self.commit(&mut st, None, op).map(Some)
    }

    /// The mount list, oldest first.
    pub fn mounts(&self) -> Vec<(String, String)> {
        self.read_state().mounts.entries().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_deduplicated() {
        let mut t = MountList::default();
        for i in 0..MAX_MOUNT_ENTRIES + 10 {
            t.add(&format!("h{i}"), "/d");
        }
        t.add("h20", "/d");
        assert_eq!(t.len(), MAX_MOUNT_ENTRIES);
        assert!(!t.contains("h0", "/d"), "the oldest made way");
        t.remove("h20", None);
        assert_eq!(t.len(), MAX_MOUNT_ENTRIES - 1);
        t.add("h20", "/e");
        t.add("h20", "/f");
        t.remove("h20", Some("/e"));
        assert!(t.contains("h20", "/f") && !t.contains("h20", "/e"));
    }
}
