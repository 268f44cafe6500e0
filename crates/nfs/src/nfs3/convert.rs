//! Store types to their NFSv3 wire forms and back.

use nfs3_types::nfs3::{fattr3, ftype3, nfstime3, specdata3, wcc_attr as nfs_wcc_attr};
use tandem_store::{Attr, FileType, SetTime, Timestamp, WccAttr};

/// Block size used to report `used` bytes.
const USED_BLOCK_BYTES: u64 = 4096;

pub(crate) fn time(t: &Timestamp) -> nfstime3 {
    nfstime3 {
        // nfstime3 has 32-bit seconds; later times saturate (year 2106).
        seconds: u32::try_from(t.secs).unwrap_or(u32::MAX),
        nseconds: t.nsecs,
    }
}

pub(crate) fn from_time(t: nfstime3) -> Timestamp {
    Timestamp {
        secs: u64::from(t.seconds),
        nsecs: t.nseconds,
    }
}

pub(crate) fn ftype(t: FileType) -> ftype3 {
    match t {
        FileType::Regular => ftype3::NF3REG,
        FileType::Directory => ftype3::NF3DIR,
        FileType::Symlink => ftype3::NF3LNK,
        FileType::CharDevice => ftype3::NF3CHR,
        FileType::BlockDevice => ftype3::NF3BLK,
        FileType::Socket => ftype3::NF3SOCK,
        FileType::Fifo => ftype3::NF3FIFO,
    }
}

pub(crate) fn fattr(a: &Attr) -> fattr3 {
    fattr3 {
        type_: ftype(a.ftype),
        mode: a.mode,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        used: a
            .size
            .div_ceil(USED_BLOCK_BYTES)
            .saturating_mul(USED_BLOCK_BYTES),
        rdev: specdata3 {
            specdata1: a.rdev.0,
            specdata2: a.rdev.1,
        },
        fsid: a.fsid,
        fileid: a.ino,
        atime: time(&a.atime),
        mtime: time(&a.mtime),
        ctime: time(&a.ctime),
    }
}

pub(crate) fn wcc_attr(w: &WccAttr) -> nfs_wcc_attr {
    nfs_wcc_attr {
        size: w.size,
        mtime: time(&w.mtime),
        ctime: time(&w.ctime),
    }
}

/// Used by argument decoding for set_atime / set_mtime.
pub(crate) fn set_time(how: u32, client: Option<nfstime3>) -> Option<SetTime> {
    match (how, client) {
        (1, _) => Some(SetTime::ServerNow),
        (2, Some(t)) => Some(SetTime::Client(from_time(t))),
        _ => None,
    }
}
