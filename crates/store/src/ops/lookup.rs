use crate::error::{Result, StoreError};
use crate::perm::{require, MAY_EXEC};
use crate::store::Store;
use crate::types::{Attr, Cred, Ino, MAX_NAME_BYTES};

impl Store {
    /// The child's attributes. "." and ".." are understood; ".." of a file
    /// system's root is the root itself.
    pub fn lookup(&self, cred: &Cred, dir: Ino, name: &[u8]) -> Result<Attr> {
        if name.len() > MAX_NAME_BYTES {
            return Err(StoreError::NameTooLong {
                max_bytes: MAX_NAME_BYTES,
            });
        }
        let st = self.read_state();
        let d = st.dir(dir)?;
        let dir_attr = &st.inode(dir)?.attr;
        require(cred, dir_attr, MAY_EXEC)?;
        let child = match name {
            b"" => return Err(StoreError::NoEnt),
            b"." => dir,
            b".." => d.parent,
            _ => d.entries.get(name).ok_or(StoreError::NoEnt)?.ino,
        };
        Ok(st.inode(child)?.attr.clone())
    }
}
