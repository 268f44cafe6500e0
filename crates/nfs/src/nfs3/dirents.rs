//! Directory listing shared by READDIR and READDIRPLUS: "." and ".." first
//! with cookies 1 and 2, then the store's entries with their own stable
//! cookies (from 3), so cookies mean the same at every site.

use tandem_store::{Attr, Store};

use super::common::{status, Target};
use nfs3_types::nfs3::nfsstat3;

/// Most entries fetched from the store for one reply.
pub(super) const MAX_READDIR_ENTRIES: usize = 4096;
/// Reply size cap whatever the client asks: bounds memory per call.
pub(super) const MAX_READDIR_REPLY_BYTES: u32 = 1 << 20;
/// Size of the smallest possible entry on the wire (1-byte name).
pub(super) const MIN_ENTRY_BYTES: u32 = 4 + 8 + 4 + 4 + 8;

pub(super) struct Item {
    pub(super) cookie: u64,
    pub(super) fileid: u64,
    pub(super) name: Vec<u8>,
    /// `None` when the attributes could not be had (".." without search
    /// permission): the entry is listed, without attributes or handle.
    pub(super) attr: Option<Attr>,
}

pub(super) struct Listing {
    pub(super) items: Vec<Item>,
    pub(super) eof: bool,
    pub(super) dir_attr: Attr,
}

pub(super) fn list(
    store: &Store,
    dir: &Target,
    cookie: u64,
    max_entries: usize,
) -> Result<Listing, nfsstat3> {
    if dir.attr.ftype != tandem_store::FileType::Directory {
        return Err(nfsstat3::NFS3ERR_NOTDIR);
    }
    let mut items = Vec::new();
    if cookie == 0 {
        items.push(Item {
            cookie: 1,
            fileid: dir.attr.ino,
            name: b".".to_vec(),
            attr: Some(dir.attr.clone()),
        });
    }
    if cookie <= 1 {
        let parent = store.lookup(&dir.cred, dir.ino(), b"..").ok();
        items.push(Item {
            cookie: 2,
            fileid: parent.as_ref().map_or(dir.attr.ino, |p| p.ino),
            name: b"..".to_vec(),
            attr: parent,
        });
    }
    let store_cookie = if cookie <= 2 { 0 } else { cookie };
    let rd = store
        .readdir(&dir.cred, dir.ino(), store_cookie, max_entries)
        .map_err(|e| status(&e))?;
    items.extend(rd.entries.into_iter().map(|e| Item {
        cookie: e.cookie,
        fileid: e.attr.ino,
        name: e.name,
        attr: Some(e.attr),
    }));
    Ok(Listing {
        items,
        eof: rd.eof,
        dir_attr: rd.dir_attr,
    })
}

/// XDR size of a name: length word plus padded bytes.
pub(super) fn name_bytes(name: &[u8]) -> u32 {
    let padded = name.len().div_ceil(4).saturating_mul(4);
    u32::try_from(padded).unwrap_or(u32::MAX).saturating_add(4)
}
