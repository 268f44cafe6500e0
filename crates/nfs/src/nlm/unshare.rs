//! NLM4_UNSHARE: withdraws the caller's share reservation on a file (none
//! held, or the file gone, is no error).

use std::sync::Arc;

use tandem_store::locks::ShareOutcome;

use super::Stat;
use crate::dispatch::Call;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    super::share::run(shared, call, args, Stat::Granted, |s, ino, owner, _| {
        s.unshare(ino, &owner).map(ShareOutcome::Granted)
    })
    .await
}
