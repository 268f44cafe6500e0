//! MKDIR.

use std::sync::Arc;

use nfs3_types::nfs3::{MKDIR3resfail, MKDIR3resok};

use super::args;
use super::common::{
    blocking, check_name, dir_failed, finish, made, op_ctx, open, parse_args, status, Intent,
    Prepared,
};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let (op, set) = match parse_args(args, |r| Ok((args::dirop(r)?, args::sattr(r)?))) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let prepared = blocking(
        shared,
        move |store| -> Prepared<MKDIR3resok, MKDIR3resfail> {
            let dir = open(store, &call, &op.dir, Intent::Modify)
                .map_err(|st| (st, MKDIR3resfail::default()))?;
            let fail = |st| {
                (
                    st,
                    MKDIR3resfail {
                        dir_wcc: dir_failed(store, &dir),
                    },
                )
            };
            check_name(&op.name).map_err(fail)?;
            match store.mkdir(&op_ctx(&call, &dir.cred), dir.ino(), &op.name, &set) {
                Ok(m) => {
                    let m = made(store, &dir, m);
                    let ok = MKDIR3resok {
                        obj: m.obj,
                        obj_attributes: m.obj_attributes,
                        dir_wcc: m.dir_wcc,
                    };
                    Ok((ok, m.lsn))
                }
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
        &finish(shared, prepared, |ok| MKDIR3resfail {
            dir_wcc: ok.dir_wcc,
        })
        .await,
    )
}
