//! The store's integration tests: one module a concern, one test binary, so
//! the helpers in common/ are compiled once.

mod common;

mod baseline;
mod demote;
mod digest;
mod fsck;
mod journal;
mod locks;
mod locks_model;
mod model;
mod mounts;
mod overflow;
mod perm;
mod promote;
mod replay;
mod replica;
mod requests;
mod space;
