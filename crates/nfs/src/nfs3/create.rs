//! CREATE: UNCHECKED, GUARDED or EXCLUSIVE (the store keeps the verifier
//! so a retransmitted exclusive create succeeds).

use std::sync::Arc;

use nfs3_types::nfs3::{CREATE3resfail, CREATE3resok};
use tandem_store::{CreateHow, SetAttr};

use super::args;
use super::common::{
    blocking, check_name, dir_failed, finish, made, op_ctx, open, parse_args, status, Intent,
    Prepared,
};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;
use crate::xdr::XdrError;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| {
        let op = args::dirop(r)?;
        let (how, set) = match r.u32()? {
            0 => (CreateHow::Unchecked, args::sattr(r)?),
            1 => (CreateHow::Guarded, args::sattr(r)?),
            2 => (CreateHow::Exclusive(r.fixed::<8>()?), SetAttr::default()),
            other => return Err(XdrError::BadDiscriminant(other)),
        };
        Ok((op, how, set))
    });
    let (op, how, set) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let prepared = blocking(
        shared,
        move |store| -> Prepared<CREATE3resok, CREATE3resfail> {
            let dir = open(store, &call, &op.dir, Intent::Modify)
                .map_err(|st| (st, CREATE3resfail::default()))?;
            let fail = |st| {
                (
                    st,
                    CREATE3resfail {
                        dir_wcc: dir_failed(store, &dir),
                    },
                )
            };
            check_name(&op.name).map_err(fail)?;
            match store.create(&op_ctx(&call, &dir.cred), dir.ino(), &op.name, how, &set) {
                Ok(m) => {
                    let m = made(store, &dir, m);
                    let ok = CREATE3resok {
                        obj: m.obj,
                        obj_attributes: m.obj_attributes,
                        dir_wcc: m.dir_wcc,
                    };
                    Ok((ok, m.lsn))
                }
                Err(e) => Err(fail(status(&e))),
            }
        },
    )
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(status) => return status,
    };
    success(
        &finish(shared, prepared, |ok| CREATE3resfail {
            dir_wcc: ok.dir_wcc,
        })
        .await,
    )
}
