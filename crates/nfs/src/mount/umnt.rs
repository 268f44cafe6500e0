//! UMNT: forget one mount of the calling client.

use std::sync::Arc;

use tandem_store::config::normalize_export_path;

use super::{client_name, journal_mount_change, MAX_MOUNT_PATH_BYTES};
use crate::dispatch::Call;
use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let path = match parse_args(args, |r| r.opaque(MAX_MOUNT_PATH_BYTES)) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let path = normalize_export_path(&String::from_utf8_lossy(path)).to_owned();
    let host = client_name(call);
    journal_mount_change(shared, move |store| store.mount_removed(&host, Some(&path))).await;
    ReplyStatus::Success(Vec::new())
}
