use super::validate;
use crate::error::{Result, StoreError};
use crate::perm::{require, require_dir_write, require_sticky, MAY_WRITE};
use crate::record::Op;
use crate::requests::Kind;
use crate::state::{Body, State};
use crate::store::Store;
use crate::types::*;

/// Deepest directory nesting walked when checking a move into a subtree.
const MAX_DEPTH: usize = 1 << 16;

impl Store {
    /// `pre` in the result holds the source directory's pre-op attributes.
    pub fn rename(
        &self,
        ctx: &OpCtx,
        from_dir: Ino,
        from_name: &[u8],
        to_dir: Ino,
        to_name: &[u8],
    ) -> Result<Mutation<()>> {
        validate::entry_name(from_name)?;
        validate::entry_name(to_name)?;
        let cred = &ctx.cred;
        let mut st = self.write_state();
        let key = (Kind::Rename, from_dir, from_name, to_dir, to_name);
        if let Some(done) = super::retransmitted(&st, ctx, key, from_dir, |_| Ok(())) {
            return done;
        }
        let from_attr = st.inode(from_dir)?.attr.clone();
        let to_attr = st.inode(to_dir)?.attr.clone();
        let from = st.dir(from_dir)?;
        st.dir(to_dir)?;
        if from_attr.fsid != to_attr.fsid {
            return Err(StoreError::XDev);
        }
        let moved = *from.entries.get(from_name).ok_or(StoreError::NoEnt)?;
        let moved_attr = st.inode(moved.ino)?.attr.clone();
        let moved_is_dir = moved_attr.ftype == FileType::Directory;
        require_dir_write(cred, &from_attr)?;
        require_dir_write(cred, &to_attr)?;
        require_sticky(cred, &from_attr, &moved_attr)?;
        let victim = st.dir(to_dir)?.entries.get(to_name).copied();
        if let Some(v) = victim {
            if v.ino == moved.ino {
                // Two names of one file: POSIX says do nothing.
                let lsn = st.lsn;
                return Ok(super::mutation((), lsn, &from_attr));
            }
            let victim_inode = st.inode(v.ino)?;
            match (&victim_inode.body, moved_is_dir) {
                (Body::Dir(d), true) if !d.entries.is_empty() => return Err(StoreError::NotEmpty),
                (Body::Dir(_), true) => {}
                (Body::Dir(_), false) => return Err(StoreError::IsDir),
                (_, true) => return Err(StoreError::NotDir),
                (_, false) => {}
            }
            require_sticky(cred, &to_attr, &victim_inode.attr)?;
        }
        if moved_is_dir && from_dir != to_dir {
            require(cred, &moved_attr, MAY_WRITE)?;
            if is_within(&st, to_dir, moved.ino)? {
                return Err(StoreError::Inval(
                    "cannot move a directory into itself".into(),
                ));
            }
            if victim.is_none() && to_attr.nlink >= MAX_LINKS {
                return Err(StoreError::MLink);
            }
        }
        let cookie = st.dir(to_dir)?.next_cookie;
        let lsn = self.commit(
            &mut st,
            ctx.req.clone(),
            Op::Rename {
                from_dir,
                from_name: from_name.to_vec(),
                to_dir,
                to_name: to_name.to_vec(),
                cookie,
                time: Timestamp::now(),
            },
        )?;
        Ok(super::mutation((), lsn, &from_attr))
    }
}

/// Whether `dir` is `ancestor` or lies below it.
fn is_within(st: &State, mut dir: Ino, ancestor: Ino) -> Result<bool> {
    for _ in 0..MAX_DEPTH {
        if dir == ancestor {
            return Ok(true);
        }
        let parent = st.dir(dir)?.parent;
        if parent == dir {
            return Ok(false);
        }
        dir = parent;
    }
    Err(StoreError::Corrupt(
        "directory chain too deep or cyclic".into(),
    ))
}
