//! ONC RPC (RFC 5531) over TCP: record marking, call/reply headers,
//! credentials and the per-connection request loop.

pub(crate) mod auth;
pub(crate) mod conn;
pub(crate) mod message;
pub(crate) mod record;
