//! `tandem bench`: the side-by-side comparison with NFS-Ganesha that each
//! issue asks for, printed as one table of ratios. Not a test: numbers on a
//! shared machine are noisy, so nothing here asserts on time.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tandem_bench::{BenchOptions, ServerKind};

#[derive(Debug, clap::Args)]
pub struct Args {
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

fn parse_server(s: &str) -> Result<ServerKind, String> {
    s.parse::<ServerKind>().map_err(|e| e.to_string())
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
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
