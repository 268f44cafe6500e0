//! The journaled file-system state machine of one virtual server.
//!
//! Contract: state = checkpoint + replay(journal). Every mutating call is
//! turned into one journal record carrying every decision made here (inode
//! numbers, generations, timestamps, cookies), then applied; replaying the
//! same records anywhere yields the same state, attribute for attribute.

pub mod config;
pub mod error;
pub mod store;
pub mod types;

pub use config::{AddressSpec, Export, FsConfig, User, VserverConfig};
pub use error::{Result, StoreError};
pub use store::{Store, StoreOptions};
pub use types::*;
