//! GETATTR.

use std::sync::Arc;

use nfs3_types::nfs3::{GETATTR3res, GETATTR3resok, Nfs3Result};
use nfs3_types::xdr_codec::Void;

use super::args;
use super::common::{blocking, open, parse_args, Intent};
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
    let res = blocking(shared, move |store| -> GETATTR3res {
        match open(store, &call, &fh, Intent::Read) {
            Ok(t) => Nfs3Result::Ok(GETATTR3resok {
                obj_attributes: fattr(&t.attr),
            }),
            Err(st) => Nfs3Result::Err((st, Void)),
        }
    })
    .await;
    match res {
        Ok(r) => success(&r),
        Err(status) => status,
    }
}
