use std::ops::Bound;

use crate::error::Result;
use crate::perm::{require, MAY_READ};
use crate::state::FIRST_COOKIE;
use crate::store::Store;
use crate::types::{Cred, DirEntry, Ino, ReadDir};

/// Most entries returned by one call, whatever the caller asks.
pub const MAX_READDIR_ENTRIES: usize = 4096;

impl Store {
    /// Entries after `cookie` (0 = from the start), at most `max_entries`.
    /// Cookies are stable: an entry keeps its cookie until removed, and a
    /// cookie of a removed entry still resumes where it was.
    pub fn readdir(
        &self,
        cred: &Cred,
        dir: Ino,
        cookie: u64,
        max_entries: usize,
    ) -> Result<ReadDir> {
        let st = self.read_state();
        let d = st.dir(dir)?;
        let dir_attr = st.inode(dir)?.attr.clone();
        require(cred, &dir_attr, MAY_READ)?;
        let start = if cookie < FIRST_COOKIE {
            Bound::Unbounded
        } else {
            Bound::Excluded(cookie)
        };
        let limit = max_entries.clamp(1, MAX_READDIR_ENTRIES);
        let mut entries = Vec::new();
        let mut range = d.by_cookie.range((start, Bound::Unbounded));
        for (cookie, name) in range.by_ref().take(limit) {
            let Some(slot) = d.entries.get(name) else {
                continue;
            };
            entries.push(DirEntry {
                cookie: *cookie,
                name: name.clone(),
                attr: st.inode(slot.ino)?.attr.clone(),
            });
        }
        let eof = range.next().is_none();
        Ok(ReadDir {
            entries,
            eof,
            dir_attr,
        })
    }
}
