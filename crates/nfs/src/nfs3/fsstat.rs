//! FSSTAT.

use std::sync::Arc;

use nfs3_types::nfs3::{FSSTAT3res, FSSTAT3resfail, FSSTAT3resok, Nfs3Result};

use super::args;
use super::common::{blocking, open, parse_args, status, Intent};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let fh = match parse_args(args, |r| Ok(args::fh(r)?.to_vec())) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let res = blocking(shared, move |store| -> FSSTAT3res {
        let t = match open(store, &call, &fh, Intent::Read) {
            Ok(t) => t,
            Err(st) => return Nfs3Result::Err((st, FSSTAT3resfail::default())),
        };
        match store.fsstat(t.handle.fsid) {
            Ok(s) => Nfs3Result::Ok(FSSTAT3resok {
                obj_attributes: t.post(),
                tbytes: s.total_bytes,
                fbytes: s.free_bytes,
                abytes: s.avail_bytes,
                tfiles: s.total_files,
                ffiles: s.free_files,
                afiles: s.free_files,
                invarsec: 0,
            }),
            Err(e) => Nfs3Result::Err((
                status(&e),
                FSSTAT3resfail {
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
