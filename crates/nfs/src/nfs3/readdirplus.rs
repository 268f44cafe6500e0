//! READDIRPLUS: entries with attributes and handles, within both the
//! client's `dircount` (names and cookies) and `maxcount` (whole reply).

use std::sync::Arc;

use nfs3_types::nfs3::{
    cookieverf3, dirlistplus3, entryplus3, filename3, nfsstat3, Nfs3Option, Nfs3Result,
    READDIRPLUS3res, READDIRPLUS3resfail, READDIRPLUS3resok,
};
use nfs3_types::xdr_codec::List;

use super::args;
use super::common::{blocking, fh_of, open, parse_args, Intent};
use super::convert::fattr;
use super::dirents::{
    list, name_bytes, MAX_READDIR_ENTRIES, MAX_READDIR_REPLY_BYTES, MIN_ENTRY_BYTES,
};
use crate::dispatch::{success, Call};
use crate::handle::HANDLE_BYTES;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

/// status + post_op_attr + cookieverf + list end + eof.
const FIXED_REPLY_BYTES: u32 = 4 + (4 + 84) + 8 + 4 + 4;
/// post_op_attr with attributes + post_op_fh3 with one of our handles.
const PLUS_BYTES: u32 = (4 + 84) + (4 + 4 + HANDLE_BYTES as u32);

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    let parsed = parse_args(args, |r| {
        let fh = args::fh(r)?.to_vec();
        let cookie = r.u64()?;
        let _verf = r.fixed::<8>()?;
        Ok((fh, cookie, r.u32()?, r.u32()?))
    });
    let (fh, cookie, dircount, maxcount) = match parsed {
        Ok(v) => v,
        Err(status) => return status,
    };
    let maxcount = maxcount.min(MAX_READDIR_REPLY_BYTES);
    // Some clients send dircount 0 meaning "no separate limit".
    let dircount = if dircount == 0 { maxcount } else { dircount };
    let max_entries =
        ((maxcount / (MIN_ENTRY_BYTES + PLUS_BYTES)) as usize + 1).min(MAX_READDIR_ENTRIES);
    let call = call.clone();
    let res = blocking(shared, move |store| -> READDIRPLUS3res<'static> {
        let dir = match open(store, &call, &fh, Intent::Read) {
            Ok(t) => t,
            Err(st) => return Nfs3Result::Err((st, READDIRPLUS3resfail::default())),
        };
        let listing = match list(store, &dir, cookie, max_entries) {
            Ok(l) => l,
            Err(st) => {
                return Nfs3Result::Err((
                    st,
                    READDIRPLUS3resfail {
                        dir_attributes: dir.post(),
                    },
                ))
            }
        };
        let (mut used, mut dir_used) = (FIXED_REPLY_BYTES, 0u32);
        let mut entries = Vec::new();
        let mut truncated = false;
        let total = listing.items.len();
        for item in listing.items {
            let dir_bytes = 8 + name_bytes(&item.name) + 8;
            let entry_bytes = 4 + dir_bytes + PLUS_BYTES;
            if used.saturating_add(entry_bytes) > maxcount
                || dir_used.saturating_add(dir_bytes) > dircount
            {
                truncated = true;
                break;
            }
            used += entry_bytes;
            dir_used += dir_bytes;
            let (name_attributes, name_handle) = match &item.attr {
                Some(a) => (Nfs3Option::Some(fattr(a)), Nfs3Option::Some(fh_of(a))),
                None => (Nfs3Option::None, Nfs3Option::None),
            };
            entries.push(entryplus3 {
                fileid: item.fileid,
                name: filename3::from(item.name),
                cookie: item.cookie,
                name_attributes,
                name_handle,
            });
        }
        if entries.is_empty() && total > 0 {
            return Nfs3Result::Err((
                nfsstat3::NFS3ERR_TOOSMALL,
                READDIRPLUS3resfail {
                    dir_attributes: dir.post(),
                },
            ));
        }
        Nfs3Result::Ok(READDIRPLUS3resok {
            dir_attributes: Nfs3Option::Some(fattr(&listing.dir_attr)),
            cookieverf: cookieverf3::default(),
            reply: dirlistplus3 {
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
