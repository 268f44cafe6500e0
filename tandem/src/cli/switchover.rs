//! `tandem switchover VS --to PEER [--timeout-ms N] [--json]` at the
//! active site: a planned move of the vserver to the peer it replicates
//! to, no acknowledged byte lost. Prints each step's time and the pause
//! clients saw (changes answered NFS3ERR_JUKEBOX, which they retry).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::names::validate_name;
use tandem_control::dr::switchover::report::{SwitchoverReport, DEFAULT_TIMEOUT_MS};

use super::output::unexpected;

/// Exit code when the switchover could not run or was abandoned.
const EXIT_ERROR: u8 = 2;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 the vserver is active at PEER, 2 it did not move (or, as the message says, the outcome is unknown)."
)]
pub struct Args {
    /// The vserver to move (run at the site where it is active).
    vserver: String,
    /// The paired site it is replicated to, which becomes active.
    #[arg(long)]
    to: String,
    /// Longest pause clients may see before the switchover gives up,
    /// unpauses and moves nothing.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(data: &Path, args: Args) -> anyhow::Result<ExitCode> {
    match switchover(data, &args).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!(
                "error: cannot switch {} over to {}: {e:#}",
                args.vserver, args.to
            );
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

async fn switchover(data: &Path, args: &Args) -> anyhow::Result<()> {
    validate_name("vserver name", &args.vserver)?;
    validate_name("peer name", &args.to)?;
    let request = Request::Switchover {
        vserver: args.vserver.clone(),
        to: args.to.clone(),
        timeout_ms: Some(args.timeout_ms),
    };
    // The daemon bounds the pause; the answer may also wait for the peer's
    // grace and the reverse replication (a minute at most).
    let limit = client::REQUEST_TIMEOUT + Duration::from_millis(args.timeout_ms);
    let reply = client::call_within(data, &request, limit).await?;
    let Reply::SwitchedOver(report) = reply else {
        return Err(unexpected(&reply));
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn print_report(r: &SwitchoverReport) {
    say!(
        "{} switched over from {} to {}: epoch {}, both at LSN {}.",
        r.vserver,
        r.site,
        r.to,
        r.epoch,
        r.lsn
    );
    for s in &r.steps {
        say!("  {:<13} {:>10.3} ms", s.step, ms(s.micros));
    }
    say!("  {:<13} {:>10.3} ms", "client pause", ms(r.pause_micros));
    if r.reverse_streaming {
        say!("  {} replicates it back to {} now.", r.to, r.site);
    }
    for n in &r.notes {
        say!("  note: {n}");
    }
}
