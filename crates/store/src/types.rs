//! Plain data types shared by the store's API, its journal records and its
//! checkpoints. Everything here is serialized, so field order is format: see
//! docs/formats.md before changing anything.

use serde::{Deserialize, Serialize};

/// Journal position. LSN 0 means "before the first record".
pub type Lsn = u64;
pub type Ino = u64;
pub type Fsid = u64;

/// Longest file name accepted, in bytes (same as Linux NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest symlink target accepted, in bytes (Linux PATH_MAX).
pub const MAX_SYMLINK_BYTES: usize = 4096;
/// Largest file size accepted (8 TiB): keeps offsets far from i64 overflow.
pub const MAX_FILE_BYTES: u64 = 8 << 40;
/// Largest single read or write, in bytes.
pub const MAX_IO_BYTES: usize = 1 << 20;
/// Hard links per inode.
pub const MAX_LINKS: u32 = 65_000;

pub const S_ISUID: u32 = 0o4000;
pub const S_ISGID: u32 = 0o2000;
pub const S_ISVTX: u32 = 0o1000;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Timestamp {
    pub secs: u64,
    pub nsecs: u32,
}

/// Wall-clock milliseconds since the Unix epoch, for ages and "since"
/// fields shown to people (lag, connection times); 0 before 1970 and
/// saturating far in the future, so a wrong clock never fails a caller.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Timestamp {
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            secs: d.as_secs(),
            nsecs: d.subsec_nanos(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Socket,
    Fifo,
}

/// What MKNOD may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    Fifo,
    Socket,
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
}

/// Attributes of one inode: identical at every site ("Identity travels").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub ftype: FileType,
    /// Permission bits including setuid/setgid/sticky (no file-type bits).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// (major, minor) for device nodes, (0, 0) otherwise.
    pub rdev: (u32, u32),
    pub fsid: Fsid,
    pub ino: Ino,
    pub generation: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

/// Identity of the caller, already mapped by export rules (root squash etc).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

impl Cred {
    pub fn root() -> Self {
        Cred::default()
    }
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.gids.contains(&gid)
    }
}

/// Which client request produced a record, kept with it so a duplicate
/// request (a retransmission, possibly after failover) can be recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReqId {
    /// Who sent the request, as the NFS layer names it: the client's
    /// address and AUTH_SYS machine name ("127.0.0.1 host7"), not its port.
    pub client: String,
    pub xid: u32,
}

/// Context of one mutating call.
#[derive(Debug, Clone, Default)]
pub struct OpCtx {
    pub cred: Cred,
    pub req: Option<ReqId>,
}

impl OpCtx {
    pub fn new(cred: Cred) -> Self {
        OpCtx { cred, req: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetTime {
    ServerNow,
    Client(Timestamp),
}

/// SETATTR's requested changes; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateHow {
    Unchecked,
    Guarded,
    /// Exclusive create: a retry with the same verifier succeeds.
    Exclusive([u8; 8]),
}

/// File handle contents: the only identity a client holds. Built from
/// nothing local to one site or one process run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    pub fsid: Fsid,
    pub ino: Ino,
    pub generation: u64,
}

/// Result of a mutating call: its value and the LSN that must be durable
/// before the reply may promise stability.
#[derive(Debug, Clone)]
pub struct Mutation<T> {
    pub value: T,
    pub lsn: Lsn,
    /// Attributes of the directory (or file) before the change, for WCC.
    pub pre: Option<WccAttr>,
}

/// The pre-operation attributes NFSv3 calls wcc_attr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WccAttr {
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

impl From<&Attr> for WccAttr {
    fn from(a: &Attr) -> Self {
        WccAttr {
            size: a.size,
            mtime: a.mtime,
            ctime: a.ctime,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReadReply {
    pub data: Vec<u8>,
    pub eof: bool,
    pub attr: Attr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Stable cookie: assigned when the entry is created, never reused
    /// within its directory, identical at every site. Starts at 3 (0 is
    /// "from the start"; 1 and 2 are left for "." and "..").
    pub cookie: u64,
    pub name: Vec<u8>,
    pub attr: Attr,
}

#[derive(Debug, Clone)]
pub struct ReadDir {
    pub entries: Vec<DirEntry>,
    pub eof: bool,
    pub dir_attr: Attr,
}

/// Space figures for FSSTAT.
#[derive(Debug, Clone, Copy)]
pub struct FsStat {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub total_files: u64,
    pub free_files: u64,
}

/// ACCESS bits (same values as NFSv3 ACCESS3_*).
pub mod access {
    pub const READ: u32 = 0x01;
    pub const LOOKUP: u32 = 0x02;
    pub const MODIFY: u32 = 0x04;
    pub const EXTEND: u32 = 0x08;
    pub const DELETE: u32 = 0x10;
    pub const EXECUTE: u32 = 0x20;
}

/// The little-endian `u32` at byte `i` of `b`; the caller has checked that
/// `b` is long enough (a short `b` panics).
pub(crate) fn le_u32(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(a)
}

/// Layout shared by the small mark files (baseline progress, catch-up
/// mark): magic (8 bytes) | version u32 | fields | crc32c of all the bytes
/// before it u32. `seal_mark` writes the magic, version and checksum
/// around the fields already in `b`.
pub(crate) fn seal_mark(b: &mut [u8], magic: &[u8; 8], version: u32) {
    let crc_at = b.len() - 4;
    b[0..8].copy_from_slice(magic);
    b[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..crc_at]);
    b[crc_at..].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a mark's length, magic, version and checksum (as `seal_mark`
/// wrote them); `what` names the mark in the error.
pub(crate) fn check_mark(
    b: &[u8],
    len: usize,
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> std::result::Result<(), String> {
    if b.len() != len || &b[0..8] != magic {
        return Err(format!("bad {what} header"));
    }
    if le_u32(b, 8) != version {
        return Err(format!("unsupported {what} version {}", le_u32(b, 8)));
    }
    if crc32c::crc32c(&b[0..len - 4]) != le_u32(b, len - 4) {
        return Err(format!("{what} checksum mismatch"));
    }
    Ok(())
}

/// The little-endian `u64` at byte `i` of `b`, as `le_u32`.
pub(crate) fn le_u64(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}
