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
use tandem_store::ReadReply;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| Ok((args::fh(r)?.to_vec(), r.u64()?, r.u32()?)));
    let (fh, offset, count) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let count = count.min(MAX_READ_BYTES);
    let call = call.clone();
    let res = blocking(
        shared,
        move |store| -> Result<ReadReply, READ3res<'static>> {
            let t = match open(store, &call, &fh, Intent::Read) {
                Ok(t) => t,
                Err(st) => return Err(Nfs3Result::Err((st, READ3resfail::default()))),
            };
            store.read(&t.cred, t.ino(), offset, count).map_err(|e| {
                Nfs3Result::Err((
                    status(&e),
                    READ3resfail {
                        file_attributes: t.post(),
                    },
                ))
            })
        },
    )
    .await;
    match res {
        Ok(Ok(reply)) => ok_reply(reply),
        Ok(Err(failed)) => success(&failed),
        Err(status) => status,
    }
}

/// READ3resok with the data kept apart (see `ReplyStatus::SuccessWithData`):
/// the XDR of an empty-data reply, minus its final length word, is exactly
/// the prefix we need, so nfs3_types still does the encoding.
fn ok_reply(reply: ReadReply) -> ReplyStatus {
    let len = u32::try_from(reply.data.len()).unwrap_or(u32::MAX);
    let head: READ3res<'static> = Nfs3Result::Ok(READ3resok {
        file_attributes: Nfs3Option::Some(fattr(&reply.attr)),
        count: len,
        eof: reply.eof,
        data: Opaque::owned(Vec::new()),
    });
    match success(&head) {
        ReplyStatus::Success(mut body) => {
            // The empty opaque encoded as a zero length word: replace it.
            body.truncate(body.len().saturating_sub(4));
            body.extend_from_slice(&len.to_be_bytes());
            ReplyStatus::SuccessWithData {
                body,
                data: reply.data,
            }
        }
        other => other,
    }
}
