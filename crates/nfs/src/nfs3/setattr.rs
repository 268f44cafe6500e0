//! SETATTR, with the optional ctime guard (NOT_SYNC on mismatch).

use std::sync::Arc;

use nfs3_types::nfs3::{Nfs3Option, SETATTR3resfail, SETATTR3resok};

use super::args;
use super::common::{
    blocking, finish, op_ctx, open, parse_args, post_attr, status, wcc, wcc_after, Intent, Prepared,
};
use super::convert::{fattr, from_time};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| {
        let fh = args::fh(r)?.to_vec();
        let set = args::sattr(r)?;
        let guard = if r.bool()? {
            Some(args::nfstime(r)?)
        } else {
            None
        };
        Ok((fh, set, guard))
    });
    let (fh, set, guard) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let prepared = blocking(
        shared,
        move |store| -> Prepared<SETATTR3resok, SETATTR3resfail> {
            let t = open(store, &call, &fh, Intent::Modify)
                .map_err(|st| (st, SETATTR3resfail::default()))?;
            match store.setattr(&op_ctx(&call, &t.cred), t.ino(), &set, guard.map(from_time)) {
                Ok(m) => Ok((
                    SETATTR3resok {
                        obj_wcc: wcc(m.pre, &t.attr, Nfs3Option::Some(fattr(&m.value))),
                    },
                    m.lsn,
                )),
                Err(e) => Err((
                    status(&e),
                    SETATTR3resfail {
                        obj_wcc: wcc_after(post_attr(store, t.ino())),
                    },
                )),
            }
        },
    )
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(status) => return status,
    };
    success(
        &finish(shared, prepared, |ok| SETATTR3resfail {
            obj_wcc: ok.obj_wcc,
        })
        .await,
    )
}
