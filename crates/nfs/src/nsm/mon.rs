//! SM_MON: registers a caller to be told when a host restarts (kept in the
//! journaled lock state, bounded there).

use std::sync::Arc;

use tracing::debug;

use crate::nfs3::common::{blocking, durable, parse_args};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| {
        let host = super::name(r)?;
        let id = super::my_id(r)?;
        Ok((host, id, r.fixed::<16>()?))
    });
    let (host, id, private) = match parsed {
        Ok(p) => p,
        Err(status) => return status,
    };
    let done = blocking(shared, move |s| s.monitor(&host, &id, private)).await;
    let ok = match done {
        Ok(Ok(None)) => true,
        Ok(Ok(Some(lsn))) => durable(shared, lsn).await.is_ok(),
        Ok(Err(e)) => {
            debug!(error = %e, "SM_MON refused");
            false
        }
        Err(status) => return status,
    };
    super::stat_res(ok, super::our_state(shared))
}
