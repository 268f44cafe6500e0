//! MKNOD: devices, sockets and FIFOs; regular files, directories and
//! symlinks have their own procedures (BADTYPE here).

use std::sync::Arc;

use nfs3_types::nfs3::{nfsstat3, MKNOD3resfail, MKNOD3resok};
use tandem_store::{NodeKind, SetAttr};

use super::args;
use super::common::{parse_args, status};
use super::dirchange::make;
use crate::dispatch::Call;
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
    let change = Box::new(
        move |store: &tandem_store::Store, ctx: &_, dir, name: &[u8]| {
            let (kind, set): (NodeKind, SetAttr) = what.ok_or(nfsstat3::NFS3ERR_BADTYPE)?;
            store
                .mknod(ctx, dir, name, kind, &set)
                .map_err(|e| status(&e))
        },
    );
    make::<MKNOD3resok, MKNOD3resfail>(shared, call, op, change).await
}
