//! RENAME. Directories in different file systems are XDEV here: the store
//! addresses inodes by number alone and cannot see the difference.

use std::sync::Arc;

use nfs3_types::nfs3::{nfsstat3, RENAME3resfail, RENAME3resok};

use super::args;
use super::common::{
    blocking, check_name, dir_failed, finish, op_ctx, open, parse_args, post_attr, status, wcc,
    Intent, Prepared,
};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let (from, to) = match parse_args(args, |r| Ok((args::dirop(r)?, args::dirop(r)?))) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let prepared = blocking(
        shared,
        move |store| -> Prepared<RENAME3resok, RENAME3resfail> {
            let opened = open(store, &call, &from.dir, Intent::Modify)
                .and_then(|f| Ok((f, open(store, &call, &to.dir, Intent::Modify)?)));
            let (fdir, tdir) = opened.map_err(|st| (st, RENAME3resfail::default()))?;
            let fail = |st| {
                (
                    st,
                    RENAME3resfail {
                        fromdir_wcc: dir_failed(store, &fdir),
                        todir_wcc: dir_failed(store, &tdir),
                    },
                )
            };
            if fdir.handle.fsid != tdir.handle.fsid {
                return Err(fail(nfsstat3::NFS3ERR_XDEV));
            }
            check_name(&from.name)
                .and_then(|()| check_name(&to.name))
                .map_err(fail)?;
            let ctx = op_ctx(&call, &fdir.cred);
            match store.rename(&ctx, fdir.ino(), &from.name, tdir.ino(), &to.name) {
                Ok(m) => Ok((
                    RENAME3resok {
                        fromdir_wcc: wcc(m.pre, &fdir.attr, post_attr(store, fdir.ino())),
                        // The store reports only the source directory's pre-op
                        // attributes; for the target we have what we resolved.
                        todir_wcc: wcc(None, &tdir.attr, post_attr(store, tdir.ino())),
                    },
                    m.lsn,
                )),
                Err(e) => Err(fail(status(&e))),
            }
        },
    )
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(status) => return status,
    };
    let res = finish(shared, prepared, |ok| RENAME3resfail {
        fromdir_wcc: ok.fromdir_wcc,
        todir_wcc: ok.todir_wcc,
    })
    .await;
    success(&res)
}
