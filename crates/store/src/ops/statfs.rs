use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

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
        let path = CString::new(self.dir.as_os_str().as_bytes())
            .map_err(|_| StoreError::Inval("store path contains NUL".into()))?;
        // SAFETY: statvfs writes into the zeroed struct we pass and reads
        // the NUL-terminated path; both outlive the call.
        let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut vfs) };
        if rc != 0 {
            return Err(StoreError::io(&self.dir, std::io::Error::last_os_error()));
        }
        let frsize = vfs.f_frsize as u64;
        Ok(FsStat {
            total_bytes: vfs.f_blocks as u64 * frsize,
            free_bytes: vfs.f_bfree as u64 * frsize,
            avail_bytes: vfs.f_bavail as u64 * frsize,
            total_files: MAX_INODES,
            free_files: MAX_INODES.saturating_sub(inodes),
        })
    }
}
