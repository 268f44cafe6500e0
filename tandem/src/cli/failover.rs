//! `tandem failover VS [--check] [--force] [--yes] [--json]` at the DR
//! site. `--check` checks this site's resources and reports them. Without
//! it the daemon checks, and when everything is present (or `--force`, or
//! the operator answers "force" at the prompt) reserves, promotes and
//! serves the vserver here, timing each step. Address claim through
//! netlink is not built yet: the addresses must already be on the host.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::names::validate_name;
use tandem_control::dr::failover::check::FailoverCheck;
use tandem_control::dr::failover::report::FailoverReport;

use super::output::{columns, unexpected};

/// Exit code when every resource is present.
const EXIT_READY: u8 = 0;
/// Exit code when the check could not run (no `--check`, the vserver is
/// active here or unknown, no daemon).
const EXIT_ERROR: u8 = 2;
/// Exit code when a resource is missing or discrepant.
const EXIT_NOT_READY: u8 = 3;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every resource is present (--check) or the failover is done, 3 something is missing or discrepant and the failover did not go on, 2 the check or failover could not run."
)]
pub struct Args {
    /// The vserver to fail over (run at the site holding its replica).
    vserver: String,
    /// Only check this site's resources and report; change nothing.
    #[arg(long)]
    check: bool,
    /// Go on even when resources are missing; report what was left out.
    #[arg(long, conflicts_with = "check")]
    force: bool,
    /// Never ask: without --force, stop when something is missing.
    #[arg(long, conflicts_with = "check")]
    yes: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Longest answer read at the prompt.
const MAX_ANSWER_BYTES: u64 = 256;

pub async fn run(data: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let done = if args.check {
        check(data, &args).await
    } else {
        failover(data, &args).await
    };
    match done {
        Ok(code) => Ok(code),
        Err(e) => {
            let what = if args.check { "check" } else { "complete" };
            eprintln!("error: cannot {what} failover of {}: {e:#}", args.vserver);
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

async fn failover(data: &Path, args: &Args) -> anyhow::Result<ExitCode> {
    validate_name("vserver name", &args.vserver)?;
    let mut report = ask(data, &args.vserver, args.force).await?;
    if !report.done && !args.yes && std::io::stdin().is_terminal() {
        if let Some(check) = &report.check {
            print_table(check);
        }
        say!("Terminate, or force the failover without what is missing? [terminate/force]");
        if read_answer()? == "force" {
            report = ask(data, &args.vserver, true).await?;
        }
    }
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_failover(&report);
    }
    Ok(ExitCode::from(if report.done {
        EXIT_READY
    } else {
        EXIT_NOT_READY
    }))
}

async fn ask(data: &Path, vserver: &str, force: bool) -> anyhow::Result<FailoverReport> {
    let request = Request::Failover {
        vserver: vserver.to_string(),
        force,
    };
    let reply = client::call(data, &request).await?;
    match reply {
        Reply::FailedOver(report) => Ok(*report),
        other => Err(unexpected(&other)),
    }
}

fn read_answer() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::Read::take(std::io::stdin().lock(), MAX_ANSWER_BYTES).read_line(&mut line)?;
    Ok(line.trim().to_ascii_lowercase())
}

pub(super) fn print_failover(report: &FailoverReport) {
    if let Some(check) = &report.check {
        print_table(check);
    }
    if let Some(step) = &report.resumed_from {
        say!("Resumed an interrupted failover from step {step}.");
    }
    if !report.done {
        say!("Failover of {} stopped: nothing changed (use --force to go on without what is missing).", report.vserver);
        return;
    }
    for l in &report.left_out {
        say!("  left out: {}: {}", l.resource, l.reason);
    }
    say!(
        "{} is active at site {}: epoch {}, LSN {}.",
        report.vserver,
        report.site,
        report.epoch,
        report.lsn
    );
    for a in &report.serving {
        say!("  serving {a} read-write");
    }
    for a in &report.not_serving {
        say!("  not serving {a}");
    }
    for s in &report.steps {
        say!("  {:<8} {:>10.3} ms", s.step, s.micros as f64 / 1000.0);
    }
    say!(
        "  {:<8} {:>10.3} ms",
        "total",
        report.total_micros() as f64 / 1000.0
    );
}

async fn check(data: &Path, args: &Args) -> anyhow::Result<ExitCode> {
    validate_name("vserver name", &args.vserver)?;
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
    say!(
        "Failover check of {} at site {}:",
        report.vserver,
        report.site
    );
    let rows: Vec<Vec<String>> = report
        .lines
        .iter()
        .map(|l| vec![l.resource.clone(), l.outcome.to_string(), l.reason.clone()])
        .collect();
    for line in columns(None, &rows).lines() {
        say!("  {line}");
    }
    if report.ready {
        say!("Every resource is present.");
    } else {
        let blocking = report.lines.iter().filter(|l| l.outcome.blocks()).count();
        say!("{blocking} resource(s) missing or discrepant.");
    }
}
