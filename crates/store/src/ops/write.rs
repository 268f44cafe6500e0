use crate::error::{Result, StoreError};
use crate::perm::{require_data, MAY_WRITE};
use crate::record::Op;
use crate::store::Store;
use crate::types::*;

impl Store {
    /// The caller decides how long to wait for durability (UNSTABLE vs
    /// FILE_SYNC) with `wait_durable(mutation.lsn)`.
    pub fn write(&self, ctx: &OpCtx, ino: Ino, offset: u64, data: &[u8]) -> Result<Mutation<Attr>> {
        self.write_bytes(ctx, ino, offset, bytes::Bytes::copy_from_slice(data))
    }

    /// `write` without copying: the bytes are shared with the journal
    /// record and the pending data change.
    pub fn write_bytes(
        &self,
        ctx: &OpCtx,
        ino: Ino,
        offset: u64,
        data: bytes::Bytes,
    ) -> Result<Mutation<Attr>> {
        if data.len() > MAX_IO_BYTES {
            return Err(StoreError::Inval(format!(
                "write of {} bytes exceeds the {MAX_IO_BYTES}-byte limit",
                data.len()
            )));
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| *end <= MAX_FILE_BYTES)
            .ok_or(StoreError::FBig)?;
        let mut st = self.write_state();
        let pre = st.inode(ino)?.attr.clone();
        match pre.ftype {
            FileType::Regular => {}
            FileType::Directory => return Err(StoreError::IsDir),
            _ => return Err(StoreError::Inval("not a regular file".into())),
        }
        require_data(&ctx.cred, &pre, MAY_WRITE)?;
        if data.is_empty() {
            let lsn = st.lsn;
            return Ok(super::mutation(pre.clone(), lsn, &pre));
        }
        let now = Timestamp::now();
        let mut attr = pre.clone();
        attr.size = attr.size.max(end);
        attr.mtime = now;
        attr.ctime = now;
        if ctx.cred.uid != 0 {
            // Writing by anyone but root drops set-id powers (POSIX).
            attr.mode &= !S_ISUID;
            if attr.mode & 0o010 != 0 {
                attr.mode &= !S_ISGID;
            }
        }
        let lsn = self.commit(
            &mut st,
            ctx.req.clone(),
            Op::Write {
                ino,
                offset,
                data,
                attr: attr.clone(),
            },
        )?;
        Ok(super::mutation(attr, lsn, &pre))
    }
}
