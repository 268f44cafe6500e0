//! NLM4_GRANTED_RES: a client's asynchronous answer to our GRANTED
//! callback, naming it by our cookie. Anything but LCK_GRANTED means the
//! client does not want the lock any more: it is released.

use std::sync::Arc;

use super::args;
use super::Stat;
use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, args: &[u8]) -> ReplyStatus {
    let (cookie, stat) = match parse_args(args, args::res) {
        Ok(r) => r,
        Err(status) => return status,
    };
    if let Some((ino, owner, range)) = shared.nlm.pending_grants.take(&cookie) {
        if stat != Stat::Granted as u32 {
            super::callback::release_lock(shared, ino, owner, range).await;
        }
    }
    ReplyStatus::Success(Vec::new())
}
