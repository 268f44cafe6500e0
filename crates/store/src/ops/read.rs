use crate::error::{Result, StoreError};
use crate::perm::{require_data, MAY_READ};
use crate::store::Store;
use crate::types::{Cred, FileType, Ino, ReadReply, MAX_IO_BYTES};

impl Store {
    /// Reads without holding the state lock during I/O. Access times are
    /// not updated (as with `noatime`): journaling every read would cost a
    /// record per READ and replicate nothing of value.
    pub fn read(&self, cred: &Cred, ino: Ino, offset: u64, count: u32) -> Result<ReadReply> {
        let attr = {
            let st = self.read_state();
            st.inode(ino)?.attr.clone()
        };
        match attr.ftype {
            FileType::Regular => {}
            FileType::Directory => return Err(StoreError::IsDir),
            _ => return Err(StoreError::Inval("not a regular file".into())),
        }
        require_data(cred, &attr, MAY_READ)?;
        let wanted = (count as usize).min(MAX_IO_BYTES) as u64;
        let len = attr.size.saturating_sub(offset).min(wanted);
        let data = self.pending.read(&self.data, ino, offset, len as usize)?;
        Ok(ReadReply {
            eof: offset.saturating_add(len) >= attr.size,
            data,
            attr,
        })
    }
}
