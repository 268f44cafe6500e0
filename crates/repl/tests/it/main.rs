//! The replication crate's integration tests: one module a concern, one test
//! binary, so the helpers in common/ are compiled once.

#[macro_use]
mod common;

mod baseline;
mod catchup;
mod peer;
mod resync;
mod session;
mod ship;
mod switchover;
mod verify;
mod wire;
mod wire_zstd;
