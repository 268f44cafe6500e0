//! NLM4_UNLOCK: releases a range (a part of a lock splits it), then lets
//! the file's blocked requests try again.

use std::sync::Arc;

use super::args::{self, encode_res, UnlockArgs};
use super::{open_file, settle, stat_of, Stat};
use crate::dispatch::Call;
use crate::nfs3::common::{blocking, parse_args};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    match parse_args(args, args::unlock_args) {
        Ok(a) => ReplyStatus::Success(encode_res(&a.cookie, run(shared, call, &a).await)),
        Err(status) => status,
    }
}

pub(super) async fn run(shared: &Arc<Shared>, call: &Call, a: &UnlockArgs) -> Stat {
    let Some(_passed) = shared.pause.enter() else {
        return Stat::DeniedGracePeriod;
    };
    let ino = match open_file(shared, call, &a.lock.fh).await {
        Ok(ino) => ino,
        // A file that is gone holds no locks: nothing to release.
        Err(Stat::StaleFh) => return Stat::Granted,
        Err(stat) => return stat,
    };
    let (owner, range) = (a.lock.owner(), a.lock.range());
    match blocking(shared, move |s| s.unlock(ino, &owner, range)).await {
        Ok(Ok(lsn)) => {
            let stat = settle(shared, lsn).await;
            if lsn.is_some() {
                tokio::spawn(super::waiters::wake(shared.clone(), Some(ino)));
            }
            stat
        }
        Ok(Err(e)) => stat_of(&e),
        Err(_) => Stat::Failed,
    }
}
