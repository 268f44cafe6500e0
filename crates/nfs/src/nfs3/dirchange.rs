//! The shape CREATE, MKDIR, SYMLINK, MKNOD, REMOVE and RMDIR share: open
//! the directory for change, check the name, run one store call, and reply
//! only once its record is durable; every failure carries the directory's
//! WCC. The procedures differ only in their arguments, the store call and
//! their result types, which is all their own files hold.

use std::sync::Arc;

use nfs3_types::nfs3::{
    nfsstat3, wcc_data, CREATE3resfail, CREATE3resok, MKDIR3resfail, MKDIR3resok, MKNOD3resfail,
    MKNOD3resok, Nfs3Result, REMOVE3resfail, REMOVE3resok, RMDIR3resfail, RMDIR3resok,
    SYMLINK3resfail, SYMLINK3resok,
};
use nfs3_types::xdr_codec::Pack;
use tandem_store::{Ino, Mutation, OpCtx, Store};

use super::args::DirOp;
use super::common::{
    blocking, check_name, dir_failed, finish, made, op_ctx, open, post_attr, wcc, Intent, Made,
    Prepared, Target,
};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

/// A result type (success or failure) that carries the directory's WCC.
pub(super) trait DirWcc {
    fn from_dir_wcc(dir_wcc: wcc_data) -> Self;
    fn into_dir_wcc(self) -> wcc_data;
}

/// The success of a procedure that makes a new object.
pub(super) trait FromMade {
    fn from_made(m: Made) -> Self;
}

macro_rules! dir_wcc_types {
    ($($t:ty),*) => {$(
        impl DirWcc for $t {
            fn from_dir_wcc(dir_wcc: wcc_data) -> Self {
                Self { dir_wcc }
            }
            fn into_dir_wcc(self) -> wcc_data {
                self.dir_wcc
            }
        }
    )*};
}

dir_wcc_types!(
    CREATE3resfail,
    MKDIR3resfail,
    SYMLINK3resfail,
    MKNOD3resfail,
    REMOVE3resfail,
    RMDIR3resfail,
    REMOVE3resok,
    RMDIR3resok
);

macro_rules! made_types {
    ($($t:ty),*) => {$(
        impl FromMade for $t {
            fn from_made(m: Made) -> Self {
                Self {
                    obj: m.obj,
                    obj_attributes: m.obj_attributes,
                    dir_wcc: m.dir_wcc,
                }
            }
        }
        impl DirWcc for $t {
            fn from_dir_wcc(dir_wcc: wcc_data) -> Self {
                Self {
                    obj: Default::default(),
                    obj_attributes: Default::default(),
                    dir_wcc,
                }
            }
            fn into_dir_wcc(self) -> wcc_data {
                self.dir_wcc
            }
        }
    )*};
}

made_types!(CREATE3resok, MKDIR3resok, SYMLINK3resok, MKNOD3resok);

/// The store call of one procedure: directory inode and name in, the
/// mutation (or the NFS status it failed with) out.
pub(super) type Change<V> =
    Box<dyn FnOnce(&Store, &OpCtx, Ino, &[u8]) -> Result<Mutation<V>, nfsstat3> + Send>;

/// Runs a procedure that makes a new object (CREATE, MKDIR, SYMLINK, MKNOD).
pub(super) async fn make<Ok, Fail>(
    shared: &Arc<Shared>,
    call: &Call,
    op: DirOp,
    change: Change<tandem_store::Attr>,
) -> ReplyStatus
where
    Ok: FromMade + DirWcc + Send + 'static,
    Fail: DirWcc + Send + 'static,
    Nfs3Result<Ok, Fail>: Pack,
{
    run::<Ok, Fail, _>(shared, call, op, change, |store, dir, m| {
        Ok::from_made(made(store, dir, m))
    })
    .await
}

/// Runs a procedure that removes a name (REMOVE, RMDIR).
pub(super) async fn unlink<Ok, Fail>(
    shared: &Arc<Shared>,
    call: &Call,
    op: DirOp,
    change: Change<()>,
) -> ReplyStatus
where
    Ok: DirWcc + Send + 'static,
    Fail: DirWcc + Send + 'static,
    Nfs3Result<Ok, Fail>: Pack,
{
    run::<Ok, Fail, _>(shared, call, op, change, |store, dir, m| {
        Ok::from_dir_wcc(wcc(m.pre, &dir.attr, post_attr(store, dir.ino())))
    })
    .await
}

async fn run<Ok, Fail, V>(
    shared: &Arc<Shared>,
    call: &Call,
    op: DirOp,
    change: Change<V>,
    reply: impl FnOnce(&Store, &Target, Mutation<V>) -> Ok + Send + 'static,
) -> ReplyStatus
where
    Ok: DirWcc + Send + 'static,
    Fail: DirWcc + Send + 'static,
    V: Send + 'static,
    Nfs3Result<Ok, Fail>: Pack,
{
    let call = call.clone();
    let prepared = blocking(shared, move |store| -> Prepared<Ok, Fail> {
        let dir = open(store, &call, &op.dir, Intent::Modify)
            .map_err(|st| (st, Fail::from_dir_wcc(wcc_data::default())))?;
        let fail = |st| (st, Fail::from_dir_wcc(dir_failed(store, &dir)));
        check_name(&op.name).map_err(fail)?;
        match change(store, &op_ctx(&call, &dir.cred), dir.ino(), &op.name) {
            Ok(m) => {
                let lsn = m.lsn;
                Ok((reply(store, &dir, m), lsn))
            }
            Err(st) => Err(fail(st)),
        }
    })
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(status) => return status,
    };
    success(&finish(shared, prepared, |ok| Fail::from_dir_wcc(ok.into_dir_wcc())).await)
}
