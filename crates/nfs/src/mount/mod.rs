//! MOUNT v3 (RFC 1813 appendix I). Exports are looked up in the store's
//! configuration on every call so export changes apply at once.

mod dump;
mod export;
mod mnt;
mod null;
mod table;
mod umnt;
mod umntall;

use std::sync::Arc;

use crate::dispatch::Call;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(crate) use table::MountTable;

/// Longest path MNT accepts (MNTPATHLEN).
pub(crate) const MAX_MOUNT_PATH_BYTES: usize = nfs3_types::mount::MNTPATHLEN;

pub(crate) async fn dispatch(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    match call.proc_num {
        0 => null::call(),
        1 => mnt::call(shared, call, args).await,
        2 => dump::call(shared),
        3 => umnt::call(shared, call, args),
        4 => umntall::call(shared, call),
        5 => export::call(shared).await,
        _ => ReplyStatus::ProcUnavail,
    }
}

/// The client name recorded in the mount list: its address, which unlike
/// the AUTH_SYS machine name cannot be chosen by the client.
fn client_name(call: &Call) -> String {
    call.peer.ip().to_canonical().to_string()
}

fn lock_table(shared: &Shared) -> std::sync::MutexGuard<'_, MountTable> {
    // The table holds no invariants a panicking holder could break halfway.
    shared.mounts.lock().unwrap_or_else(|e| e.into_inner())
}
