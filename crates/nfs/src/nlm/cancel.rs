//! NLM4_CANCEL: withdraws a blocked LOCK still waiting. LCK_DENIED if no
//! such request waits (it may have been granted meanwhile: the client then
//! gets the GRANTED callback and unlocks).

use std::sync::Arc;

use super::args::{self, encode_res, LockArgs};
use super::{open_file, Stat};
use crate::dispatch::Call;
use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    match parse_args(args, args::cancel_args) {
        Ok(a) => ReplyStatus::Success(encode_res(&a.cookie, run(shared, call, &a).await)),
        Err(status) => status,
    }
}

pub(super) async fn run(shared: &Arc<Shared>, call: &Call, a: &LockArgs) -> Stat {
    let ino = match open_file(shared, call, &a.lock.fh).await {
        Ok(ino) => ino,
        Err(stat) => return stat,
    };
    if shared.nlm.waiters.cancel(ino, a) {
        Stat::Granted
    } else {
        Stat::Denied
    }
}
