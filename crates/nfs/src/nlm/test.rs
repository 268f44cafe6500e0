//! NLM4_TEST: would this lock be granted? If not, who holds the way.

use std::sync::Arc;

use tandem_store::locks::Holder;

use super::args::{self, Out, TestArgs};
use super::{open_file, stat_of, Stat};
use crate::dispatch::Call;
use crate::nfs3::common::{blocking, parse_args};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    match parse_args(args, args::test_args) {
        Ok(a) => ReplyStatus::Success(run(shared, call, &a).await),
        Err(status) => status,
    }
}

/// The nlm4_testres body (also sent back by TEST_MSG).
pub(super) async fn run(shared: &Arc<Shared>, call: &Call, a: &TestArgs) -> Vec<u8> {
    let outcome = match open_file(shared, call, &a.lock.fh).await {
        Err(stat) => Err(stat),
        Ok(ino) => {
            let (owner, range, excl) = (a.lock.owner(), a.lock.range(), a.exclusive);
            match blocking(shared, move |s| s.test_lock(ino, &owner, range, excl)).await {
                Ok(Ok(holder)) => Ok(holder),
                Ok(Err(e)) => Err(stat_of(&e)),
                Err(_) => Err(Stat::Failed),
            }
        }
    };
    encode(&a.cookie, outcome)
}

fn encode(cookie: &[u8], outcome: Result<Option<Holder>, Stat>) -> Vec<u8> {
    let mut o = Out::default();
    o.opaque(cookie);
    match outcome {
        Ok(None) => {
            o.u32(Stat::Granted as u32);
        }
        Ok(Some(h)) => {
            let (offset, len) = h.piece.range.offset_len();
            o.u32(Stat::Denied as u32)
                .u32(u32::from(h.piece.exclusive))
                .u32(h.owner.svid)
                .opaque(&h.owner.oh)
                .u64(offset)
                .u64(len);
        }
        Err(stat) => {
            o.u32(stat as u32);
        }
    }
    o.0
}
