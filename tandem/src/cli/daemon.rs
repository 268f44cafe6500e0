//! `tandem daemon`: run the site in the foreground.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_control::daemon::RunningDaemon;

use super::signal::Terminate;

pub async fn run(data: &Path) -> anyhow::Result<ExitCode> {
    let mut terminate = Terminate::install()?;
    let running = RunningDaemon::start(data)
        .await
        .with_context(|| format!("cannot start the daemon for {}", data.display()))?;
    let site = running.daemon().site();
    tracing::info!(
        site = %site.config.name,
        socket = %site.paths.socket().display(),
        "daemon ready"
    );
    let sig = terminate.recv().await;
    tracing::info!(signal = sig, "shutting down");
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}
