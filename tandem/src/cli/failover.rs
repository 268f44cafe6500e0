//! `tandem failover VS --check [--json]`: steps 1 and 2 of a failover
//! (check this DR site's resources, report them). Failover itself is not
//! built yet, so without `--check` the command refuses.

use std::path::Path;
use std::process::ExitCode;

use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::failover::FailoverCheck;
use tandem_control::names::validate_name;

use super::output::unexpected;

/// Exit code when every resource is present.
const EXIT_READY: u8 = 0;
/// Exit code when the check could not run (no `--check`, the vserver is
/// active here or unknown, no daemon).
const EXIT_ERROR: u8 = 2;
/// Exit code when a resource is missing or discrepant.
const EXIT_NOT_READY: u8 = 3;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every resource is present, 3 something is missing or discrepant, 2 the check could not run."
)]
pub struct Args {
    /// The vserver to fail over (run at the site holding its replica).
    vserver: String,
    /// Only check this site's resources and report; change nothing.
    #[arg(long)]
    check: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(data: &Path, args: Args) -> anyhow::Result<ExitCode> {
    match check(data, &args).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: cannot check failover of {}: {e:#}", args.vserver);
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

async fn check(data: &Path, args: &Args) -> anyhow::Result<ExitCode> {
    validate_name("vserver name", &args.vserver)?;
    if !args.check {
        anyhow::bail!("failover itself is not built yet; use --check");
    }
    let request = Request::FailoverCheck {
        vserver: args.vserver.clone(),
    };
    let reply = client::call(data, &request).await?;
    let Reply::FailoverChecked(report) = reply else {
        return Err(unexpected(&reply));
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::from(if report.ready {
        EXIT_READY
    } else {
        EXIT_NOT_READY
    }))
}

fn print_table(report: &FailoverCheck) {
    let width = report
        .lines
        .iter()
        .map(|l| l.resource.len())
        .max()
        .unwrap_or(0);
    say!(
        "Failover check of {} at site {}:",
        report.vserver,
        report.site
    );
    for l in &report.lines {
        say!(
            "  {:<width$}  {:<11}  {}",
            l.resource,
            l.outcome.to_string(),
            l.reason
        );
    }
    if report.ready {
        say!("Every resource is present.");
    } else {
        let blocking = report.lines.iter().filter(|l| l.outcome.blocks()).count();
        say!("{blocking} resource(s) missing or discrepant.");
    }
}
