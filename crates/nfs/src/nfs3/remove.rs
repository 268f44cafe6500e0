//! REMOVE.

use std::sync::Arc;

use nfs3_types::nfs3::{REMOVE3resfail, REMOVE3resok};

use super::args;
use super::common::{
    blocking, check_name, dir_failed, finish, op_ctx, open, parse_args, post_attr, status, wcc,
    Intent, Prepared,
};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let op = match parse_args(args, args::dirop) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let prepared = blocking(
        shared,
        move |store| -> Prepared<REMOVE3resok, REMOVE3resfail> {
            let dir = open(store, &call, &op.dir, Intent::Modify)
                .map_err(|st| (st, REMOVE3resfail::default()))?;
            let fail = |st| {
                (
                    st,
                    REMOVE3resfail {
                        dir_wcc: dir_failed(store, &dir),
                    },
                )
            };
            check_name(&op.name).map_err(fail)?;
            match store.remove(&op_ctx(&call, &dir.cred), dir.ino(), &op.name) {
                Ok(m) => Ok((
                    REMOVE3resok {
                        dir_wcc: wcc(m.pre, &dir.attr, post_attr(store, dir.ino())),
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
    success(
        &finish(shared, prepared, |ok| REMOVE3resfail {
            dir_wcc: ok.dir_wcc,
        })
        .await,
    )
}
