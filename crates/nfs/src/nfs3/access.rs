//! ACCESS: the store decides from mode bits; a read-only export also takes
//! away every right to change.

use std::sync::Arc;

use nfs3_types::nfs3::{
    ACCESS3res, ACCESS3resfail, ACCESS3resok, Nfs3Option, Nfs3Result, ACCESS3_DELETE,
    ACCESS3_EXTEND, ACCESS3_MODIFY,
};

use super::args;
use super::common::{blocking, open, parse_args, status, Intent};
use super::convert::fattr;
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

const ALL_ACCESS_BITS: u32 = 0x3f;
const MODIFY_BITS: u32 = ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let (fh, want) = match parse_args(args, |r| Ok((args::fh(r)?.to_vec(), r.u32()?))) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let res = blocking(shared, move |store| -> ACCESS3res {
        let t = match open(store, &call, &fh, Intent::Read) {
            Ok(t) => t,
            Err(st) => return Nfs3Result::Err((st, ACCESS3resfail::default())),
        };
        match store.access(&t.cred, t.ino(), want & ALL_ACCESS_BITS) {
            Ok((mut granted, attr)) => {
                if t.read_only {
                    granted &= !MODIFY_BITS;
                }
                Nfs3Result::Ok(ACCESS3resok {
                    obj_attributes: Nfs3Option::Some(fattr(&attr)),
                    access: granted,
                })
            }
            Err(e) => Nfs3Result::Err((
                status(&e),
                ACCESS3resfail {
                    obj_attributes: t.post(),
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
