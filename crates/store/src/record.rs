//! Journal record payloads. A record states the outcome the active site
//! decided, not the request: inode numbers, generations, cookies, times and
//! the post-operation attributes are all in it, so applying it needs no
//! clock, no random numbers and no counters of the applying site.
//!
//! Serialized with postcard; variant and field order is the on-disk format
//! (docs/formats.md). Append new variants at the end only.

use serde::{Deserialize, Serialize};

use crate::config::{AddressSpec, FsConfig, User};
use crate::locks::{ByteRange, LockOwner, MonitorId, ShareMode, ShareOwner};
use crate::state::Inode;
use crate::types::{Attr, Ino, ReqId, Timestamp};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The client request that caused it, if any (duplicate detection).
    pub req: Option<ReqId>,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    VserverCreated {
        name: String,
    },
    AddressAdded {
        addr: AddressSpec,
    },
    FsCreated {
        fs: FsConfig,
        root: Inode,
    },
    UserAdded {
        user: User,
    },
    /// New attributes of `ino`; a size change truncates or extends the data.
    SetAttr {
        ino: Ino,
        attr: Attr,
    },
    Write {
        ino: Ino,
        offset: u64,
        /// Shared, not copied, from the request that carried it.
        data: bytes::Bytes,
        /// Attributes after the write (size, mtime, ctime, cleared set-id bits).
        attr: Attr,
    },
    /// CREATE, MKDIR, SYMLINK and MKNOD: a new inode linked into `dir`.
    Create {
        dir: Ino,
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        cookie: u64,
        inode: Inode,
        time: Timestamp,
    },
    /// REMOVE and RMDIR.
    Unlink {
        dir: Ino,
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        time: Timestamp,
    },
    Rename {
        from_dir: Ino,
        #[serde(with = "serde_bytes")]
        from_name: Vec<u8>,
        to_dir: Ino,
        #[serde(with = "serde_bytes")]
        to_name: Vec<u8>,
        /// Cookie of the entry in `to_dir`.
        cookie: u64,
        time: Timestamp,
    },
    Link {
        ino: Ino,
        dir: Ino,
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        cookie: u64,
        time: Timestamp,
    },
    /// Failover promoted this copy: from here on `epoch` is the vserver's
    /// epoch (promote.rs). Its frame carries the same epoch.
    EpochRaised {
        epoch: u64,
    },
    /// MNT: `host` mounted the export at `path` (the DUMP list, mounts.rs).
    MountAdded {
        host: String,
        path: String,
    },
    /// UMNT of `path`, or UMNTALL (`None`): `host` unmounted.
    MountRemoved {
        host: String,
        path: Option<String>,
    },
    /// NLM LOCK granted: `owner` holds `range` of `ino` (locks.rs).
    LockGranted {
        ino: Ino,
        owner: LockOwner,
        range: ByteRange,
        exclusive: bool,
    },
    /// NLM UNLOCK (or CANCEL of a granted lock) of `range`.
    LockReleased {
        ino: Ino,
        owner: LockOwner,
        range: ByteRange,
    },
    /// NLM FREE_ALL: every lock and share reservation of `host` dropped.
    HostLocksFreed {
        host: String,
    },
    /// NSM SM_NOTIFY: `host` restarted with NSM state `state`; its locks
    /// and share reservations are dropped.
    HostRebooted {
        host: String,
        state: u32,
    },
    /// NLM SHARE granted (replacing the owner's reservation on `ino`).
    ShareGranted {
        ino: Ino,
        owner: ShareOwner,
        mode: ShareMode,
    },
    /// NLM UNSHARE.
    ShareReleased {
        ino: Ino,
        owner: ShareOwner,
    },
    /// NSM SM_MON: `id` wants to hear of `host`'s restart.
    HostMonitored {
        host: String,
        id: MonitorId,
        private: [u8; 16],
    },
    /// NSM SM_UNMON of `host`, or SM_UNMON_ALL (`None`): `id` is removed.
    HostUnmonitored {
        host: Option<String>,
        id: MonitorId,
    },
}

impl Op {
    /// Short name for logs and fsck reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::VserverCreated { .. } => "vserver-created",
            Op::AddressAdded { .. } => "address-added",
            Op::FsCreated { .. } => "fs-created",
            Op::UserAdded { .. } => "user-added",
            Op::SetAttr { .. } => "setattr",
            Op::Write { .. } => "write",
            Op::Create { .. } => "create",
            Op::Unlink { .. } => "unlink",
            Op::Rename { .. } => "rename",
            Op::Link { .. } => "link",
            Op::EpochRaised { .. } => "epoch-raised",
            Op::MountAdded { .. } => "mount-added",
            Op::MountRemoved { .. } => "mount-removed",
            Op::LockGranted { .. } => "lock-granted",
            Op::LockReleased { .. } => "lock-released",
            Op::HostLocksFreed { .. } => "host-locks-freed",
            Op::HostRebooted { .. } => "host-rebooted",
            Op::ShareGranted { .. } => "share-granted",
            Op::ShareReleased { .. } => "share-released",
            Op::HostMonitored { .. } => "host-monitored",
            Op::HostUnmonitored { .. } => "host-unmonitored",
        }
    }
}
