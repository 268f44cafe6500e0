//! SM_UNMON_ALL: withdraws a caller's registrations for every host.

use std::sync::Arc;

use tracing::debug;

use crate::nfs3::common::{blocking, parse_args};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, args: &[u8]) -> ReplyStatus {
    let id = match parse_args(args, super::my_id) {
        Ok(id) => id,
        Err(status) => return status,
    };
    match blocking(shared, move |s| s.unmonitor(None, &id)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(error = %e, "SM_UNMON_ALL failed"),
        Err(status) => return status,
    }
    super::state_only(super::our_state(shared))
}
