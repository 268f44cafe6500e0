//! The file-system operations, one file each. Every mutating operation
//! checks everything first (existence, types, permissions, limits), then
//! builds one record carrying its decisions and commits it; a record is
//! never written for a request that fails.

mod access;
mod configure;
mod create;
mod link;
mod lookup;
mod read;
mod readdir;
mod readlink;
mod remove;
mod rename;
mod resolve;
mod setattr;
mod statfs;
pub mod validate;
mod write;

use crate::error::{Result, StoreError};
use crate::requests::{fingerprint, Kind};
use crate::state::State;
use crate::types::{Attr, Ino, Mutation, OpCtx, WccAttr};

pub(crate) fn mutation<T>(value: T, lsn: u64, pre: &Attr) -> Mutation<T> {
    Mutation {
        value,
        lsn,
        pre: Some(WccAttr::from(pre)),
    }
}

/// If this request was already carried out (a retransmission), the reply
/// it earned, built from what it did; `None` means "go ahead".
pub(crate) fn retransmitted<T>(
    st: &State,
    ctx: &OpCtx,
    key: (Kind, Ino, &[u8], Ino, &[u8]),
    pre_of: Ino,
    value: impl FnOnce(Option<Ino>) -> Result<T>,
) -> Option<Result<Mutation<T>>> {
    let req = ctx.req.as_ref()?;
    let (kind, a, a_name, b, b_name) = key;
    let done = st
        .requests
        .recall(req, fingerprint(kind, a, a_name, b, b_name))?;
    tracing::debug!(client = %req.client, xid = req.xid, lsn = done.lsn, "answering a retransmitted request from the journal");
    let pre = st.inode(pre_of).ok().map(|i| WccAttr::from(&i.attr));
    Some(value(done.ino).map(|value| Mutation {
        value,
        lsn: done.lsn,
        pre,
    }))
}

/// The attributes of an inode a remembered request created or linked.
pub(crate) fn remembered_attr(st: &State, ino: Option<Ino>) -> Result<Attr> {
    let ino = ino.ok_or(StoreError::NoEnt)?;
    Ok(st.inode(ino).map_err(|_| StoreError::NoEnt)?.attr.clone())
}
