//! NLM4_FREE_ALL: the client host restarted (sent by its NSM): every lock,
//! share reservation and blocked request of the host goes, and the files'
//! other waiters try again.

use std::sync::Arc;

use tracing::{info, warn};

use super::args;
use crate::nfs3::common::{blocking, parse_args};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, args: &[u8]) -> ReplyStatus {
    let (host, _state) = match parse_args(args, args::notify_args) {
        Ok(a) => a,
        Err(status) => return status,
    };
    free_host(shared, host, None).await;
    ReplyStatus::Success(Vec::new())
}

/// Drops everything `host` holds or waits for; with `Some(state)` it also
/// records the host's new NSM state (SM_NOTIFY).
pub(crate) async fn free_host(shared: &Arc<Shared>, host: String, state: Option<u32>) {
    shared.nlm.waiters.drop_host(&host);
    let name = host.clone();
    let freed = blocking(shared, move |s| match state {
        Some(state) => s.host_rebooted(&name, state),
        None => s.free_host_locks(&name),
    })
    .await;
    match freed {
        Ok(Ok(Some(_))) => {
            info!(%host, "locks of the host freed");
            tokio::spawn(super::waiters::wake(shared.clone(), None));
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => warn!(%host, error = %e, "freeing the host's locks failed"),
        Err(_) => {}
    }
}
