//! The control layer of a Tandem site. Folders, lowest first; each uses
//! only those before it (docs/design.md, "Map"):
//!
//! * `config`: site.toml, identity, peer list, site lock, names, words;
//! * `net`: address claim, announce and probe;
//! * `replication`: replication settings, the sender, links to peers, verify;
//! * `vserver`: one vserver's store and NFS services, its status, fsck;
//! * `dr`: failover check and marks, DR reports, the crash-point hook;
//! * `api`: the control socket's protocol, server and client, and metrics,
//!   serving whatever implements `api::Handler`;
//! * `daemon`: the site daemon that owns everything above, implements
//!   `api::Handler`, listens to peers, and runs the workflows (failover,
//!   switchover, resync) that change its vservers.
//!
//! Everything here sits above `tandem_store`, `tandem_repl` and
//! `tandem_nfs`, never the other way round.

pub mod api;
pub mod config;
pub mod daemon;
pub mod dr;
pub mod error;
pub mod net;
pub mod replication;
pub mod vserver;

pub use error::{ControlError, ErrorKind, Result};
