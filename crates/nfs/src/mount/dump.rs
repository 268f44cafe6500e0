//! DUMP: the mount list, as journaled (tandem_store::mounts).

use std::sync::Arc;

use nfs3_types::mount::{dirpath, mountbody, name};
use nfs3_types::xdr_codec::{List, Opaque};

use crate::dispatch::success;
use crate::nfs3::common::blocking;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>) -> ReplyStatus {
    let entries = match blocking(shared, |store| store.mounts()).await {
        Ok(entries) => entries,
        Err(status) => return status,
    };
    let list = List(
        entries
            .iter()
            .map(|(host, path)| mountbody {
                ml_hostname: name(Opaque::borrowed(host.as_bytes())),
                ml_directory: dirpath(Opaque::borrowed(path.as_bytes())),
            })
            .collect(),
    );
    success(&list)
}
