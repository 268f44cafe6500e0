//! READDIR: as many entries as fit in the client's `count` bytes.

use std::sync::Arc;

use nfs3_types::nfs3::{
    cookieverf3, dirlist3, entry3, filename3, nfsstat3, Nfs3Option, Nfs3Result, READDIR3res,
    READDIR3resfail, READDIR3resok,
};
use nfs3_types::xdr_codec::List;

use super::args;
use super::common::{blocking, open, parse_args, Intent};
use super::convert::fattr;
use super::dirents::{
    list, name_bytes, MAX_READDIR_ENTRIES, MAX_READDIR_REPLY_BYTES, MIN_ENTRY_BYTES,
};
use crate::dispatch::{success, Call};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

/// status + post_op_attr + cookieverf + list end + eof.
const FIXED_REPLY_BYTES: u32 = 4 + (4 + 84) + 8 + 4 + 4;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| {
        let fh = args::fh(r)?.to_vec();
        let cookie = r.u64()?;
        // Cookies are stable, so the verifier is always zero and ignored.
        let _verf = r.fixed::<8>()?;
        Ok((fh, cookie, r.u32()?))
    });
    let (fh, cookie, count) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let count = count.min(MAX_READDIR_REPLY_BYTES);
    let max_entries = ((count / MIN_ENTRY_BYTES) as usize + 1).min(MAX_READDIR_ENTRIES);
    let call = call.clone();
    let res = blocking(shared, move |store| -> READDIR3res<'static> {
        let dir = match open(store, &call, &fh, Intent::Read) {
            Ok(t) => t,
            Err(st) => return Nfs3Result::Err((st, READDIR3resfail::default())),
        };
        let listing = match list(store, &dir, cookie, max_entries) {
            Ok(l) => l,
            Err(st) => {
                return Nfs3Result::Err((
                    st,
                    READDIR3resfail {
                        dir_attributes: dir.post(),
                    },
                ))
            }
        };
        let mut used = FIXED_REPLY_BYTES;
        let mut entries = Vec::new();
        let mut truncated = false;
        let total = listing.items.len();
        for item in listing.items {
            let entry_bytes = 4 + 8 + name_bytes(&item.name) + 8;
            if used.saturating_add(entry_bytes) > count {
                truncated = true;
                break;
            }
            used += entry_bytes;
            entries.push(entry3 {
                fileid: item.fileid,
                name: filename3::from(item.name),
                cookie: item.cookie,
            });
        }
        if entries.is_empty() && total > 0 {
            return Nfs3Result::Err((
                nfsstat3::NFS3ERR_TOOSMALL,
                READDIR3resfail {
                    dir_attributes: dir.post(),
                },
            ));
        }
        Nfs3Result::Ok(READDIR3resok {
            dir_attributes: Nfs3Option::Some(fattr(&listing.dir_attr)),
            cookieverf: cookieverf3::default(),
            reply: dirlist3 {
                entries: List(entries),
                eof: listing.eof && !truncated,
            },
        })
    })
    .await;
    match res {
        Ok(r) => success(&r),
        Err(status) => status,
    }
}
