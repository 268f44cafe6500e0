//! The NFS crate's integration tests: one module a concern, one test binary,
//! so the helpers in common/ are compiled once.

mod common;

mod libnfs_tools;
mod mount_and_portmap;
mod nfs_errors;
mod nfs_procedures;
mod nlm;
mod pause;
mod restart;
mod rpc_wire;
mod shares;
