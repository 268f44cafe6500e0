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

use crate::types::{Attr, Mutation, WccAttr};

pub(crate) fn mutation<T>(value: T, lsn: u64, pre: &Attr) -> Mutation<T> {
    Mutation {
        value,
        lsn,
        pre: Some(WccAttr::from(pre)),
    }
}
