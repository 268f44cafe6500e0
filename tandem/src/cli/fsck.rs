//! `tandem fsck VS`: offline store check. Exit 0 when clean, 2 when it
//! found problems, 1 when it could not run (e.g. the daemon is running).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_control::vserver::fsck::check_offline;
use tandem_control::ControlError;
use tandem_store::StoreError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vserver to check.
    vserver: String,
}

pub async fn run(data: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let data = data.to_path_buf();
    let vserver = args.vserver.clone();
    // The check reads the whole store: keep it off the async workers.
    let checked = tokio::task::spawn_blocking(move || check_offline(&data, &vserver))
        .await
        .context("fsck task failed")?;
    // A store too damaged to open is a finding, not a failure to check.
    if let Err(ControlError::Store {
        source: StoreError::Corrupt(why),
        ..
    }) = &checked
    {
        say!("vserver {}: problem: store corrupt: {why}", args.vserver);
        say!("vserver {}: 1 problem(s) found", args.vserver);
        return Ok(ExitCode::from(2));
    }
    let report = checked.map_err(|e| {
        let hint = match e {
            ControlError::DaemonRunning { .. } => " (fsck runs offline: stop the daemon first)",
            _ => "",
        };
        anyhow::Error::new(e).context(format!("cannot check vserver {}{hint}", args.vserver))
    })?;
    say_raw!("vserver {}: {report}", args.vserver);
    if report.is_clean() {
        Ok(ExitCode::SUCCESS)
    } else {
        let count = report.problems.len() as u64 + report.more_problems;
        say!("vserver {}: {count} problem(s) found", args.vserver);
        Ok(ExitCode::from(2))
    }
}
