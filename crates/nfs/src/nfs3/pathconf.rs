//! PATHCONF.

use std::sync::Arc;

use nfs3_types::nfs3::{Nfs3Result, PATHCONF3res, PATHCONF3resfail, PATHCONF3resok};

use super::args;
use super::common::{blocking, open, parse_args, Intent};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let fh = match parse_args(args, |r| Ok(args::fh(r)?.to_vec())) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let res = blocking(shared, move |store| -> PATHCONF3res {
        match open(store, &call, &fh, Intent::Read) {
            Ok(t) => Nfs3Result::Ok(PATHCONF3resok {
                obj_attributes: t.post(),
                linkmax: tandem_store::MAX_LINKS,
                name_max: tandem_store::MAX_NAME_BYTES as u32,
                no_trunc: true,
                chown_restricted: true,
                case_insensitive: false,
                case_preserving: true,
            }),
            Err(st) => Nfs3Result::Err((st, PATHCONF3resfail::default())),
        }
    })
    .await;
    match res {
        Ok(r) => success(&r),
        Err(status) => status,
    }
}
