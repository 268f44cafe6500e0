//! What `tandem demo`, `tandem bench` and the integration tests share:
//! two Tandem sites on loopback driven through their control sockets
//! (`failover_sites`), an NFSv3 client on `nfs3_client` that names each
//! failed call (`client`) and what a client does across a failover
//! (`transfer`), file contents that can be checked (`pattern`), free ports,
//! waiting with a deadline, and a temporary directory for the demo.
//!
//! The demo is part of the server binary, so this crate is linked into it;
//! nothing here pulls in the bench or `tempfile`.

pub mod client;
mod data;
mod error;
pub mod failover_sites;
mod net;
pub mod scratch;
pub mod site;
pub mod target;
pub mod transfer;
pub mod wait;

pub use data::pattern;
pub use error::ClientError;
pub use net::free_port;
pub use wait::within;
