//! Command-line surface: one module per command group. Commands other than
//! `init`, `daemon`, `demo` and `fsck` talk to the running daemon.

/// println! panics when stdout is gone (`tandem status | head -1`, or a
/// demo whose terminal closed); output is best effort, never a crash.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `say!` without the newline.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

#[cfg(feature = "bench")]
mod bench;
mod daemon;
mod demo;
mod failover;
mod fs;
mod fsck;
mod init;
mod output;
mod peer;
mod replicate;
mod resync;
mod signal;
mod status;
mod switchover;
mod user;
mod verify;
mod vserver;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "Tandem: a disaster-recovery NFS file server"
)]
pub struct Cli {
    /// The site's data directory.
    #[arg(long, global = true, env = "TANDEM_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new site: its data directory, site.toml and TLS identity.
    Init(init::Args),
    /// Run the site in the foreground until SIGTERM or Ctrl-C.
    Daemon,
    /// Manage virtual servers.
    #[command(subcommand)]
    Vserver(vserver::Command),
    /// Manage file systems and their exports.
    #[command(subcommand)]
    Fs(fs::Command),
    /// Manage a vserver's user map.
    #[command(subcommand)]
    User(user::Command),
    /// Pair with other sites (trust for replication).
    #[command(subcommand)]
    Peer(peer::Command),
    /// Replicate a vserver to a paired site (its replica is created there).
    Replicate(replicate::Args),
    /// Show the site and its vservers.
    Status(status::Args),
    /// Compare a replicated vserver's content at both sites at one LSN.
    Verify(verify::Args),
    /// Check this DR site's resources for taking over a vserver (--check).
    Failover(failover::Args),
    /// At a diverged former active site: keep its divergent writes in a
    /// folder, rewind it to the promoted site and become its replica.
    Resync(resync::Args),
    /// Move an active vserver to the peer it replicates to (planned).
    Switchover(switchover::Args),
    /// Check a vserver's store offline (the daemon must be stopped).
    Fsck(fsck::Args),
    /// The disaster-recovery story on this machine: two sites, a client,
    /// SIGKILL of the active site, failover, the client carrying on.
    Demo(demo::Args),
    /// Run the same NFS workload against Tandem and NFS-Ganesha; print ratios.
    #[cfg(feature = "bench")]
    Bench(bench::Args),
}

/// Long-running commands log at info; one-shot commands only say what went
/// wrong. RUST_LOG overrides either.
pub fn init_logging(command: &Command) {
    let default = match command {
        Command::Daemon | Command::Demo(_) => "info",
        #[cfg(feature = "bench")]
        Command::Bench(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal, not a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data = cli.data;
    match cli.command {
        Command::Init(args) => init::run(&need_data(data)?, args),
        Command::Daemon => daemon::run(&need_data(data)?).await,
        Command::Vserver(cmd) => vserver::run(&need_data(data)?, cmd).await,
        Command::Fs(cmd) => fs::run(&need_data(data)?, cmd).await,
        Command::User(cmd) => user::run(&need_data(data)?, cmd).await,
        Command::Peer(cmd) => peer::run(&need_data(data)?, cmd).await,
        Command::Replicate(args) => replicate::run(&need_data(data)?, args).await,
        Command::Status(args) => status::run(&need_data(data)?, args).await,
        Command::Verify(args) => verify::run(&need_data(data)?, args).await,
        Command::Failover(args) => failover::run(&need_data(data)?, args).await,
        Command::Resync(args) => resync::run(&need_data(data)?, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Switchover(args) => switchover::run(&need_data(data)?, args).await,
        Command::Fsck(args) => fsck::run(&need_data(data)?, args).await,
        Command::Demo(args) => demo::run(data, args).await,
        #[cfg(feature = "bench")]
        Command::Bench(args) => bench::run(args).await,
    }
}

fn need_data(data: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    data.context("no site given: pass --data DIR or set TANDEM_DATA")
}
