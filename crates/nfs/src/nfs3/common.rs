//! What every procedure does around its store call: decode, check the
//! handle and export rules, run on the blocking pool, wait for durability.

use std::sync::Arc;

use nfs3_types::nfs3::{nfsstat3, post_op_attr, post_op_fh3, wcc_data, Nfs3Option, Nfs3Result};
use tandem_store::{
    Attr, Cred, Handle, Ino, Lsn, Mutation, OpCtx, ReplyKind, ReqId, Store, StoreError, WccAttr,
};
use tracing::{debug, error, warn};

use super::convert::{fattr, wcc_attr};
use crate::dispatch::Call;
use crate::exports::{client_allowed, map_cred};
use crate::rpc::auth::AuthCred;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;
use crate::xdr::{XdrError, XdrReader};

/// Decodes arguments; anything undecodable is GARBAGE_ARGS.
pub(crate) fn parse_args<'a, T>(
    args: &'a [u8],
    f: impl FnOnce(&mut XdrReader<'a>) -> Result<T, XdrError>,
) -> Result<T, ReplyStatus> {
    let mut r = XdrReader::new(args);
    f(&mut r).map_err(|e| {
        debug!(error = %e, "undecodable arguments");
        ReplyStatus::GarbageArgs
    })
}

/// Runs store work on the blocking pool: the store may wait on disk or on
/// journal back-pressure and must not stall the reactor.
pub(crate) async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Store) -> T + Send + 'static,
) -> Result<T, ReplyStatus> {
    let store = shared.store.clone();
    // On a multi-threaded runtime, block_in_place runs the call right here
    // and hands this worker's other tasks to another thread: no thread hop
    // and wake-up per call, which dominated small calls. A current-thread
    // runtime (tests) cannot do that, so it uses the blocking pool.
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::task::block_in_place(|| f(&store))
        }))
        .map_err(|_| {
            error!("store call panicked");
            ReplyStatus::SystemErr
        });
    }
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| {
            error!(error = %e, "store call failed abnormally");
            ReplyStatus::SystemErr
        })
}

/// Waits until `lsn` is durable ("Stable means stable") before a reply may say so,
/// and, in commit-sync and sync replication, until the replica says so too.
pub(crate) async fn durable(shared: &Arc<Shared>, lsn: Lsn) -> Result<(), nfsstat3> {
    durable_for(shared, lsn, ReplyKind::Stable).await
}

/// `durable` for a reply of the given kind: an UNSTABLE write waits for
/// the replica only in sync mode (the store decides by its policy).
pub(crate) async fn durable_for(
    shared: &Arc<Shared>,
    lsn: Lsn,
    kind: ReplyKind,
) -> Result<(), nfsstat3> {
    let waited = async {
        shared.store.wait_durable(lsn).await?;
        shared.store.wait_replica_for_reply(lsn, kind).await
    };
    waited.await.map_err(|e| {
        error!(lsn, error = %e, "waiting for durability failed");
        status(&e)
    })
}

/// The NFS status for a store error, one to one.
pub(crate) fn status(e: &StoreError) -> nfsstat3 {
    use nfsstat3::*;
    match e {
        StoreError::NoEnt => NFS3ERR_NOENT,
        StoreError::Exist => NFS3ERR_EXIST,
        StoreError::NotDir => NFS3ERR_NOTDIR,
        StoreError::IsDir => NFS3ERR_ISDIR,
        StoreError::NotEmpty => NFS3ERR_NOTEMPTY,
        StoreError::Access => NFS3ERR_ACCES,
        StoreError::Perm => NFS3ERR_PERM,
        StoreError::Stale => NFS3ERR_STALE,
        StoreError::NameTooLong { .. } => NFS3ERR_NAMETOOLONG,
        StoreError::Inval(_) => NFS3ERR_INVAL,
        StoreError::XDev => NFS3ERR_XDEV,
        StoreError::FBig => NFS3ERR_FBIG,
        StoreError::NoSpace(_) | StoreError::TooManyLocks { .. } | StoreError::DiskFull(_) => {
            NFS3ERR_NOSPC
        }
        StoreError::MLink => NFS3ERR_MLINK,
        StoreError::NotSupp(_) => NFS3ERR_NOTSUPP,
        StoreError::NotSync => NFS3ERR_NOT_SYNC,
        // A fenced store no longer takes writes: like a read-only one.
        StoreError::ReadOnly(_) | StoreError::Fenced { .. } => NFS3ERR_ROFS,
        StoreError::Io { .. } => {
            warn!(error = %e, "store I/O error");
            NFS3ERR_IO
        }
        StoreError::Corrupt(_)
        | StoreError::Closed
        | StoreError::Replication(_)
        | StoreError::NotRetained { .. }
        | StoreError::CatchupUnavailable(_) => {
            error!(error = %e, "store fault");
            NFS3ERR_SERVERFAULT
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    Read,
    /// The call changes something: refused on a read-only export.
    Modify,
}

/// A client handle checked against the export rules and the store.
pub(crate) struct Target {
    pub(crate) handle: Handle,
    pub(crate) attr: Attr,
    pub(crate) cred: Cred,
    pub(crate) read_only: bool,
}

impl Target {
    pub(crate) fn ino(&self) -> Ino {
        self.handle.ino
    }

    pub(crate) fn post(&self) -> post_op_attr {
        Nfs3Option::Some(fattr(&self.attr))
    }
}

pub(crate) fn open(
    store: &Store,
    call: &Call,
    fh: &[u8],
    intent: Intent,
) -> Result<Target, nfsstat3> {
    let handle = crate::handle::decode(fh).ok_or(nfsstat3::NFS3ERR_BADHANDLE)?;
    // A handle whose file system is gone is stale, not bad: we made it.
    let fs = store
        .fs_by_fsid(handle.fsid)
        .ok_or(nfsstat3::NFS3ERR_STALE)?;
    if !client_allowed(&fs.export, call.peer.ip()) {
        debug!(peer = %call.peer, fsid = handle.fsid, "client not allowed by export rules");
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    if intent == Intent::Modify && fs.export.read_only {
        return Err(nfsstat3::NFS3ERR_ROFS);
    }
    let attr = store.resolve(&handle).map_err(|e| status(&e))?;
    Ok(Target {
        handle,
        attr,
        cred: map_cred(&fs.export, &call.auth),
        read_only: fs.export.read_only,
    })
}

pub(crate) fn op_ctx(call: &Call, cred: &Cred) -> OpCtx {
    OpCtx {
        cred: cred.clone(),
        req: Some(ReqId {
            client: client_identity(call),
            xid: call.xid,
        }),
    }
}

/// Who sent a request, for the duplicate-request cache. Not the source
/// port: a client that reconnects after a failover (or any lost
/// connection) comes from a new one, but keeps its address, its AUTH_SYS
/// machine name and the xid of the request it resends.
pub(crate) fn client_identity(call: &Call) -> String {
    let ip = call.peer.ip().to_canonical();
    match &call.auth {
        AuthCred::Sys(sys) => format!("{ip} {}", String::from_utf8_lossy(&sys.machine_name)),
        AuthCred::None => ip.to_string(),
    }
}

pub(crate) fn handle_of(attr: &Attr) -> Handle {
    Handle {
        fsid: attr.fsid,
        ino: attr.ino,
        generation: attr.generation,
    }
}

pub(crate) fn fh_of(attr: &Attr) -> nfs3_types::nfs3::nfs_fh3 {
    nfs3_types::nfs3::nfs_fh3 {
        data: nfs3_types::xdr_codec::Opaque::owned(crate::handle::encode(&handle_of(attr))),
    }
}

/// Current attributes, or none if they cannot be had (post_op_attr is optional).
pub(crate) fn post_attr(store: &Store, ino: Ino) -> post_op_attr {
    match store.getattr(ino) {
        Ok(a) => Nfs3Option::Some(fattr(&a)),
        Err(_) => Nfs3Option::None,
    }
}

/// WCC data from the store's pre-op attributes, falling back to what we
/// resolved before the call.
pub(crate) fn wcc(pre: Option<WccAttr>, fallback: &Attr, after: post_op_attr) -> wcc_data {
    let pre = pre.unwrap_or_else(|| WccAttr::from(fallback));
    wcc_data {
        before: Nfs3Option::Some(wcc_attr(&pre)),
        after,
    }
}

/// Post-op only: for failures, where nothing changed.
pub(crate) fn wcc_after(after: post_op_attr) -> wcc_data {
    wcc_data {
        before: Nfs3Option::None,
        after,
    }
}

/// Longest name accepted, checked before the store sees it.
pub(crate) fn check_name(name: &[u8]) -> Result<(), nfsstat3> {
    if name.len() > tandem_store::MAX_NAME_BYTES {
        return Err(nfsstat3::NFS3ERR_NAMETOOLONG);
    }
    Ok(())
}

/// A mutation's outcome: the success body and the LSN it needs durable, or
/// a failure body.
pub(crate) type Prepared<T, E> = Result<(T, Lsn), (nfsstat3, E)>;

/// Sends success only once its record is durable; otherwise the failure
/// built by `on_lost` from the success body.
pub(crate) async fn finish<T, E>(
    shared: &Arc<Shared>,
    prepared: Prepared<T, E>,
    on_lost: impl FnOnce(T) -> E,
) -> Nfs3Result<T, E> {
    match prepared {
        Ok((ok, lsn)) => match durable(shared, lsn).await {
            Ok(()) => Nfs3Result::Ok(ok),
            Err(st) => Nfs3Result::Err((st, on_lost(ok))),
        },
        Err(e) => Nfs3Result::Err(e),
    }
}

/// The reply pieces shared by CREATE, MKDIR, SYMLINK and MKNOD.
pub(crate) struct Made {
    pub(crate) obj: post_op_fh3,
    pub(crate) obj_attributes: post_op_attr,
    pub(crate) dir_wcc: wcc_data,
}

pub(crate) fn made(store: &Store, dir: &Target, m: Mutation<Attr>) -> Made {
    Made {
        obj: Nfs3Option::Some(fh_of(&m.value)),
        obj_attributes: Nfs3Option::Some(fattr(&m.value)),
        dir_wcc: wcc(m.pre, &dir.attr, post_attr(store, dir.ino())),
    }
}

/// Directory WCC for a failed change: the directory as it is now.
pub(crate) fn dir_failed(store: &Store, dir: &Target) -> wcc_data {
    wcc_after(post_attr(store, dir.ino()))
}
