//! READLINK.

use std::sync::Arc;

use nfs3_types::nfs3::{
    nfspath3, Nfs3Option, Nfs3Result, READLINK3res, READLINK3resfail, READLINK3resok,
};

use super::args;
use super::common::{blocking, open, parse_args, status, Intent};
use super::convert::fattr;
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let fh = match parse_args(args, |r| Ok(args::fh(r)?.to_vec())) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let res = blocking(shared, move |store| -> READLINK3res<'static> {
        let t = match open(store, &call, &fh, Intent::Read) {
            Ok(t) => t,
            Err(st) => return Nfs3Result::Err((st, READLINK3resfail::default())),
        };
        match store.readlink(&t.cred, t.ino()) {
            Ok((target, attr)) => Nfs3Result::Ok(READLINK3resok {
                symlink_attributes: Nfs3Option::Some(fattr(&attr)),
                data: nfspath3::from(target),
            }),
            Err(e) => Nfs3Result::Err((
                status(&e),
                READLINK3resfail {
                    symlink_attributes: t.post(),
                },
            )),
        }
    })
    .await;
    match res {
        Ok(r) => success(&r),
        Err(status) => status,
    }
}
