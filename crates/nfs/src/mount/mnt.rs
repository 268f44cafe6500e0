//! MNT: export path -> root file handle, after the client-network check.

use std::sync::Arc;

use nfs3_types::mount::{fhandle3, mountres3, mountres3_ok, mountstat3};
use nfs3_types::xdr_codec::Opaque;
use tandem_store::config::normalize_export_path;
use tracing::{debug, info};

use super::{client_name, journal_mount_change, MAX_MOUNT_PATH_BYTES};
use crate::dispatch::{success, Call};
use crate::exports::client_allowed;
use crate::nfs3::common::{blocking, parse_args};
use crate::rpc::auth::AUTH_SYS;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let path = match parse_args(args, |r| r.opaque(MAX_MOUNT_PATH_BYTES)) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let Ok(path) = std::str::from_utf8(path).map(str::to_owned) else {
        return success(&mountres3::Err(mountstat3::MNT3ERR_NOENT));
    };
    let peer_ip = call.peer.ip();
    let lookup_path = path.clone();
    let result = blocking(shared, move |store| {
        let Some(fs) = store.fs_by_export_path(&lookup_path) else {
            return Err(mountstat3::MNT3ERR_NOENT);
        };
        if !client_allowed(&fs.export, peer_ip) {
            return Err(mountstat3::MNT3ERR_ACCES);
        }
        store
            .root_handle(fs.fsid)
            .map_err(|_| mountstat3::MNT3ERR_SERVERFAULT)
    })
    .await;
    let reply = match result {
        Ok(Ok(handle)) => {
            let host = client_name(call);
            info!(%host, %path, "mounted");
            let path = normalize_export_path(&path).to_owned();
            journal_mount_change(shared, move |store| store.mount_added(&host, &path)).await;
            mountres3::Ok(mountres3_ok {
                fhandle: fhandle3(Opaque::owned(crate::handle::encode(&handle))),
                auth_flavors: vec![AUTH_SYS],
            })
        }
        Ok(Err(stat)) => {
            debug!(peer = %call.peer, %path, %stat, "mount refused");
            mountres3::Err(stat)
        }
        Err(status) => return status,
    };
    success(&reply)
}
