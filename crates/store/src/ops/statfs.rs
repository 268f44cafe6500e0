use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::types::{FsStat, Fsid};

/// Inodes a vserver may hold; reported as the file-count limit.
pub const MAX_INODES: u64 = 1 << 32;

impl Store {
    /// Space is the space of the disk holding the store: file systems of a
    /// vserver share it.
    pub fn fsstat(&self, fsid: Fsid) -> Result<FsStat> {
        let inodes = {
            let st = self.read_state();
            st.config.fs_by_fsid(fsid).ok_or(StoreError::Stale)?;
            st.inodes.len() as u64
        };
        let disk = self.space.disk()?;
        // What clients may still write: the reserve is kept for removals,
        // and what the store accepted but has not written is taken.
        let kept = self.space.reserve_bytes() + self.outstanding_bytes();
        Ok(FsStat {
            total_bytes: disk.total_bytes,
            free_bytes: disk.free_bytes.saturating_sub(kept),
            avail_bytes: disk.avail_bytes.saturating_sub(kept),
            total_files: MAX_INODES,
            free_files: MAX_INODES.saturating_sub(inodes),
        })
    }
}
