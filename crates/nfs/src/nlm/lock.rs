//! NLM4_LOCK: takes a lock now, or (block = true) answers LCK_BLOCKED and
//! queues the request; the lock is handed over later by a GRANTED
//! callback (waiters.rs).

use std::sync::Arc;

use tandem_store::locks::LockOutcome;

use super::args::{self, encode_res, LockArgs};
use super::{open_file, settle, stat_of, Stat};
use crate::dispatch::Call;
use crate::nfs3::common::{blocking, parse_args};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    match parse_args(args, args::lock_args) {
        Ok(a) => ReplyStatus::Success(encode_res(&a.cookie, run(shared, call, &a).await)),
        Err(status) => status,
    }
}

pub(super) async fn run(shared: &Arc<Shared>, call: &Call, a: &LockArgs) -> Stat {
    // A switchover pauses lock changes as it pauses NFS changes.
    let Some(_passed) = shared.pause.enter() else {
        return Stat::DeniedGracePeriod;
    };
    let ino = match open_file(shared, call, &a.lock.fh).await {
        Ok(ino) => ino,
        Err(stat) => return stat,
    };
    let (owner, range, excl) = (a.lock.owner(), a.lock.range(), a.exclusive);
    match blocking(shared, move |s| s.lock(ino, &owner, range, excl)).await {
        Ok(Ok(LockOutcome::Granted(lsn))) => settle(shared, lsn).await,
        Ok(Ok(LockOutcome::Denied(_))) if a.block => {
            if shared
                .nlm
                .waiters
                .add(ino, a, super::callback::Route::back_to(call))
                .is_err()
            {
                return Stat::DeniedNoLocks;
            }
            // The holder may have let go between our try and the queueing.
            tokio::spawn(super::waiters::wake(shared.clone(), Some(ino)));
            Stat::Blocked
        }
        Ok(Ok(LockOutcome::Denied(_))) => Stat::Denied,
        Ok(Err(e)) => stat_of(&e),
        Err(_) => Stat::Failed,
    }
}
