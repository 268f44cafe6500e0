//! Typed errors of the store. Each maps to exactly one NFS status in the nfs
//! layer; `Corrupt` and `Io` are server faults, never the client's.

use std::path::PathBuf;

use crate::types::Lsn;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such file or directory")]
    NoEnt,
    #[error("file exists")]
    Exist,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("permission denied")]
    Access,
    #[error("operation not permitted")]
    Perm,
    #[error("stale file handle")]
    Stale,
    #[error("name too long (max {max_bytes} bytes)")]
    NameTooLong { max_bytes: usize },
    #[error("invalid argument: {0}")]
    Inval(String),
    #[error("cross-file-system operation")]
    XDev,
    #[error("file too large")]
    FBig,
    #[error("no space left: {0}")]
    NoSpace(String),
    /// The disk holding the store has no room for the change (space.rs);
    /// nothing was written. Unlike `NoSpace` (a count limit), this passes
    /// once room is freed.
    #[error("no room on the disk: {0}")]
    DiskFull(String),
    #[error("too many links")]
    MLink,
    #[error("not supported: {0}")]
    NotSupp(String),
    #[error("ctime guard did not match")]
    NotSync,
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store corrupt: {0}")]
    Corrupt(String),
    #[error("store is shut down")]
    Closed,
    /// A replication batch from an older epoch: its sender was fenced off
    /// by a failover ("One writer per epoch").
    #[error("fenced: our epoch is {ours}, the frames carry epoch {theirs}")]
    Fenced { ours: u64, theirs: u64 },
    /// Replicated frames that cannot be taken as they are (bad checksum,
    /// LSN gap, undecodable payload, wrong role); nothing was applied.
    #[error("replication refused: {0}")]
    Replication(String),
    /// The journal no longer holds the frames asked for (a checkpoint
    /// deleted them): the replica needs a baseline or a catch-up.
    #[error("journal no longer holds LSN {lsn} (oldest retained is {oldest_lsn})")]
    NotRetained { lsn: Lsn, oldest_lsn: Lsn },
    /// No catch-up can be sent for this replica (no journal overflow, a
    /// replica LSN the change map does not cover, or a lost map).
    #[error("no catch-up possible: {0}")]
    CatchupUnavailable(String),
    /// A lock-state limit refused the change (nothing was written).
    #[error("too many {what} (at most {max})")]
    TooManyLocks { what: &'static str, max: usize },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether this is the file system saying it is full (ENOSPC, or a
    /// quota's EDQUOT): a condition that passes, not a broken store.
    pub fn is_no_space(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => is_no_space_io(source),
            StoreError::DiskFull(_) => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl From<crate::durable::DurableError> for StoreError {
    fn from(e: crate::durable::DurableError) -> Self {
        StoreError::io(e.path, e.source)
    }
}

/// ENOSPC or EDQUOT.
pub fn is_no_space_io(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
