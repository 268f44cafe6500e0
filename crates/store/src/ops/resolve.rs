use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::types::{Attr, Fsid, Handle, Ino};

impl Store {
    /// Handle -> attributes, checking fsid and generation: a handle to a
    /// removed inode, or from another file system, is stale.
    pub fn resolve(&self, handle: &Handle) -> Result<Attr> {
        let st = self.read_state();
        let inode = st.inodes.get(&handle.ino).ok_or(StoreError::Stale)?;
        if inode.attr.fsid != handle.fsid || inode.attr.generation != handle.generation {
            return Err(StoreError::Stale);
        }
        Ok(inode.attr.clone())
    }

    pub fn root_handle(&self, fsid: Fsid) -> Result<Handle> {
        let st = self.read_state();
        let fs = st.config.fs_by_fsid(fsid).ok_or(StoreError::Stale)?;
        let root = st.inode(fs.root_ino)?;
        Ok(Handle {
            fsid,
            ino: fs.root_ino,
            generation: root.attr.generation,
        })
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        Ok(self.read_state().inode(ino)?.attr.clone())
    }
}

impl Store {
    /// The file system with this fsid: a cheap lookup for every NFS call
    /// (unlike `config()`, it does not copy the user map).
    pub fn fs_by_fsid(&self, fsid: Fsid) -> Option<crate::config::FsConfig> {
        self.read_state().config.fs_by_fsid(fsid).cloned()
    }

    /// The file system exported at `path` ("/data" and "/data/" alike).
    pub fn fs_by_export_path(&self, path: &str) -> Option<crate::config::FsConfig> {
        self.read_state().config.fs_by_export_path(path).cloned()
    }
}
