//! SM_NOTIFY: a host restarted with a new state number; whatever it held
//! or waited for here goes.

use std::sync::Arc;

use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, args: &[u8]) -> ReplyStatus {
    let (host, state) = match parse_args(args, |r| Ok((super::name(r)?, r.u32()?))) {
        Ok(p) => p,
        Err(status) => return status,
    };
    crate::nlm::free_host(shared, host, Some(state)).await;
    ReplyStatus::Success(Vec::new())
}
