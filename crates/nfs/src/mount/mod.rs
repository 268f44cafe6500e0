//! MOUNT v3 (RFC 1813 appendix I). Exports are looked up in the store's
//! configuration on every call so export changes apply at once.

mod dump;
mod export;
mod mnt;
mod null;
mod umnt;
mod umntall;

use std::sync::Arc;

use tandem_store::{Lsn, Store, StoreError};
use tracing::debug;

use crate::dispatch::Call;
use crate::nfs3::common::blocking;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

/// Longest path MNT accepts (MNTPATHLEN).
pub(crate) const MAX_MOUNT_PATH_BYTES: usize = nfs3_types::mount::MNTPATHLEN;

pub(crate) async fn dispatch(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    match call.proc_num {
        0 => null::call(),
        1 => mnt::call(shared, call, args).await,
        2 => dump::call(shared).await,
        3 => umnt::call(shared, call, args).await,
        4 => umntall::call(shared, call).await,
        5 => export::call(shared).await,
        _ => ReplyStatus::ProcUnavail,
    }
}

/// The client name recorded in the mount list: its address, which unlike
/// the AUTH_SYS machine name cannot be chosen by the client.
fn client_name(call: &Call) -> String {
    call.peer.ip().to_canonical().to_string()
}

/// Journals a change of the mount list, so it travels to the DR site. The
/// list is advisory, so the reply waits neither for the record's fsync nor
/// for the replica (a MOUNT must not hang on a lost replica in
/// `--on-replica-loss block`), and a store that takes no changes (a
/// replica, a fenced copy) writes nothing while the MOUNT call still
/// succeeds.
async fn journal_mount_change(
    shared: &Arc<Shared>,
    change: impl FnOnce(&Store) -> Result<Option<Lsn>, StoreError> + Send + 'static,
) {
    match blocking(shared, change).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(error = %e, "mount list not changed"),
        // Logged by `blocking`.
        Err(_) => {}
    }
}
