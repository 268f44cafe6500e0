//! LINK. A link across file systems is XDEV (see rename.rs for why here).

use std::sync::Arc;

use nfs3_types::nfs3::{nfsstat3, post_op_attr, wcc_data, LINK3resfail, LINK3resok, Nfs3Option};

use super::args;
use super::common::{
    blocking, check_name, dir_failed, finish, op_ctx, open, parse_args, post_attr, status, wcc,
    Intent, Prepared,
};
use super::convert::fattr;
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let (file, link) = match parse_args(args, |r| Ok((args::fh(r)?.to_vec(), args::dirop(r)?))) {
        Ok(v) => v,
        Err(status) => return status,
    };
    let call = call.clone();
    let prepared = blocking(shared, move |store| -> Prepared<LINK3resok, LINK3resfail> {
        let empty = |st| {
            (
                st,
                LINK3resfail {
                    file_attributes: post_op_attr::None,
                    linkdir_wcc: wcc_data::default(),
                },
            )
        };
        let f = open(store, &call, &file, Intent::Read).map_err(empty)?;
        let dir = open(store, &call, &link.dir, Intent::Modify).map_err(empty)?;
        let fail = |st| {
            (
                st,
                LINK3resfail {
                    file_attributes: post_attr(store, f.ino()),
                    linkdir_wcc: dir_failed(store, &dir),
                },
            )
        };
        if f.handle.fsid != dir.handle.fsid {
            return Err(fail(nfsstat3::NFS3ERR_XDEV));
        }
        check_name(&link.name).map_err(fail)?;
        match store.link(&op_ctx(&call, &dir.cred), f.ino(), dir.ino(), &link.name) {
            Ok(m) => Ok((
                LINK3resok {
                    file_attributes: Nfs3Option::Some(fattr(&m.value)),
                    linkdir_wcc: wcc(m.pre, &dir.attr, post_attr(store, dir.ino())),
                },
                m.lsn,
            )),
            Err(e) => Err(fail(status(&e))),
        }
    })
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(status) => return status,
    };
    let res = finish(shared, prepared, |ok| LINK3resfail {
        file_attributes: ok.file_attributes,
        linkdir_wcc: ok.linkdir_wcc,
    })
    .await;
    success(&res)
}
