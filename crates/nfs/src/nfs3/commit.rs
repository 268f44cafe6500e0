//! COMMIT: everything written so far becomes durable before the reply.
//! Waiting for the newest LSN (not just this file's) is simpler and costs
//! nothing extra: the journal is one ordered log.

use std::sync::Arc;

use nfs3_types::nfs3::{
    wcc_data, writeverf3, COMMIT3res, COMMIT3resfail, COMMIT3resok, Nfs3Result,
};

use super::args;
use super::common::{blocking, durable, open, parse_args, wcc_after, Intent};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| Ok((args::fh(r)?.to_vec(), r.u64()?, r.u32()?)));
    let (fh, _offset, _count) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let opened = blocking(shared, move |store| {
        open(store, &call, &fh, Intent::Read)
            .map(|t| (t.post(), store.last_lsn(), store.write_verifier()))
    })
    .await;
    let res: COMMIT3res = match opened {
        Err(status) => return status,
        Ok(Err(st)) => Nfs3Result::Err((
            st,
            COMMIT3resfail {
                file_wcc: wcc_data::default(),
            },
        )),
        Ok(Ok((post, lsn, verf))) => match durable(shared, lsn).await {
            Ok(()) => Nfs3Result::Ok(COMMIT3resok {
                file_wcc: wcc_after(post),
                verf: writeverf3(verf),
            }),
            Err(st) => Nfs3Result::Err((
                st,
                COMMIT3resfail {
                    file_wcc: wcc_after(post),
                },
            )),
        },
    };
    success(&res)
}
