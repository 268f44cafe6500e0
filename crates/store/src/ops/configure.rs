//! Configuration changes of the vserver: journal records like any data
//! change, so they replicate with the data.

use super::validate;
use crate::config::*;
use crate::error::{Result, StoreError};
use crate::record::Op;
use crate::state::{Body, Dir, Inode};
use crate::store::Store;
use crate::types::*;

/// Linux's IFNAMSIZ less the NUL.
pub const MAX_INTERFACE_NAME_BYTES: usize = 15;

impl Store {
    pub fn add_address(&self, addr: AddressSpec) -> Result<Mutation<()>> {
        let max_prefix = if addr.ip.is_ipv4() { 32 } else { 128 };
        if addr.prefix > max_prefix {
            return Err(StoreError::Inval(format!(
                "prefix /{} is too long for {}",
                addr.prefix, addr.ip
            )));
        }
        if let Some(ifname) = &addr.interface {
            let ok = !ifname.is_empty()
                && ifname.len() <= MAX_INTERFACE_NAME_BYTES
                && ifname.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
            if !ok {
                return Err(StoreError::Inval(format!("bad interface name {ifname:?}")));
            }
        }
        let mut st = self.write_state();
        if st.config.addresses.iter().any(|a| a.ip == addr.ip) {
            return Err(StoreError::Exist);
        }
        if st.config.addresses.len() >= MAX_ADDRESSES {
            return Err(StoreError::NoSpace(format!(
                "at most {MAX_ADDRESSES} addresses per vserver"
            )));
        }
        let lsn = self.commit(&mut st, None, Op::AddressAdded { addr })?;
        Ok(Mutation {
            value: (),
            lsn,
            pre: None,
        })
    }

    /// Creates a file system with its root directory (mode 0755, owned by
    /// root) and its export.
    pub fn create_fs(&self, name: &str, export: Export) -> Result<Mutation<FsConfig>> {
        validate::vserver_name(name)?;
        let path = &export.path;
        if !path.starts_with('/')
            || path.len() > MAX_EXPORT_PATH_BYTES
            || path.contains('\0')
            || path.contains("//")
        {
            return Err(StoreError::Inval(format!(
                "export path {path:?} must be absolute, at most {MAX_EXPORT_PATH_BYTES} bytes, without empty components"
            )));
        }
        if export.clients.len() > MAX_CLIENT_RULES {
            return Err(StoreError::Inval(format!(
                "at most {MAX_CLIENT_RULES} client rules per export"
            )));
        }
        let mut st = self.write_state();
        if st.config.filesystems.contains_key(name) {
            return Err(StoreError::Exist);
        }
        if st.config.fs_by_export_path(path).is_some() {
            return Err(StoreError::Inval(format!(
                "export path {path} is already in use"
            )));
        }
        if st.config.filesystems.len() >= MAX_FILESYSTEMS {
            return Err(StoreError::NoSpace(format!(
                "at most {MAX_FILESYSTEMS} file systems per vserver"
            )));
        }
        let now = Timestamp::now();
        let root_ino = st.next_ino;
        let fs = FsConfig {
            name: name.to_string(),
            fsid: st.next_fsid,
            root_ino,
            export: Export {
                path: normalize_export_path(path).to_string(),
                ..export
            },
        };
        let root = Inode {
            attr: Attr {
                ftype: FileType::Directory,
                mode: 0o755,
                nlink: 2,
                uid: 0,
                gid: 0,
                size: crate::state::DIR_SIZE_BYTES,
                rdev: (0, 0),
                fsid: fs.fsid,
                ino: root_ino,
                generation: rand::random::<u64>() | 1,
                atime: now,
                mtime: now,
                ctime: now,
            },
            body: Body::Dir(Dir::new(root_ino)),
        };
        let lsn = self.commit(
            &mut st,
            None,
            Op::FsCreated {
                fs: fs.clone(),
                root,
            },
        )?;
        Ok(Mutation {
            value: fs,
            lsn,
            pre: None,
        })
    }

    pub fn add_user(&self, user: User) -> Result<Mutation<()>> {
        validate::vserver_name(&user.name)?;
        if user.groups.len() > MAX_GROUPS_PER_USER {
            return Err(StoreError::Inval(format!(
                "at most {MAX_GROUPS_PER_USER} groups per user"
            )));
        }
        let mut st = self.write_state();
        if st.config.users.contains_key(&user.name) {
            return Err(StoreError::Exist);
        }
        if st.config.users.len() >= MAX_USERS {
            return Err(StoreError::NoSpace(format!(
                "at most {MAX_USERS} users per vserver"
            )));
        }
        let lsn = self.commit(&mut st, None, Op::UserAdded { user })?;
        Ok(Mutation {
            value: (),
            lsn,
            pre: None,
        })
    }
}
