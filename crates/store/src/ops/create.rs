//! CREATE, MKDIR, SYMLINK and MKNOD: one new inode linked into a directory.

use super::setattr::plan_setattr;
use super::validate;
use crate::error::{Result, StoreError};
use crate::perm::require_dir_write;
use crate::record::Op;
use crate::requests::Kind;
use crate::state::{Body, Dir, Inode, State};
use crate::store::Store;
use crate::types::*;

impl Store {
    pub fn create(
        &self,
        ctx: &OpCtx,
        dir: Ino,
        name: &[u8],
        how: CreateHow,
        set: &SetAttr,
    ) -> Result<Mutation<Attr>> {
        validate::entry_name(name)?;
        let mut st = self.write_state();
        if let Some(done) =
            super::retransmitted(&st, ctx, (Kind::Create, dir, name, 0, b""), dir, |ino| {
                super::remembered_attr(&st, ino)
            })
        {
            return done;
        }
        let pre = st.inode(dir)?.attr.clone();
        if let Some(slot) = st.dir(dir)?.entries.get(name).copied() {
            let existing = st.inode(slot.ino)?;
            let lsn = st.lsn;
            return match (how, &existing.body) {
                (CreateHow::Guarded, _) => Err(StoreError::Exist),
                (CreateHow::Exclusive(verf), Body::File { create_verf })
                    if *create_verf == Some(verf) =>
                {
                    Ok(super::mutation(existing.attr.clone(), lsn, &pre))
                }
                (CreateHow::Exclusive(_), _) => Err(StoreError::Exist),
                (CreateHow::Unchecked, Body::File { .. }) => {
                    let ino = slot.ino;
                    let set = SetAttr {
                        // UNCHECKED over an existing file only truncates.
                        size: set.size,
                        ..SetAttr::default()
                    };
                    match plan_setattr(&st, &ctx.cred, ino, &set, Timestamp::now())? {
                        None => Ok(super::mutation(existing.attr.clone(), lsn, &pre)),
                        Some(attr) => {
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
                }
                (CreateHow::Unchecked, _) => Err(StoreError::Exist),
            };
        }
        let create_verf = match how {
            CreateHow::Exclusive(v) => Some(v),
            _ => None,
        };
        let set = SetAttr {
            size: None,
            ..set.clone()
        };
        self.create_inode(
            &mut st,
            ctx,
            dir,
            name,
            FileType::Regular,
            0o644,
            &set,
            Body::File { create_verf },
            (0, 0),
        )
    }

    pub fn mkdir(
        &self,
        ctx: &OpCtx,
        dir: Ino,
        name: &[u8],
        set: &SetAttr,
    ) -> Result<Mutation<Attr>> {
        validate::entry_name(name)?;
        let mut st = self.write_state();
        let body = Body::Dir(Dir::new(dir));
        self.create_inode(
            &mut st,
            ctx,
            dir,
            name,
            FileType::Directory,
            0o755,
            set,
            body,
            (0, 0),
        )
    }

    pub fn symlink(
        &self,
        ctx: &OpCtx,
        dir: Ino,
        name: &[u8],
        target: &[u8],
        set: &SetAttr,
    ) -> Result<Mutation<Attr>> {
        validate::entry_name(name)?;
        if target.is_empty() || target.len() > MAX_SYMLINK_BYTES || target.contains(&0) {
            return Err(StoreError::Inval(format!(
                "symlink target must be 1-{MAX_SYMLINK_BYTES} bytes without NUL"
            )));
        }
        let mut st = self.write_state();
        let set = SetAttr {
            // A link's permission bits mean nothing; 0777 as on Linux.
            mode: Some(0o777),
            size: None,
            ..set.clone()
        };
        let body = Body::Symlink(target.to_vec());
        self.create_inode(
            &mut st,
            ctx,
            dir,
            name,
            FileType::Symlink,
            0o777,
            &set,
            body,
            (0, 0),
        )
    }

    pub fn mknod(
        &self,
        ctx: &OpCtx,
        dir: Ino,
        name: &[u8],
        kind: NodeKind,
        set: &SetAttr,
    ) -> Result<Mutation<Attr>> {
        validate::entry_name(name)?;
        let (ftype, rdev) = match kind {
            NodeKind::Fifo => (FileType::Fifo, (0, 0)),
            NodeKind::Socket => (FileType::Socket, (0, 0)),
            NodeKind::Char { major, minor } => (FileType::CharDevice, (major, minor)),
            NodeKind::Block { major, minor } => (FileType::BlockDevice, (major, minor)),
        };
        if matches!(kind, NodeKind::Char { .. } | NodeKind::Block { .. }) && ctx.cred.uid != 0 {
            return Err(StoreError::Perm);
        }
        let mut st = self.write_state();
        self.create_inode(
            &mut st,
            ctx,
            dir,
            name,
            ftype,
            0o644,
            set,
            Body::Special,
            rdev,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn create_inode(
        &self,
        st: &mut State,
        ctx: &OpCtx,
        dir: Ino,
        name: &[u8],
        ftype: FileType,
        default_mode: u32,
        set: &SetAttr,
        body: Body,
        rdev: (u32, u32),
    ) -> Result<Mutation<Attr>> {
        if let Some(done) =
            super::retransmitted(st, ctx, (Kind::Create, dir, name, 0, b""), dir, |ino| {
                super::remembered_attr(st, ino)
            })
        {
            return done;
        }
        let cred = &ctx.cred;
        let parent = st.inode(dir)?.attr.clone();
        let d = st.dir(dir)?;
        require_dir_write(cred, &parent)?;
        if d.entries.contains_key(name) {
            return Err(StoreError::Exist);
        }
        if ftype == FileType::Directory && parent.nlink >= MAX_LINKS {
            return Err(StoreError::MLink);
        }
        let now = Timestamp::now();
        let inherit_gid = parent.mode & S_ISGID != 0;
        let mut gid = if inherit_gid { parent.gid } else { cred.gid };
        let mut uid = cred.uid;
        if let Some(want) = set.uid {
            if want != uid && cred.uid != 0 {
                return Err(StoreError::Perm);
            }
            uid = want;
        }
        if let Some(want) = set.gid {
            if want != gid && cred.uid != 0 && !cred.in_group(want) {
                return Err(StoreError::Perm);
            }
            gid = want;
        }
        let mut mode = set.mode.unwrap_or(default_mode) & 0o7777;
        if ftype == FileType::Directory && inherit_gid {
            mode |= S_ISGID;
        } else if cred.uid != 0 && !cred.in_group(gid) {
            mode &= !S_ISGID;
        }
        let time_of = |t: Option<SetTime>| match t {
            Some(SetTime::Client(t)) => t,
            _ => now,
        };
        let ino = st.next_ino;
        let size = match &body {
            Body::Dir(_) => crate::state::DIR_SIZE_BYTES,
            Body::Symlink(target) => target.len() as u64,
            _ => 0,
        };
        let attr = Attr {
            ftype,
            mode,
            nlink: if ftype == FileType::Directory { 2 } else { 1 },
            uid,
            gid,
            size,
            rdev,
            fsid: parent.fsid,
            ino,
            generation: rand::random::<u64>() | 1,
            atime: time_of(set.atime),
            mtime: time_of(set.mtime),
            ctime: now,
        };
        let cookie = d.next_cookie;
        let lsn = self.commit(
            st,
            ctx.req.clone(),
            Op::Create {
                dir,
                name: name.to_vec(),
                cookie,
                inode: Inode {
                    attr: attr.clone(),
                    body,
                },
                time: now,
            },
        )?;
        Ok(super::mutation(attr, lsn, &parent))
    }
}
