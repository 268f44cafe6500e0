//! FSINFO: the transfer sizes and properties clients tune themselves by.

use std::sync::Arc;

use nfs3_types::nfs3::{
    nfstime3, FSINFO3res, FSINFO3resfail, FSINFO3resok, Nfs3Result, FSF3_CANSETTIME,
    FSF3_HOMOGENEOUS, FSF3_LINK, FSF3_SYMLINK,
};

use super::args;
use super::common::{blocking, open, parse_args, Intent};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

/// rtmax: the store's largest single read.
pub(super) const MAX_READ_BYTES: u32 = tandem_store::MAX_IO_BYTES as u32;
const PREFERRED_READDIR_BYTES: u32 = 64 * 1024;
const IO_MULTIPLE_BYTES: u32 = 4096;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let fh = match parse_args(args, |r| Ok(args::fh(r)?.to_vec())) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let max_write_bytes = shared.max_write_bytes;
    let res = blocking(shared, move |store| -> FSINFO3res {
        match open(store, &call, &fh, Intent::Read) {
            Ok(t) => Nfs3Result::Ok(FSINFO3resok {
                obj_attributes: t.post(),
                rtmax: MAX_READ_BYTES,
                rtpref: MAX_READ_BYTES,
                rtmult: IO_MULTIPLE_BYTES,
                wtmax: max_write_bytes,
                wtpref: max_write_bytes,
                wtmult: IO_MULTIPLE_BYTES,
                dtpref: PREFERRED_READDIR_BYTES,
                maxfilesize: tandem_store::MAX_FILE_BYTES,
                time_delta: nfstime3 {
                    seconds: 0,
                    nseconds: 1,
                },
                properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
            }),
            Err(st) => Nfs3Result::Err((st, FSINFO3resfail::default())),
        }
    })
    .await;
    match res {
        Ok(r) => success(&r),
        Err(status) => status,
    }
}
