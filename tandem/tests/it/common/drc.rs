//! The four non-idempotent NFS requests (CREATE, REMOVE, RENAME, LINK)
//! sent raw with fixed xids, so a test can retransmit them after a
//! failover and see the duplicate-request cache answer.

use nfs3_client::nfs3_types::nfs3::*;
use tokio::net::TcpStream;

use super::nfs::dirop;
use super::rpc::nfs_call_with_xid;

pub const NFSPROC3_CREATE: u32 = 8;
pub const NFSPROC3_REMOVE: u32 = 12;
pub const NFSPROC3_RENAME: u32 = 14;
pub const NFSPROC3_LINK: u32 = 15;

/// The four non-idempotent requests, each with its own xid.
pub struct Requests {
    pub root: nfs_fh3,
}

pub const XID_CREATE: u32 = 0x5e55_0001;
pub const XID_REMOVE: u32 = 0x5e55_0002;
pub const XID_RENAME: u32 = 0x5e55_0003;
pub const XID_LINK: u32 = 0x5e55_0004;

pub fn create_args<'a>(root: &nfs_fh3, name: &'a str) -> CREATE3args<'a> {
    CREATE3args {
        where_: dirop(root, name),
        how: createhow3::GUARDED(sattr3::default()),
    }
}

pub fn status<T, E>(r: &Nfs3Result<T, E>) -> nfsstat3 {
    match r {
        Nfs3Result::Ok(_) => nfsstat3::NFS3_OK,
        Nfs3Result::Err((st, _)) => *st,
    }
}

pub fn created_handle(r: Nfs3Result<CREATE3resok, CREATE3resfail>) -> nfs_fh3 {
    match r {
        Nfs3Result::Ok(ok) => match ok.obj {
            Nfs3Option::Some(fh) => fh,
            Nfs3Option::None => panic!("CREATE returned no handle"),
        },
        Nfs3Result::Err((st, _)) => panic!("CREATE: {st:?}"),
    }
}

impl Requests {
    /// Sends each request once (the original), asserting it succeeded.
    pub async fn send(&self, s: &mut TcpStream) -> nfs_fh3 {
        let created: CREATE3res = nfs_call_with_xid(
            s,
            XID_CREATE,
            NFSPROC3_CREATE,
            &create_args(&self.root, "made"),
        )
        .await;
        let made = created_handle(created);
        self.send_rest(s, &made).await;
        made
    }

    /// REMOVE, RENAME and LINK, each asserted NFS3_OK.
    pub async fn send_rest(&self, s: &mut TcpStream, made: &nfs_fh3) {
        let removed: REMOVE3res = nfs_call_with_xid(
            s,
            XID_REMOVE,
            NFSPROC3_REMOVE,
            &REMOVE3args {
                object: dirop(&self.root, "gone"),
            },
        )
        .await;
        assert_eq!(status(&removed), nfsstat3::NFS3_OK, "REMOVE");
        let renamed: RENAME3res = nfs_call_with_xid(
            s,
            XID_RENAME,
            NFSPROC3_RENAME,
            &RENAME3args {
                from: dirop(&self.root, "old"),
                to: dirop(&self.root, "new"),
            },
        )
        .await;
        assert_eq!(status(&renamed), nfsstat3::NFS3_OK, "RENAME");
        let linked: LINK3res = nfs_call_with_xid(
            s,
            XID_LINK,
            NFSPROC3_LINK,
            &LINK3args {
                file: made.clone(),
                link: dirop(&self.root, "made-link"),
            },
        )
        .await;
        assert_eq!(status(&linked), nfsstat3::NFS3_OK, "LINK");
    }

    /// After a failover: the original CREATE (same xid) gets its original
    /// reply, REMOVE, RENAME and LINK again NFS3_OK (all from the
    /// duplicate-request cache that travelled in the journal); the same
    /// CREATE and REMOVE under new xids are real conflicts, so the cache
    /// is what answered.
    pub async fn assert_retransmissions_answered(&self, raw: &mut TcpStream, made: &nfs_fh3) {
        let again: CREATE3res = nfs_call_with_xid(
            raw,
            XID_CREATE,
            NFSPROC3_CREATE,
            &create_args(&self.root, "made"),
        )
        .await;
        assert_eq!(
            &created_handle(again),
            made,
            "the retransmitted CREATE gets the original reply"
        );
        self.send_rest(raw, made).await;
        let fresh: CREATE3res = nfs_call_with_xid(
            raw,
            XID_CREATE + 100,
            NFSPROC3_CREATE,
            &create_args(&self.root, "made"),
        )
        .await;
        assert_eq!(status(&fresh), nfsstat3::NFS3ERR_EXIST);
        let fresh: REMOVE3res = nfs_call_with_xid(
            raw,
            XID_REMOVE + 100,
            NFSPROC3_REMOVE,
            &REMOVE3args {
                object: dirop(&self.root, "gone"),
            },
        )
        .await;
        assert_eq!(status(&fresh), nfsstat3::NFS3ERR_NOENT);
    }
}
