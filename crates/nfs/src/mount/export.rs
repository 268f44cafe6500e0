//! EXPORT: every export with the client networks allowed to mount it (an
//! empty group list means everyone).

use std::sync::Arc;

use nfs3_types::mount::{dirpath, export_node, name};
use nfs3_types::xdr_codec::{List, Opaque};

use crate::dispatch::success;
use crate::nfs3::common::blocking;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>) -> ReplyStatus {
    let cfg = match blocking(shared, |store| store.config()).await {
        Ok(cfg) => cfg,
        Err(status) => return status,
    };
    let list = List(
        cfg.filesystems
            .values()
            .map(|fs| export_node {
                ex_dir: dirpath(Opaque::owned(fs.export.path.clone().into_bytes())),
                ex_groups: List(
                    fs.export
                        .clients
                        .iter()
                        .map(|net| name(Opaque::owned(net.to_string().into_bytes())))
                        .collect(),
                ),
            })
            .collect(),
    );
    success(&list)
}
