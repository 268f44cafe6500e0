//! LOOKUP.

use std::sync::Arc;

use nfs3_types::nfs3::{LOOKUP3res, LOOKUP3resfail, LOOKUP3resok, Nfs3Option, Nfs3Result};

use super::args;
use super::common::{blocking, check_name, fh_of, open, parse_args, status, Intent};
use super::convert::fattr;
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let op = match parse_args(args, args::dirop) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let res = blocking(shared, move |store| -> LOOKUP3res {
        let dir = match open(store, &call, &op.dir, Intent::Read) {
            Ok(t) => t,
            Err(st) => return Nfs3Result::Err((st, LOOKUP3resfail::default())),
        };
        let fail = |st| {
            Nfs3Result::Err((
                st,
                LOOKUP3resfail {
                    dir_attributes: dir.post(),
                },
            ))
        };
        if let Err(st) = check_name(&op.name) {
            return fail(st);
        }
        match store.lookup(&dir.cred, dir.ino(), &op.name) {
            Ok(child) => Nfs3Result::Ok(LOOKUP3resok {
                object: fh_of(&child),
                obj_attributes: Nfs3Option::Some(fattr(&child)),
                dir_attributes: dir.post(),
            }),
            Err(e) => fail(status(&e)),
        }
    })
    .await;
    match res {
        Ok(r) => success(&r),
        Err(status) => status,
    }
}
