//! SM_UNMON: withdraws one registration for one host.

use std::sync::Arc;

use tracing::debug;

use crate::nfs3::common::{blocking, parse_args};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, args: &[u8]) -> ReplyStatus {
    let (host, id) = match parse_args(args, |r| Ok((super::name(r)?, super::my_id(r)?))) {
        Ok(p) => p,
        Err(status) => return status,
    };
    match blocking(shared, move |s| s.unmonitor(Some(&host), &id)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(error = %e, "SM_UNMON failed"),
        Err(status) => return status,
    }
    super::state_only(super::our_state(shared))
}
