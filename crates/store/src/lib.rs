//! The journaled file-system state machine of one virtual server.
//!
//! Contract: state = checkpoint + replay(journal). Every mutating call is
//! turned into one journal record carrying every decision made here (inode
//! numbers, generations, timestamps, cookies), then applied; replaying the
//! same records anywhere yields the same state, attribute for attribute.

pub mod baseline;
pub mod catchup;
pub mod checkpoint;
mod checkpointer;
pub mod config;
pub mod data;
pub mod demote;
pub mod digest;
pub mod durable;
pub mod error;
pub mod fence;
pub mod fsck;
pub mod journal;
pub mod lag;
pub mod locks;
pub mod mounts;
mod ops;
pub mod overflow;
pub mod pending;
pub mod perm;
pub mod promote;
pub mod record;
pub mod replica;
pub mod replica_sync;
pub mod requests;
pub mod resync;
pub mod space;
pub mod state;
pub mod store;
pub mod types;

pub use config::{AddressSpec, Export, FsConfig, User, VserverConfig};
pub use error::{Result, StoreError};
pub use ops::validate;
pub use replica::RawFrame;
pub use replica_sync::{OnReplicaLoss, ReplyKind, SyncMode, SyncPolicy};
pub use store::{Store, StoreOptions};
pub use types::*;
