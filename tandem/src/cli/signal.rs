//! Waiting for the operator (or the service manager) to ask us to stop.

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT handlers, installed before anything starts so that a
/// signal arriving during start-up is not lost (or fatal).
pub struct Terminate {
    term: Signal,
    int: Signal,
}

impl Terminate {
    pub fn install() -> anyhow::Result<Terminate> {
        Ok(Terminate {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT, naming it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
