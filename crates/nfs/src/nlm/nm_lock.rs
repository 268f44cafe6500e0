//! NLM4_NM_LOCK: a LOCK from a client that runs no NSM (so nothing will
//! tell us of its reboot); never blocks.

use std::sync::Arc;

use super::args::{self, encode_res};
use crate::dispatch::Call;
use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    match parse_args(args, args::lock_args) {
        Ok(mut a) => {
            a.block = false;
            ReplyStatus::Success(encode_res(
                &a.cookie,
                super::lock::run(shared, call, &a).await,
            ))
        }
        Err(status) => status,
    }
}
