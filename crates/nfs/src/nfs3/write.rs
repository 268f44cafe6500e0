//! WRITE: UNSTABLE replies at once (in sync replication, once the replica
//! acknowledged it); DATA_SYNC and FILE_SYNC reply only
//! once the record is durable, and then say FILE_SYNC (data and metadata
//! share one journal record).

use std::sync::Arc;

use nfs3_types::nfs3::{
    nfsstat3, stable_how, writeverf3, Nfs3Option, Nfs3Result, WRITE3resfail, WRITE3resok,
};

use super::args;
use super::common::{
    blocking, durable_for, finish, op_ctx, open, parse_args, post_attr, status, wcc, wcc_after,
    Intent, Prepared,
};
use super::convert::fattr;
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;
use crate::xdr::XdrError;
use tandem_store::{ReplyKind, SyncMode};

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &bytes::Bytes) -> ReplyStatus {
    let parsed = parse_args(args, |r| {
        let fh = args::fh(r)?.to_vec();
        let offset = r.u64()?;
        let count = r.u32()?;
        let stable = match r.u32()? {
            0 => stable_how::UNSTABLE,
            1 => stable_how::DATA_SYNC,
            2 => stable_how::FILE_SYNC,
            other => return Err(XdrError::BadDiscriminant(other)),
        };
        let data = r.opaque(usize::MAX)?;
        // count and the opaque length should agree; never write more than
        // either says.
        let len = data.len().min(count as usize);
        Ok((fh, offset, stable, args.slice_ref(&data[..len])))
    });
    let (fh, offset, stable, data) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let too_large = data.len() > shared.max_write_bytes as usize;
    let call = call.clone();
    let prepared = blocking(
        shared,
        move |store| -> Prepared<WRITE3resok, WRITE3resfail> {
            let t = open(store, &call, &fh, Intent::Modify)
                .map_err(|st| (st, WRITE3resfail::default()))?;
            if too_large {
                return Err((
                    nfsstat3::NFS3ERR_INVAL,
                    WRITE3resfail {
                        file_wcc: wcc_after(t.post()),
                    },
                ));
            }
            let written = u32::try_from(data.len()).unwrap_or(u32::MAX);
            match store.write_bytes(&op_ctx(&call, &t.cred), t.ino(), offset, data) {
                Ok(m) => Ok((
                    WRITE3resok {
                        file_wcc: wcc(m.pre, &t.attr, Nfs3Option::Some(fattr(&m.value))),
                        count: written,
                        committed: stable_how::UNSTABLE,
                        verf: writeverf3(store.write_verifier()),
                    },
                    m.lsn,
                )),
                Err(e) => Err((
                    status(&e),
                    WRITE3resfail {
                        file_wcc: wcc_after(post_attr(store, t.ino())),
                    },
                )),
            }
        },
    )
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(status) => return status,
    };
    let res = if stable == stable_how::UNSTABLE {
        match prepared {
            // In sync mode even an UNSTABLE write waits for the replica
            // (it still says UNSTABLE: the client's COMMIT logic is unchanged).
            Ok((ok, lsn)) if shared.store.sync_policy().mode == SyncMode::Sync => {
                match durable_for(shared, lsn, ReplyKind::Unstable).await {
                    Ok(()) => Nfs3Result::Ok(ok),
                    Err(st) => Nfs3Result::Err((
                        st,
                        WRITE3resfail {
                            file_wcc: ok.file_wcc,
                        },
                    )),
                }
            }
            Ok((ok, _lsn)) => Nfs3Result::Ok(ok),
            Err(e) => Nfs3Result::Err(e),
        }
    } else {
        let synced = prepared.map(|(mut ok, lsn)| {
            ok.committed = stable_how::FILE_SYNC;
            (ok, lsn)
        });
        finish(shared, synced, |ok| WRITE3resfail {
            file_wcc: ok.file_wcc,
        })
        .await
    };
    success(&res)
}
