//! `tandem bench`: the side-by-side comparison with NFS-Ganesha that each
//! issue asks for, printed as one table of ratios. Not a test: numbers on a
//! shared machine are noisy, so nothing here asserts on time.
//! `tandem bench replication` is the replication benchmark instead, and
//! `tandem bench failover` times failovers.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tandem_bench::{BenchOptions, FailoverOptions, Rate, ReplOptions, ServerKind};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Small sizes (64 MiB, 1,000 files, one run) for a quick look.
    #[arg(long)]
    quick: bool,
    /// Servers to compare, comma-separated: tandem, ganesha.
    #[arg(long, value_delimiter = ',', value_parser = parse_server)]
    servers: Option<Vec<ServerKind>>,
    /// Parent directory for both servers' data (same disk for both).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the servers' data directories afterwards.
    #[arg(long)]
    keep: bool,
    /// Timed runs per row and server (the table shows the median).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeats: Option<u32>,
    /// Skip the untimed warm-up run.
    #[arg(long)]
    no_warmup: bool,
    /// Requests in flight (one TCP connection each).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    in_flight: Option<u64>,
    /// Also print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Replication: steady lag at paced client rates, wire bytes per
    /// changed byte, and catch-up against `rsync -a --inplace`; one table.
    Replication(ReplArgs),
    /// Failover: from the command to the first NFS reply at the vserver's
    /// address, over several runs (two `tandem daemon` processes, the
    /// active one killed with SIGKILL each time); one table.
    Failover(FailoverArgs),
}

#[derive(Debug, clap::Args)]
struct FailoverArgs {
    /// Failovers to time (fresh sites each).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// MiB the client writes and commits before each kill.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    write_mib: u64,
    /// Parent directory of every run's sites.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the sites afterwards.
    #[arg(long)]
    keep: bool,
    /// Loopback addresses: the vserver, the active site, the DR site.
    #[arg(long)]
    vs_ip: Option<IpAddr>,
    #[arg(long)]
    active_ip: Option<IpAddr>,
    #[arg(long)]
    dr_ip: Option<IpAddr>,
}

#[derive(Debug, clap::Args)]
struct ReplArgs {
    /// About a minute: 4 s per rate, 64 MiB catch-up tree.
    #[arg(long)]
    quick: bool,
    /// Parent directory for both sites and rsync's trees.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the data afterwards.
    #[arg(long)]
    keep: bool,
    /// Steady-lag client rates in MB/s, comma-separated; "max" = unpaced.
    #[arg(long, value_delimiter = ',', value_parser = parse_rate)]
    rates: Option<Vec<Rate>>,
    /// Seconds each steady-lag rate writes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: Option<u64>,
    /// WRITEs in flight in the steady-lag rows (one connection each).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    writers: Option<u64>,
    /// Catch-up tree size in MiB, and its number of files.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    tree_mib: Option<u64>,
    #[arg(long, value_parser = clap::value_parser!(u64).range(4..=100000))]
    tree_files: Option<u64>,
    /// Mixed change set: size in MiB of the files it starts from.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    mixed_mib: Option<u64>,
    /// Skip the rsync comparison.
    #[arg(long)]
    no_rsync: bool,
    /// The rsync binary (Debian: apt-get install -y rsync).
    #[arg(long, value_name = "PATH")]
    rsync: Option<PathBuf>,
    /// Loopback addresses of the active site and the replica.
    #[arg(long)]
    active_ip: Option<IpAddr>,
    #[arg(long)]
    replica_ip: Option<IpAddr>,
}

fn parse_server(s: &str) -> Result<ServerKind, String> {
    s.parse::<ServerKind>().map_err(|e| e.to_string())
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    s.parse::<Rate>().map_err(|e| e.to_string())
}

async fn run_replication(args: ReplArgs) -> anyhow::Result<ExitCode> {
    let mut o = if args.quick {
        ReplOptions::quick()
    } else {
        ReplOptions::default()
    };
    o.dir = args.dir;
    o.keep = args.keep;
    if let Some(r) = args.rates {
        o.rates = r;
    }
    if let Some(s) = args.seconds {
        o.phase = Duration::from_secs(s);
    }
    if let Some(w) = args.writers {
        o.writers = usize::try_from(w).context("--writers")?;
    }
    if let Some(m) = args.tree_mib {
        o.tree_bytes = m << 20;
    }
    if let Some(f) = args.tree_files {
        o.tree_files = f;
    }
    if let Some(m) = args.mixed_mib {
        o.mixed_bytes = m << 20;
    }
    o.rsync = !args.no_rsync;
    if let Some(p) = args.rsync {
        o.rsync_binary = p;
    }
    if let Some(ip) = args.active_ip {
        o.active_ip = ip;
    }
    if let Some(ip) = args.replica_ip {
        o.replica_ip = ip;
    }
    let report = tandem_bench::run_replication_async(o).await?;
    Ok(print_table(&report, report.is_complete()))
}

/// Prints a bench's table; success only if every row was measured.
fn print_table(report: &impl std::fmt::Display, complete: bool) -> ExitCode {
    say_raw!("{report}");
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_failover(args: FailoverArgs) -> anyhow::Result<ExitCode> {
    let bin = std::env::current_exe().context("finding the tandem binary")?;
    let mut o = FailoverOptions::new(bin);
    o.runs = args.runs;
    o.write_bytes = args.write_mib << 20;
    o.dir = args.dir;
    o.keep = args.keep;
    if let Some(ip) = args.vs_ip {
        o.vs_ip = ip;
    }
    if let Some(ip) = args.active_ip {
        o.active_ip = ip;
    }
    if let Some(ip) = args.dr_ip {
        o.dr_ip = ip;
    }
    let report = tandem_bench::run_failover(o).await?;
    Ok(print_table(&report, report.is_complete()))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::Replication(r)) => return run_replication(r).await,
        Some(Command::Failover(f)) => return run_failover(f).await,
        None => {}
    }
    let mut opts = if args.quick {
        BenchOptions::quick()
    } else {
        BenchOptions::default()
    };
    if let Some(servers) = args.servers {
        opts.servers = servers;
    }
    opts.dir = args.dir;
    opts.keep = args.keep;
    if let Some(r) = args.repeats {
        opts.repeats = r;
    }
    if args.no_warmup {
        opts.warmup = false;
    }
    if let Some(n) = args.in_flight {
        opts.in_flight = usize::try_from(n).context("--in-flight")?;
    }
    let report = tandem_bench::run_async(opts).await?;
    say_raw!("{report}");
    if args.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&report).context("report as JSON")?
        );
    }
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
