//! `tandem replicate ... --wait`: polls status over the control socket
//! until the replica is streaming, with a progress bar on a terminal and a
//! plain line every few seconds otherwise. Stopping the wait (timeout,
//! Ctrl-C) leaves replication running.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tandem_control::api::client;
use tandem_control::api::proto::{mib, Reply, Request};
use tandem_control::replication::{ReplicationState, ReplicationStatus};

use crate::cli::output::unexpected;

/// How often status is asked for.
const POLL_MS: u64 = 500;
/// How often a plain progress line is printed when not on a terminal.
const PLAIN_LINE_EVERY_MS: u64 = 5_000;

/// One plain line: state, baseline progress, rate and ETA when known.
pub fn progress_line(r: &ReplicationStatus) -> String {
    let mut line = format!("state {}", r.state);
    if let (Some(done), Some(total)) = (r.baseline_done_bytes, r.baseline_total_bytes) {
        if r.state == ReplicationState::Baseline {
            line.push_str(&format!(
                ", baseline {:.1} of {:.1} MiB",
                mib(done),
                mib(total)
            ));
        }
    }
    if let Some(rate) = r.figures.baseline_bytes_per_second {
        line.push_str(&format!(", {:.1} MiB/s", mib(rate)));
    }
    if let Some(eta) = r.figures.baseline_eta_s {
        line.push_str(&format!(", about {eta} s left"));
    }
    if let Some(e) = &r.last_error {
        line.push_str(&format!(" (last error: {e})"));
    }
    line
}

async fn poll(data: &Path, vserver: &str) -> anyhow::Result<Option<ReplicationStatus>> {
    let reply = client::call(
        data,
        &Request::Status {
            vserver: Some(vserver.to_string()),
        },
    )
    .await?;
    let Reply::Status(report) = reply else {
        return Err(unexpected(&reply));
    };
    Ok(report
        .vservers
        .into_iter()
        .find(|v| v.name == vserver)
        .and_then(|v| v.replication.map(|r| *r)))
}

pub async fn until_streaming(
    data: &Path,
    vserver: &str,
    timeout_s: u64,
) -> anyhow::Result<ExitCode> {
    let bar = std::io::stdout().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(timeout_s);
    let mut last_line: Option<Instant> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let status = poll(data, vserver).await?;
        let Some(r) = status else {
            anyhow::bail!("{vserver} is no longer replicated (stopped meanwhile?)");
        };
        if r.state.is_streaming() {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            say!(
                "{vserver} is streaming to {}: replica at LSN {}, {} records behind",
                r.to.as_deref().unwrap_or("?"),
                r.replica_lsn,
                r.lag_records
            );
            return Ok(ExitCode::SUCCESS);
        }
        match &bar {
            Some(b) => {
                b.set_length(r.baseline_total_bytes.unwrap_or(0));
                b.set_position(r.baseline_done_bytes.unwrap_or(0));
                b.set_message(r.state.as_str());
            }
            None => {
                let due = last_line
                    .is_none_or(|t| t.elapsed() >= Duration::from_millis(PLAIN_LINE_EVERY_MS));
                if due {
                    say!("{vserver}: {}", progress_line(&r));
                    last_line = Some(Instant::now());
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            if let Some(b) = &bar {
                b.abandon();
            }
            anyhow::bail!(
                "{vserver} is not streaming after {timeout_s} s ({}); replication goes on, \
                 follow it with `tandem status {vserver}`",
                progress_line(&r)
            );
        }
        let nap = Duration::from_millis(POLL_MS).min(deadline - now);
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = &mut ctrl_c => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                say!("Stopped waiting; replication of {vserver} goes on (see `tandem status {vserver}`).");
                return Ok(ExitCode::from(130));
            }
        }
    }
}
