//! REMOVE and RMDIR.

use super::validate;
use crate::error::{Result, StoreError};
use crate::perm::{require_dir_write, require_sticky};
use crate::record::Op;
use crate::requests::Kind;
use crate::state::Body;
use crate::store::Store;
use crate::types::*;

impl Store {
    pub fn remove(&self, ctx: &OpCtx, dir: Ino, name: &[u8]) -> Result<Mutation<()>> {
        self.unlink(ctx, dir, name, false)
    }

    pub fn rmdir(&self, ctx: &OpCtx, dir: Ino, name: &[u8]) -> Result<Mutation<()>> {
        if name == b".." {
            return Err(StoreError::NotEmpty);
        }
        self.unlink(ctx, dir, name, true)
    }

    fn unlink(&self, ctx: &OpCtx, dir: Ino, name: &[u8], want_dir: bool) -> Result<Mutation<()>> {
        validate::entry_name(name)?;
        let mut st = self.write_state();
        if let Some(done) =
            super::retransmitted(&st, ctx, (Kind::Unlink, dir, name, 0, b""), dir, |_| Ok(()))
        {
            return done;
        }
        let parent = st.inode(dir)?.attr.clone();
        let slot = *st.dir(dir)?.entries.get(name).ok_or(StoreError::NoEnt)?;
        let victim = st.inode(slot.ino)?;
        match (&victim.body, want_dir) {
            (Body::Dir(d), true) if !d.entries.is_empty() => return Err(StoreError::NotEmpty),
            (Body::Dir(_), true) => {}
            (Body::Dir(_), false) => return Err(StoreError::IsDir),
            (_, true) => return Err(StoreError::NotDir),
            (_, false) => {}
        }
        require_dir_write(&ctx.cred, &parent)?;
        require_sticky(&ctx.cred, &parent, &victim.attr)?;
        let lsn = self.commit(
            &mut st,
            ctx.req.clone(),
            Op::Unlink {
                dir,
                name: name.to_vec(),
                time: Timestamp::now(),
            },
        )?;
        Ok(super::mutation((), lsn, &parent))
    }
}
