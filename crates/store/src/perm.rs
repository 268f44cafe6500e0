//! POSIX permission rules, decided here rather than in the nfs layer so the
//! store enforces them whichever protocol calls it.

use crate::error::{Result, StoreError};
use crate::types::{access, Attr, Cred, FileType, S_ISVTX};

pub const MAY_READ: u32 = 4;
pub const MAY_WRITE: u32 = 2;
pub const MAY_EXEC: u32 = 1;

/// Which of `MAY_*` the caller holds on `attr` by its mode bits.
pub fn granted(cred: &Cred, attr: &Attr) -> u32 {
    if cred.uid == 0 {
        // Root may do anything, but executes only what someone may execute.
        let any_exec = attr.mode & 0o111 != 0 || attr.ftype == FileType::Directory;
        return MAY_READ | MAY_WRITE | if any_exec { MAY_EXEC } else { 0 };
    }
    let bits = if cred.uid == attr.uid {
        attr.mode >> 6
    } else if cred.in_group(attr.gid) {
        attr.mode >> 3
    } else {
        attr.mode
    };
    bits & 0o7
}

pub fn require(cred: &Cred, attr: &Attr, want: u32) -> Result<()> {
    if granted(cred, attr) & want == want {
        Ok(())
    } else {
        Err(StoreError::Access)
    }
}

/// Reading or writing file data. The owner may always: NFS has no open, so
/// a file created read-only must still take the data its creator writes
/// (the behaviour of the Linux NFS server).
pub fn require_data(cred: &Cred, attr: &Attr, want: u32) -> Result<()> {
    if cred.uid == attr.uid && attr.ftype == FileType::Regular {
        return Ok(());
    }
    require(cred, attr, want)
}

/// Adding or removing entries in `dir`.
pub fn require_dir_write(cred: &Cred, dir: &Attr) -> Result<()> {
    require(cred, dir, MAY_WRITE | MAY_EXEC)
}

/// In a sticky directory only the entry's owner, the directory's owner or
/// root may remove or rename an entry.
pub fn require_sticky(cred: &Cred, dir: &Attr, victim: &Attr) -> Result<()> {
    if dir.mode & S_ISVTX == 0 || cred.uid == 0 || cred.uid == dir.uid || cred.uid == victim.uid {
        Ok(())
    } else {
        Err(StoreError::Access)
    }
}

/// The ACCESS procedure's answer: the mode bits alone, for the owner too.
/// Clients decide `open()` from it, so the owner override of READ and
/// WRITE (`require_data`) must not show here: a mode-0000 file is not
/// openable by its owner.
pub fn access_bits(cred: &Cred, attr: &Attr, want: u32) -> u32 {
    let may = granted(cred, attr);
    let is_dir = attr.ftype == FileType::Directory;
    let mut out = 0;
    if may & MAY_READ != 0 {
        out |= access::READ;
    }
    if may & MAY_WRITE != 0 {
        out |= access::MODIFY | access::EXTEND;
        if is_dir {
            out |= access::DELETE;
        }
    }
    if may & MAY_EXEC != 0 {
        out |= if is_dir {
            access::LOOKUP
        } else {
            access::EXECUTE
        };
    }
    out & want
}
