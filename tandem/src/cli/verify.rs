//! `tandem verify VS [--json]`

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::names::validate_name;
use tandem_control::replication::verify::VERIFY_TIMEOUT;

use super::output::unexpected;

/// Exit code when both sites hold the same content.
const EXIT_MATCH: u8 = 0;
/// Exit code when they differ.
const EXIT_DIFFERS: u8 = 1;
/// Exit code when the verify could not run (not replicated, not streaming,
/// a replica site, a timeout, no daemon).
const EXIT_ERROR: u8 = 2;
/// Beyond the daemon's own limit: its timeout answer arrives first.
const CLIENT_SLACK: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 the sites match, 1 they differ, 2 the verify could not run."
)]
pub struct Args {
    /// The vserver to verify (run at its active site, while it replicates).
    vserver: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(data: &Path, args: Args) -> anyhow::Result<ExitCode> {
    match verify(data, &args).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: cannot verify {}: {e:#}", args.vserver);
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

async fn verify(data: &Path, args: &Args) -> anyhow::Result<ExitCode> {
    validate_name("vserver name", &args.vserver)?;
    let request = Request::Verify {
        vserver: args.vserver.clone(),
    };
    let reply = client::call_within(data, &request, VERIFY_TIMEOUT + CLIENT_SLACK).await?;
    let Reply::Verified(report) = reply else {
        return Err(unexpected(&reply));
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.matches {
        say!(
            "{}: match at LSN {} ({} files, {} bytes, {} ms)",
            report.vserver,
            report.lsn,
            report.files,
            report.bytes,
            report.elapsed_ms
        );
    } else {
        say!(
            "{}: differs at LSN {}: first difference: {}",
            report.vserver,
            report.lsn,
            report.first_difference.as_deref().unwrap_or("root digest")
        );
    }
    Ok(ExitCode::from(if report.matches {
        EXIT_MATCH
    } else {
        EXIT_DIFFERS
    }))
}
