//! Errors of the service's public entry points.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum NfsError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid server configuration: {0}")]
    Config(String),
}
