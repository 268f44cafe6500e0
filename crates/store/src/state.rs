//! The in-memory metadata of one vserver and the one function that changes
//! it: `apply`. Applying the same records in the same order from the same
//! checkpoint gives the same `State`, field for field: that is what makes
//! replication and crash recovery work, and what the replay tests check.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::VserverConfig;
use crate::error::{Result, StoreError};
use crate::pending::{DataOp, DataSink};
use crate::record::{Op, Record};
use crate::types::{Attr, FileType, Fsid, Ino, Lsn, Timestamp};

/// Size reported for every directory; clients only use it as a hint.
pub const DIR_SIZE_BYTES: u64 = 4096;
/// First cookie handed to a directory entry (1 and 2 are "." and "..").
pub const FIRST_COOKIE: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub attr: Attr,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    File {
        /// Verifier of an EXCLUSIVE create, so its retry succeeds.
        create_verf: Option<[u8; 8]>,
    },
    Dir(Dir),
    Symlink(#[serde(with = "serde_bytes")] Vec<u8>),
    Special,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dir {
    pub parent: Ino,
    pub entries: BTreeMap<Vec<u8>, DirSlot>,
    /// cookie -> name, for READDIR in a stable order.
    pub by_cookie: BTreeMap<u64, Vec<u8>>,
    pub next_cookie: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirSlot {
    pub ino: Ino,
    pub cookie: u64,
}

impl Dir {
    pub fn new(parent: Ino) -> Self {
        Dir {
            parent,
            entries: BTreeMap::new(),
            by_cookie: BTreeMap::new(),
            next_cookie: FIRST_COOKIE,
        }
    }

    fn insert(&mut self, name: Vec<u8>, ino: Ino, cookie: u64) -> Result<()> {
        if cookie < self.next_cookie {
            return Err(StoreError::Corrupt(format!(
                "cookie {cookie} reused (next is {})",
                self.next_cookie
            )));
        }
        self.next_cookie = cookie + 1;
        self.by_cookie.insert(cookie, name.clone());
        if self.entries.insert(name, DirSlot { ino, cookie }).is_some() {
            return Err(StoreError::Corrupt("entry inserted twice".into()));
        }
        Ok(())
    }

    fn take(&mut self, name: &[u8]) -> Result<DirSlot> {
        let slot = self.entries.remove(name).ok_or_else(|| {
            StoreError::Corrupt(format!("no entry {:?}", String::from_utf8_lossy(name)))
        })?;
        self.by_cookie.remove(&slot.cookie);
        Ok(slot)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub config: VserverConfig,
    pub inodes: BTreeMap<Ino, Inode>,
    /// Next inode number to hand out: never decreases, so numbers are never
    /// reused (a stale handle stays stale).
    pub next_ino: Ino,
    pub next_fsid: Fsid,
    /// LSN of the last record applied.
    pub lsn: Lsn,
    /// Raised at every change of the active site (replication fences on it).
    pub epoch: u64,
    /// Recent client requests, to answer retransmissions (requests.rs).
    pub requests: crate::requests::RequestLog,
    /// Who mounted what (MOUNT DUMP, mounts.rs). After the fields of a
    /// version 1 checkpoint, so one reads with an empty list (checkpoint.rs).
    pub mounts: crate::mounts::MountList,
    /// NLM locks, share reservations, NSM monitored hosts (locks/). Last,
    /// so a version 2 checkpoint reads as one without locks.
    pub locks: crate::locks::LockState,
}

impl State {
    pub fn empty() -> Self {
        State {
            next_ino: 2,
            next_fsid: 1,
            epoch: 1,
            ..State::default()
        }
    }

    pub fn inode(&self, ino: Ino) -> Result<&Inode> {
        self.inodes.get(&ino).ok_or(StoreError::Stale)
    }

    pub fn dir(&self, ino: Ino) -> Result<&Dir> {
        match &self.inode(ino)?.body {
            Body::Dir(d) => Ok(d),
            _ => Err(StoreError::NotDir),
        }
    }

    fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode> {
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| StoreError::Corrupt(format!("record names missing inode {ino}")))
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut Dir> {
        match &mut self.inode_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            _ => Err(StoreError::Corrupt(format!(
                "inode {ino} is not a directory"
            ))),
        }
    }

    fn touch_dir(&mut self, ino: Ino, time: Timestamp) -> Result<()> {
        let attr = &mut self.inode_mut(ino)?.attr;
        attr.mtime = time;
        attr.ctime = time;
        Ok(())
    }

    /// Applies one record. An error here means the journal does not fit
    /// the state it is applied to: corruption, never a client mistake (those
    /// are refused before a record is written).
    pub fn apply(&mut self, lsn: Lsn, record: &Record, data: &dyn DataSink) -> Result<()> {
        if lsn != self.lsn + 1 {
            return Err(StoreError::Corrupt(format!(
                "record LSN {lsn} does not follow state LSN {}",
                self.lsn
            )));
        }
        match &record.op {
            Op::VserverCreated { name } => self.config.name = name.clone(),
            Op::AddressAdded { addr } => self.config.addresses.push(addr.clone()),
            Op::FsCreated { fs, root } => {
                if self.inodes.contains_key(&fs.root_ino) {
                    return Err(StoreError::Corrupt(format!(
                        "root inode {} exists",
                        fs.root_ino
                    )));
                }
                self.inodes.insert(fs.root_ino, root.clone());
                self.next_ino = self.next_ino.max(fs.root_ino + 1);
                self.next_fsid = self.next_fsid.max(fs.fsid + 1);
                self.config.filesystems.insert(fs.name.clone(), fs.clone());
            }
            Op::UserAdded { user } => {
                self.config.users.insert(user.name.clone(), user.clone());
            }
            Op::EpochRaised { epoch } => self.epoch = self.epoch.max(*epoch),
            Op::MountAdded { host, path } => self.mounts.add(host, path),
            Op::MountRemoved { host, path } => self.mounts.remove(host, path.as_deref()),
            Op::LockGranted {
                ino,
                owner,
                range,
                exclusive,
            } => {
                self.inode(*ino)
                    .map_err(|_| StoreError::Corrupt(format!("lock on missing inode {ino}")))?;
                self.locks.apply_lock(*ino, owner, *range, *exclusive)?;
            }
            Op::LockReleased { ino, owner, range } => {
                self.locks.apply_unlock(*ino, owner, *range)?
            }
            Op::HostLocksFreed { host } => self.locks.apply_free_host(host),
            Op::HostRebooted { host, state } => self.locks.apply_host_rebooted(host, *state),
            Op::ShareGranted { ino, owner, mode } => {
                self.inode(*ino)
                    .map_err(|_| StoreError::Corrupt(format!("share on missing inode {ino}")))?;
                self.locks.apply_share(*ino, owner, *mode)?;
            }
            Op::ShareReleased { ino, owner } => self.locks.apply_unshare(*ino, owner),
            Op::HostMonitored { host, id, private } => self.locks.apply_monitor(host, id, *private),
            Op::HostUnmonitored { host, id } => self.locks.apply_unmonitor(host.as_deref(), id),
            Op::SetAttr { ino, attr } => {
                let inode = self.inode_mut(*ino)?;
                let old_size = inode.attr.size;
                inode.attr = attr.clone();
                if inode.attr.ftype == FileType::Regular && attr.size != old_size {
                    data.data_op(lsn, *ino, DataOp::SetLen(attr.size))?;
                }
            }
            Op::Write {
                ino,
                offset,
                data: bytes,
                attr,
            } => {
                self.inode_mut(*ino)?.attr = attr.clone();
                let op = DataOp::Write {
                    offset: *offset,
                    data: bytes.clone(),
                };
                data.data_op(lsn, *ino, op)?;
            }
            Op::Create {
                dir,
                name,
                cookie,
                inode,
                time,
            } => {
                let ino = inode.attr.ino;
                if self.inodes.contains_key(&ino) || ino < self.next_ino {
                    return Err(StoreError::Corrupt(format!("inode {ino} reused")));
                }
                self.dir_mut(*dir)?.insert(name.clone(), ino, *cookie)?;
                if inode.attr.ftype == FileType::Directory {
                    self.inode_mut(*dir)?.attr.nlink += 1;
                }
                self.touch_dir(*dir, *time)?;
                self.inodes.insert(ino, inode.clone());
                self.next_ino = ino + 1;
            }
            Op::Unlink { dir, name, time } => {
                let slot = self.dir_mut(*dir)?.take(name)?;
                self.drop_link(lsn, slot.ino, *dir, *time, data)?;
                self.touch_dir(*dir, *time)?;
            }
            Op::Rename {
                from_dir,
                from_name,
                to_dir,
                to_name,
                cookie,
                time,
            } => {
                let moved = self.dir_mut(*from_dir)?.take(from_name)?;
                if let Some(victim) = self.dir(*to_dir)?.entries.get(to_name.as_slice()).copied() {
                    self.dir_mut(*to_dir)?.take(to_name)?;
                    self.drop_link(lsn, victim.ino, *to_dir, *time, data)?;
                }
                self.dir_mut(*to_dir)?
                    .insert(to_name.clone(), moved.ino, *cookie)?;
                let moved_inode = self.inode_mut(moved.ino)?;
                moved_inode.attr.ctime = *time;
                let moved_is_dir = if let Body::Dir(d) = &mut moved_inode.body {
                    d.parent = *to_dir;
                    true
                } else {
                    false
                };
                if moved_is_dir && from_dir != to_dir {
                    let from = &mut self.inode_mut(*from_dir)?.attr;
                    from.nlink = from.nlink.saturating_sub(1);
                    self.inode_mut(*to_dir)?.attr.nlink += 1;
                }
                self.touch_dir(*from_dir, *time)?;
                self.touch_dir(*to_dir, *time)?;
            }
            Op::Link {
                ino,
                dir,
                name,
                cookie,
                time,
            } => {
                self.dir_mut(*dir)?.insert(name.clone(), *ino, *cookie)?;
                let attr = &mut self.inode_mut(*ino)?.attr;
                attr.nlink += 1;
                attr.ctime = *time;
                self.touch_dir(*dir, *time)?;
            }
        }
        if let Some(req) = &record.req {
            self.requests.remember(req, lsn, &record.op);
        }
        self.lsn = lsn;
        Ok(())
    }

    /// Removes one link to `ino` (already taken out of `dir`); the inode
    /// and its data go with the last link.
    fn drop_link(
        &mut self,
        lsn: Lsn,
        ino: Ino,
        dir: Ino,
        time: Timestamp,
        data: &dyn DataSink,
    ) -> Result<()> {
        let inode = self.inode_mut(ino)?;
        let is_dir = inode.attr.ftype == FileType::Directory;
        if is_dir {
            if let Body::Dir(d) = &inode.body {
                if !d.entries.is_empty() {
                    return Err(StoreError::Corrupt(format!(
                        "removing non-empty directory {ino}"
                    )));
                }
            }
            inode.attr.nlink = 0;
        } else {
            inode.attr.nlink = inode.attr.nlink.saturating_sub(1);
            inode.attr.ctime = time;
        }
        if inode.attr.nlink == 0 {
            let ftype = inode.attr.ftype;
            self.inodes.remove(&ino);
            self.locks.forget_inode(ino);
            if ftype == FileType::Regular {
                data.data_op(lsn, ino, DataOp::Remove)?;
            }
        }
        if is_dir {
            let parent = &mut self.inode_mut(dir)?.attr;
            parent.nlink = parent.nlink.saturating_sub(1);
        }
        Ok(())
    }
}
