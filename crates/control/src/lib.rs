//! The control layer of a Tandem site: the site's identity and
//! configuration, the daemon that owns the site's virtual servers, and the
//! local control API the CLI talks to.
//!
//! Everything here sits above `tandem_store` and `tandem_nfs` and never the
//! other way round (see docs/design.md).

pub mod addresses;
pub mod announce;
pub mod api;
pub mod crash_point;
pub mod daemon;
pub mod error;
pub mod failover;
pub mod failover_mark;
pub mod failover_report;
pub mod fsck;
pub mod identity;
pub mod lock;
pub mod metrics;
pub mod names;
pub mod peer;
pub mod probe;
pub mod replication;
pub mod resources;
pub mod resync;
mod resync_report;
pub mod service;
pub mod site;
pub mod status;
pub mod switchover_report;
pub mod toml_file;
pub mod verify;
pub mod vserver;

pub use error::{ControlError, ErrorKind, Result};
