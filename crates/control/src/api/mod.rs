//! The local control API: JSON over the site's Unix socket, one request and
//! one response per line. Only the local operator (socket mode 0600) may
//! talk to it.

pub mod client;
pub mod proto;
pub mod server;
