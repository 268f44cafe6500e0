//! SM_STAT: this vserver's NSM state.

use std::sync::Arc;

use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, args: &[u8]) -> ReplyStatus {
    match parse_args(args, super::name) {
        Ok(_) => super::stat_res(true, super::our_state(shared)),
        Err(status) => status,
    }
}
