//! REMOVE.

use std::sync::Arc;

use nfs3_types::nfs3::{REMOVE3resfail, REMOVE3resok};

use super::args;
use super::common::{parse_args, status};
use super::dirchange::unlink;
use crate::dispatch::Call;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let op = match parse_args(args, args::dirop) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let change = Box::new(|store: &tandem_store::Store, ctx: &_, dir, name: &[u8]| {
        store.remove(ctx, dir, name).map_err(|e| status(&e))
    });
    unlink::<REMOVE3resok, REMOVE3resfail>(shared, call, op, change).await
}
