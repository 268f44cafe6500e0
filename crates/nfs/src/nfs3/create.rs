//! CREATE: UNCHECKED, GUARDED or EXCLUSIVE (the store keeps the verifier
//! so a retransmitted exclusive create succeeds).

use std::sync::Arc;

use nfs3_types::nfs3::{CREATE3resfail, CREATE3resok};
use tandem_store::{CreateHow, SetAttr};

use super::args;
use super::common::{parse_args, status};
use super::dirchange::make;
use crate::dispatch::Call;
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
    let change = Box::new(
        move |store: &tandem_store::Store, ctx: &_, dir, name: &[u8]| {
            store
                .create(ctx, dir, name, how, &set)
                .map_err(|e| status(&e))
        },
    );
    make::<CREATE3resok, CREATE3resfail>(shared, call, op, change).await
}
