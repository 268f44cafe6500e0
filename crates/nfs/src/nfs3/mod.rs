//! NFSv3 (RFC 1813): one file per procedure; shared helpers in `common`,
//! argument decoding in `args`, type conversion in `convert`.

// The `Err` side of a prepared mutation is a whole failure reply body, built
// once and moved once to the encoder; boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod access;
mod args;
mod commit;
pub(crate) mod common;
mod convert;
mod create;
mod dirchange;
mod dirents;
mod fsinfo;
mod fsstat;
mod getattr;
mod link;
mod lookup;
mod mkdir;
mod mknod;
mod pathconf;
mod read;
mod readdir;
mod readdirplus;
mod readlink;
mod remove;
mod rename;
mod rmdir;
mod setattr;
mod symlink;
mod write;

use std::sync::Arc;

use crate::dispatch::Call;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    call: &Call,
    args: &bytes::Bytes,
) -> ReplyStatus {
    let _passed = if crate::pause::changes_state(call.proc_num) {
        match shared.pause.enter() {
            Some(p) => Some(p),
            None => return ReplyStatus::Success(crate::pause::jukebox_body(call.proc_num)),
        }
    } else {
        None
    };
    match call.proc_num {
        0 => ReplyStatus::Success(Vec::new()),
        1 => getattr::call(shared, call, args).await,
        2 => setattr::call(shared, call, args).await,
        3 => lookup::call(shared, call, args).await,
        4 => access::call(shared, call, args).await,
        5 => readlink::call(shared, call, args).await,
        6 => read::call(shared, call, args).await,
        7 => write::call(shared, call, args).await,
        8 => create::call(shared, call, args).await,
        9 => mkdir::call(shared, call, args).await,
        10 => symlink::call(shared, call, args).await,
        11 => mknod::call(shared, call, args).await,
        12 => remove::call(shared, call, args).await,
        13 => rmdir::call(shared, call, args).await,
        14 => rename::call(shared, call, args).await,
        15 => link::call(shared, call, args).await,
        16 => readdir::call(shared, call, args).await,
        17 => readdirplus::call(shared, call, args).await,
        18 => fsstat::call(shared, call, args).await,
        19 => fsinfo::call(shared, call, args).await,
        20 => pathconf::call(shared, call, args).await,
        21 => commit::call(shared, call, args).await,
        _ => ReplyStatus::ProcUnavail,
    }
}
