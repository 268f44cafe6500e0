//! SYMLINK.

use std::sync::Arc;

use nfs3_types::nfs3::{nfsstat3, SYMLINK3resfail, SYMLINK3resok};

use super::args;
use super::common::{parse_args, status};
use super::dirchange::make;
use crate::dispatch::Call;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| {
        Ok((args::dirop(r)?, args::sattr(r)?, args::path(r)?.to_vec()))
    });
    let (op, set, target) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let change = Box::new(
        move |store: &tandem_store::Store, ctx: &_, dir, name: &[u8]| {
            if target.len() > tandem_store::MAX_SYMLINK_BYTES {
                return Err(nfsstat3::NFS3ERR_NAMETOOLONG);
            }
            store
                .symlink(ctx, dir, name, &target, &set)
                .map_err(|e| status(&e))
        },
    );
    make::<SYMLINK3resok, SYMLINK3resfail>(shared, call, op, change).await
}
