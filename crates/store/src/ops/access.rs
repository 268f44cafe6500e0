use crate::error::Result;
use crate::perm::access_bits;
use crate::store::Store;
use crate::types::{Attr, Cred, Ino};

impl Store {
    /// Which of the `access::*` bits in `want` the caller holds.
    pub fn access(&self, cred: &Cred, ino: Ino, want: u32) -> Result<(u32, Attr)> {
        let st = self.read_state();
        let attr = &st.inode(ino)?.attr;
        Ok((access_bits(cred, attr, want), attr.clone()))
    }
}
