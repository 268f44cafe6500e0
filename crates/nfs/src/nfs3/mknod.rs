//! MKNOD: devices, sockets and FIFOs; regular files, directories and
//! symlinks have their own procedures (BADTYPE here).

use std::sync::Arc;

use nfs3_types::nfs3::{nfsstat3, wcc_data, MKNOD3resfail, MKNOD3resok};
use tandem_store::{NodeKind, SetAttr};

use super::args;
use super::common::{
    blocking, check_name, dir_failed, finish, made, op_ctx, open, parse_args, status, Intent,
    Prepared,
};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

const NF3BLK: u32 = 3;
const NF3CHR: u32 = 4;
const NF3SOCK: u32 = 6;
const NF3FIFO: u32 = 7;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| {
        let op = args::dirop(r)?;
        // `None`: a type MKNOD does not make; the union arm is void.
        let what = match r.u32()? {
            t @ (NF3CHR | NF3BLK) => {
                let set = args::sattr(r)?;
                let (major, minor) = (r.u32()?, r.u32()?);
                let kind = if t == NF3CHR {
                    NodeKind::Char { major, minor }
                } else {
                    NodeKind::Block { major, minor }
                };
                Some((kind, set))
            }
            NF3SOCK => Some((NodeKind::Socket, args::sattr(r)?)),
            NF3FIFO => Some((NodeKind::Fifo, args::sattr(r)?)),
            _ => None,
        };
        Ok((op, what))
    });
    let (op, what) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let prepared = blocking(
        shared,
        move |store| -> Prepared<MKNOD3resok, MKNOD3resfail> {
            let dir = open(store, &call, &op.dir, Intent::Modify).map_err(|st| {
                (
                    st,
                    MKNOD3resfail {
                        dir_wcc: wcc_data::default(),
                    },
                )
            })?;
            let fail = |st| {
                (
                    st,
                    MKNOD3resfail {
                        dir_wcc: dir_failed(store, &dir),
                    },
                )
            };
            check_name(&op.name).map_err(fail)?;
            let (kind, set): (NodeKind, SetAttr) =
                what.ok_or_else(|| fail(nfsstat3::NFS3ERR_BADTYPE))?;
            match store.mknod(&op_ctx(&call, &dir.cred), dir.ino(), &op.name, kind, &set) {
                Ok(m) => {
                    let m = made(store, &dir, m);
                    let ok = MKNOD3resok {
                        obj: m.obj,
                        obj_attributes: m.obj_attributes,
                        dir_wcc: m.dir_wcc,
                    };
                    Ok((ok, m.lsn))
                }
                Err(e) => Err(fail(status(&e))),
            }
        },
    )
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(status) => return status,
    };
    success(
        &finish(shared, prepared, |ok| MKNOD3resfail {
            dir_wcc: ok.dir_wcc,
        })
        .await,
    )
}
