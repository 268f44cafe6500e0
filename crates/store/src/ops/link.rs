use super::validate;
use crate::error::{Result, StoreError};
use crate::perm::require_dir_write;
use crate::record::Op;
use crate::requests::Kind;
use crate::store::Store;
use crate::types::*;

impl Store {
    pub fn link(&self, ctx: &OpCtx, ino: Ino, dir: Ino, name: &[u8]) -> Result<Mutation<Attr>> {
        validate::entry_name(name)?;
        let mut st = self.write_state();
        if let Some(done) =
            super::retransmitted(&st, ctx, (Kind::Link, dir, name, ino, b""), dir, |ino| {
                super::remembered_attr(&st, ino)
            })
        {
            return done;
        }
        let target = st.inode(ino)?.attr.clone();
        let parent = st.inode(dir)?.attr.clone();
        let d = st.dir(dir)?;
        if target.ftype == FileType::Directory {
            return Err(StoreError::IsDir);
        }
        if target.fsid != parent.fsid {
            return Err(StoreError::XDev);
        }
        if target.nlink >= MAX_LINKS {
            return Err(StoreError::MLink);
        }
        require_dir_write(&ctx.cred, &parent)?;
        if d.entries.contains_key(name) {
            return Err(StoreError::Exist);
        }
        let cookie = d.next_cookie;
        let now = Timestamp::now();
        let lsn = self.commit(
            &mut st,
            ctx.req.clone(),
            Op::Link {
                ino,
                dir,
                name: name.to_vec(),
                cookie,
                time: now,
            },
        )?;
        let attr = st.inode(ino)?.attr.clone();
        Ok(super::mutation(attr, lsn, &parent))
    }
}
