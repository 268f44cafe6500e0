//! DUMP: the mount list as this server remembers it.

use nfs3_types::mount::{dirpath, mountbody, name};
use nfs3_types::xdr_codec::{List, Opaque};

use super::lock_table;
use crate::dispatch::success;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) fn call(shared: &Shared) -> ReplyStatus {
    let table = lock_table(shared);
    let list = List(
        table
            .entries()
            .map(|(host, path)| mountbody {
                ml_hostname: name(Opaque::borrowed(host.as_bytes())),
                ml_directory: dirpath(Opaque::borrowed(path.as_bytes())),
            })
            .collect(),
    );
    success(&list)
}
