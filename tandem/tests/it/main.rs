//! The integration tests of the `tandem` binary: one module a concern, one test
//! binary, so the helpers in common/ are compiled once. Each module claims its
//! own loopback prefixes (address_plan checks that).

mod common;

mod address_plan;
#[cfg(feature = "bench")]
mod bench_failover;
mod control_socket;
mod crash;
mod demo;
mod failover;
mod failover_catchup;
mod failover_check;
mod failover_crash;
mod failover_netns;
mod full_disk;
mod kernel_client;
mod kernel_locks;
mod libnfs_large;
mod metrics;
mod nfs_clients;
mod peer;
mod replicate;
mod replicate_content;
mod replicate_crash;
mod replicate_modes;
mod replicate_options;
mod replicate_overflow;
mod resync;
mod resync_netns;
mod retransmit_netns;
mod session_continuity;
mod site;
mod switchover;
mod switchover_netns;
mod verify;
mod vserver;
