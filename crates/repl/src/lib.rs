//! Replication between sites: the wire protocol, the trusted transport and
//! the replica side of journal shipping. It moves journal frames, LSNs,
//! epochs and checksums; it never interprets file-system semantics.

pub mod baseline;
pub mod catchup;
pub mod peer;
pub mod resync;
pub mod session;
pub mod switchover;
pub mod throttle;
pub mod tls;
pub mod verify;
pub mod wire;
