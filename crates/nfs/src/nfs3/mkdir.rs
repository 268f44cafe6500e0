//! MKDIR.

use std::sync::Arc;

use nfs3_types::nfs3::{MKDIR3resfail, MKDIR3resok};

use super::args;
use super::common::{parse_args, status};
use super::dirchange::make;
use crate::dispatch::Call;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let (op, set) = match parse_args(args, |r| Ok((args::dirop(r)?, args::sattr(r)?))) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let change = Box::new(
        move |store: &tandem_store::Store, ctx: &_, dir, name: &[u8]| {
            store.mkdir(ctx, dir, name, &set).map_err(|e| status(&e))
        },
    );
    make::<MKDIR3resok, MKDIR3resfail>(shared, call, op, change).await
}
