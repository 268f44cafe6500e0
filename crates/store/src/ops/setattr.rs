use crate::error::{Result, StoreError};
use crate::perm::{granted, require_data, MAY_WRITE};
use crate::record::Op;
use crate::state::State;
use crate::store::Store;
use crate::types::*;

impl Store {
    pub fn setattr(
        &self,
        ctx: &OpCtx,
        ino: Ino,
        set: &SetAttr,
        guard_ctime: Option<Timestamp>,
    ) -> Result<Mutation<Attr>> {
        let mut st = self.write_state();
        let pre = st.inode(ino)?.attr.clone();
        if let Some(guard) = guard_ctime {
            if guard != pre.ctime {
                return Err(StoreError::NotSync);
            }
        }
        let Some(attr) = plan_setattr(&st, &ctx.cred, ino, set, Timestamp::now())? else {
            let lsn = st.lsn;
            return Ok(super::mutation(pre.clone(), lsn, &pre));
        };
        let lsn = self.commit(
            &mut st,
            ctx.req.clone(),
            Op::SetAttr {
                ino,
                attr: attr.clone(),
            },
        )?;
        Ok(super::mutation(attr, lsn, &pre))
    }
}

/// The attributes after `set`, or `None` if nothing changes. Shared with
/// CREATE (UNCHECKED over an existing file).
pub(crate) fn plan_setattr(
    st: &State,
    cred: &Cred,
    ino: Ino,
    set: &SetAttr,
    now: Timestamp,
) -> Result<Option<Attr>> {
    let old = &st.inode(ino)?.attr;
    if *set == SetAttr::default() {
        return Ok(None);
    }
    let mut attr = old.clone();
    let is_owner = cred.uid == 0 || cred.uid == old.uid;
    if let Some(size) = set.size {
        match old.ftype {
            FileType::Regular => {}
            FileType::Directory => return Err(StoreError::IsDir),
            _ => return Err(StoreError::Inval("size of a special file".into())),
        }
        if size > MAX_FILE_BYTES {
            return Err(StoreError::FBig);
        }
        require_data(cred, old, MAY_WRITE)?;
        attr.size = size;
        attr.mtime = now;
    }
    if let Some(mode) = set.mode {
        if !is_owner {
            return Err(StoreError::Perm);
        }
        attr.mode = mode & 0o7777;
        if cred.uid != 0 && !cred.in_group(set.gid.unwrap_or(old.gid)) {
            attr.mode &= !S_ISGID;
        }
    }
    // As Linux's chown_ok/chgrp_ok: only root gives a file away; the owner
    // may "change" the owner to itself and the group to one it is in (or
    // the current one); anyone else is refused, even for a no-op.
    if let Some(uid) = set.uid {
        if cred.uid != 0 && (uid != old.uid || cred.uid != old.uid) {
            return Err(StoreError::Perm);
        }
        attr.uid = uid;
    }
    if let Some(gid) = set.gid {
        let owner_may = cred.uid == old.uid && (gid == old.gid || cred.in_group(gid));
        if cred.uid != 0 && !owner_may {
            return Err(StoreError::Perm);
        }
        attr.gid = gid;
    }
    let owner_changed = attr.uid != old.uid || attr.gid != old.gid;
    if owner_changed && attr.ftype == FileType::Regular && set.mode.is_none() {
        // A new owner must not inherit set-id powers.
        attr.mode &= !S_ISUID;
        if attr.mode & 0o010 != 0 {
            attr.mode &= !S_ISGID;
        }
    }
    for (which, field) in [(set.atime, &mut attr.atime), (set.mtime, &mut attr.mtime)] {
        match which {
            None => {}
            Some(SetTime::ServerNow) => {
                if !is_owner && granted(cred, old) & MAY_WRITE == 0 {
                    return Err(StoreError::Access);
                }
                *field = now;
            }
            Some(SetTime::Client(t)) => {
                if !is_owner {
                    return Err(StoreError::Perm);
                }
                *field = t;
            }
        }
    }
    attr.ctime = now;
    Ok(Some(attr))
}
