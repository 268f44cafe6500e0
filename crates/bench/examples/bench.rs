//! Runs the bench without the `tandem` binary:
//! `cargo run --release -p tandem-bench --example bench -- [--quick] [--servers tandem,ganesha] [--dir DIR] [--keep] [--repeats N] [--no-warmup] [--in-flight N]`

use anyhow::Context;
use tandem_bench::{BenchOptions, ServerKind};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = if args.iter().any(|a| a == "--quick") {
        BenchOptions::quick()
    } else {
        BenchOptions::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => {}
            "--keep" => opts.keep = true,
            "--servers" => {
                let v = it.next().context("--servers needs a value")?;
                opts.servers = v
                    .split(',')
                    .map(str::parse::<ServerKind>)
                    .collect::<Result<_, _>>()?;
            }
            "--dir" => opts.dir = Some(it.next().context("--dir needs a value")?.into()),
            "--no-warmup" => opts.warmup = false,
            "--repeats" => {
                opts.repeats = it.next().context("--repeats needs a value")?.parse()?;
            }
            "--in-flight" => {
                opts.in_flight = it.next().context("--in-flight needs a value")?.parse()?;
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let report = tandem_bench::run(opts)?;
    print!("{report}");
    if !report.is_complete() {
        std::process::exit(1);
    }
    Ok(())
}
