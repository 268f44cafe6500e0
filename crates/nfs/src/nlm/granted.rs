//! NLM4_GRANTED: the server-to-client callback. This server is no NLM
//! client, so no request of ours waits: LCK_DENIED, and the caller
//! releases what it granted.

use super::args::{self, encode_res};
use super::Stat;
use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;

pub(super) fn call(args: &[u8]) -> ReplyStatus {
    match parse_args(args, args::test_args) {
        Ok(a) => ReplyStatus::Success(encode_res(&a.cookie, Stat::Denied)),
        Err(status) => status,
    }
}
