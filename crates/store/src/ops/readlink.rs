use crate::error::{Result, StoreError};
use crate::state::Body;
use crate::store::Store;
use crate::types::{Attr, Cred, Ino};

impl Store {
    /// Symlink targets are readable by anyone who can reach the link.
    pub fn readlink(&self, _cred: &Cred, ino: Ino) -> Result<(Vec<u8>, Attr)> {
        let st = self.read_state();
        let inode = st.inode(ino)?;
        match &inode.body {
            Body::Symlink(target) => Ok((target.clone(), inode.attr.clone())),
            _ => Err(StoreError::Inval("not a symbolic link".into())),
        }
    }
}
