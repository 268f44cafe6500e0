//! UMNT: forget one mount of the calling client.

use tandem_store::config::normalize_export_path;

use super::{client_name, lock_table, MAX_MOUNT_PATH_BYTES};
use crate::dispatch::Call;
use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) fn call(shared: &Shared, call: &Call, args: &[u8]) -> ReplyStatus {
    let path = match parse_args(args, |r| r.opaque(MAX_MOUNT_PATH_BYTES)) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let path = String::from_utf8_lossy(path);
    lock_table(shared).remove(&client_name(call), normalize_export_path(&path));
    ReplyStatus::Success(Vec::new())
}
