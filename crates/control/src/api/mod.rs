//! The local control API: JSON over the site's Unix socket, one request and
//! one response per line. Only the local operator (socket mode 0600) may
//! talk to it. Also the Prometheus metrics endpoint.

pub mod client;
pub mod metrics;
pub mod proto;
pub mod server;

use std::future::Future;

use crate::error::Result;
use crate::vserver::status::StatusReport;

/// What the control socket and the metrics endpoint serve. The daemon
/// implements it; the API knows no daemon, so the daemon can own the API's
/// servers without the two folders importing each other.
pub trait Handler: Send + Sync + 'static {
    /// Answers one control request.
    fn handle(&self, req: proto::Request) -> impl Future<Output = proto::Response> + Send;
    /// The site's status, as a scrape of the metrics endpoint reports it.
    fn status(&self) -> impl Future<Output = Result<StatusReport>> + Send;
}
