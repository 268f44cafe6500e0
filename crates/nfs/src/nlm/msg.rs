//! The asynchronous forms TEST_MSG, LOCK_MSG, CANCEL_MSG, UNLOCK_MSG (and
//! GRANTED_MSG): the call is answered at once with no result, and the
//! result goes back as a call of the matching _RES procedure to the
//! client's lock manager (callback.rs).

use std::sync::Arc;

use super::args::{self, encode_res};
use crate::dispatch::Call;
use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

/// _RES procedure = _MSG procedure + 5.
const RES_OFFSET: u32 = 5;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let body = match call.proc_num {
        6 => match parse_args(args, args::test_args) {
            Ok(a) => super::test::run(shared, call, &a).await,
            Err(status) => return status,
        },
        7 => match parse_args(args, args::lock_args) {
            Ok(a) => encode_res(&a.cookie, super::lock::run(shared, call, &a).await),
            Err(status) => return status,
        },
        8 => match parse_args(args, args::cancel_args) {
            Ok(a) => encode_res(&a.cookie, super::cancel::run(shared, call, &a).await),
            Err(status) => return status,
        },
        9 => match parse_args(args, args::unlock_args) {
            Ok(a) => encode_res(&a.cookie, super::unlock::run(shared, call, &a).await),
            Err(status) => return status,
        },
        // GRANTED_MSG: no request of ours waits (see granted.rs).
        _ => match parse_args(args, args::test_args) {
            Ok(a) => encode_res(&a.cookie, super::Stat::Denied),
            Err(status) => return status,
        },
    };
    let res_proc = call.proc_num + RES_OFFSET;
    let route = super::callback::Route::back_to(call);
    super::callback::spawn_result(shared.clone(), route, res_proc, body);
    ReplyStatus::Success(Vec::new())
}
