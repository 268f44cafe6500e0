//! READ: at most rtmax bytes per call (a larger count gets a short read,
//! which RFC 1813 allows).

use std::sync::Arc;

use nfs3_types::nfs3::{Nfs3Option, Nfs3Result, READ3res, READ3resfail, READ3resok};
use nfs3_types::xdr_codec::Opaque;

use super::args;
use super::common::{blocking, open, parse_args, status, Intent};
use super::convert::fattr;
use super::fsinfo::MAX_READ_BYTES;
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| Ok((args::fh(r)?.to_vec(), r.u64()?, r.u32()?)));
    let (fh, offset, count) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let count = count.min(MAX_READ_BYTES);
    let call = call.clone();
    let res = blocking(shared, move |store| -> READ3res<'static> {
        let t = match open(store, &call, &fh, Intent::Read) {
            Ok(t) => t,
            Err(st) => return Nfs3Result::Err((st, READ3resfail::default())),
        };
        match store.read(&t.cred, t.ino(), offset, count) {
            Ok(reply) => Nfs3Result::Ok(READ3resok {
                file_attributes: Nfs3Option::Some(fattr(&reply.attr)),
                count: u32::try_from(reply.data.len()).unwrap_or(u32::MAX),
                eof: reply.eof,
                data: Opaque::owned(reply.data),
            }),
            Err(e) => Nfs3Result::Err((
                status(&e),
                READ3resfail {
                    file_attributes: t.post(),
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
