//! `tandem replicate VS --to PEER [--mode async|commit-sync|sync]
//! [--sync-timeout-ms N] [--on-replica-loss degrade|block] [--max-lag-ms N]
//! [--bandwidth-mbps N] [--compress zstd|none] [--replica-address IP/PREFIX]
//! [--wait [--wait-timeout-s N]]`, and `tandem replicate VS --stop`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::names::{parse_address, validate_name};
use tandem_control::replication::{Compress, Mode, OnLoss, MAX_BANDWIDTH_MBPS, MAX_MAX_LAG_MS};
use tandem_store::AddressSpec;

use super::output::unexpected;

mod wait;

/// Longest `--wait-timeout-s`: a day; a baseline that takes longer is
/// better followed with `tandem status`.
pub const MAX_WAIT_TIMEOUT_S: u64 = 86_400;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vserver to replicate (active at this site).
    vserver: String,
    /// The paired site to replicate to (a name from `tandem peer list`).
    #[arg(long, value_name = "PEER", required_unless_present = "stop")]
    to: Option<String>,
    /// async: stable replies wait for the local journal only. commit-sync:
    /// COMMIT, FILE_SYNC writes and namespace changes also wait for the
    /// replica's durable ack. sync: every write waits for it.
    #[arg(long, value_enum, default_value_t = Mode::Async)]
    mode: Mode,
    /// commit-sync and sync (and async with --max-lag-ms): how long a reply
    /// waits for the replica before --on-replica-loss applies [default: 5000].
    #[arg(long, value_name = "MS")]
    sync_timeout_ms: Option<u64>,
    /// commit-sync and sync (and async with --max-lag-ms): degrade (reply
    /// without the replica, raise an alert, return to the mode once it
    /// caught up) or block (keep waiting).
    #[arg(long, value_enum)]
    on_replica_loss: Option<OnLoss>,
    /// async: when the oldest record the replica lacks is older than this,
    /// change replies wait for it (throttling writers to bound the RPO).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=MAX_MAX_LAG_MS))]
    max_lag_ms: Option<u64>,
    /// Limit the sender to this many megabits per second [default: no limit].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BANDWIDTH_MBPS)))]
    bandwidth_mbps: Option<u32>,
    /// Compress journal batches on the wire [default: zstd].
    #[arg(long, value_enum)]
    compress: Option<Compress>,
    /// Serve the copy read-only over NFS on this address at the peer:
    /// IP/PREFIX[@INTERFACE].
    #[arg(long, value_name = "IP/PREFIX", value_parser = parse_address)]
    replica_address: Option<AddressSpec>,
    /// Wait until the replica is streaming (its baseline done), showing
    /// progress; Ctrl-C stops waiting, not replicating.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, at most.
    #[arg(long, value_name = "S", default_value_t = 3600, requires = "wait",
          value_parser = clap::value_parser!(u64).range(1..=MAX_WAIT_TIMEOUT_S))]
    wait_timeout_s: u64,
    /// Stop replicating VS (the replica at the peer stays, a replica).
    #[arg(long, conflicts_with_all = ["to", "sync_timeout_ms", "on_replica_loss", "max_lag_ms",
          "bandwidth_mbps", "compress", "replica_address", "wait"])]
    stop: bool,
}

pub async fn run(data: &Path, args: Args) -> anyhow::Result<ExitCode> {
    validate_name("vserver name", &args.vserver)?;
    if args.stop {
        return stop(data, &args.vserver).await;
    }
    let to = args.to.clone().unwrap_or_default();
    validate_name("peer name", &to)?;
    let reply = client::call(
        data,
        &Request::Replicate {
            vserver: args.vserver.clone(),
            to: to.clone(),
            mode: args.mode,
            replica_address: args.replica_address.clone(),
            sync_timeout_ms: args.sync_timeout_ms,
            on_replica_loss: args.on_replica_loss,
            max_lag_ms: args.max_lag_ms,
            bandwidth_mbps: args.bandwidth_mbps,
            compress: args.compress,
        },
    )
    .await
    .with_context(|| format!("cannot replicate {} to {to}", args.vserver))?;
    let Reply::Replicating {
        vserver,
        replication,
    } = reply
    else {
        return Err(unexpected(&reply));
    };
    let to = replication.to.unwrap_or_default();
    say!(
        "Replicating {vserver} to {to} ({} mode){}; follow it with `tandem status {vserver}`",
        replication.mode,
        match &replication.replica_address {
            Some(a) => format!(", replica served read-only on {a}"),
            None => String::new(),
        }
    );
    if args.wait {
        return wait::until_streaming(data, &vserver, args.wait_timeout_s).await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn stop(data: &Path, vserver: &str) -> anyhow::Result<ExitCode> {
    let reply = client::call(
        data,
        &Request::ReplicateStop {
            vserver: vserver.to_string(),
        },
    )
    .await
    .with_context(|| format!("cannot stop replicating {vserver}"))?;
    let Reply::ReplicationStopped { vserver, to } = reply else {
        return Err(unexpected(&reply));
    };
    say!(
        "Stopped replicating {vserver} to {to}. The copy at {to} stays there as a replica \
         (remove it there, or promote it, as you need); {vserver} goes on serving here."
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn parse(extra: &[&str]) -> Result<super::Args, clap::Error> {
        let mut argv = vec!["tandem", "replicate", "vs", "--to", "beta"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Replicate(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// The option words are the ones the CLI always took.
    #[test]
    fn option_words_are_unchanged() {
        use tandem_control::replication::{Compress, Mode, OnLoss};
        assert_eq!(parse(&[]).unwrap().mode, Mode::Async);
        for (word, mode) in [
            ("async", Mode::Async),
            ("commit-sync", Mode::CommitSync),
            ("sync", Mode::Sync),
        ] {
            assert_eq!(parse(&["--mode", word]).unwrap().mode, mode);
        }
        for (word, loss) in [("degrade", OnLoss::Degrade), ("block", OnLoss::Block)] {
            let args = parse(&["--mode", "sync", "--on-replica-loss", word]).unwrap();
            assert_eq!(args.on_replica_loss, Some(loss));
        }
        for (word, c) in [("zstd", Compress::Zstd), ("none", Compress::None)] {
            assert_eq!(parse(&["--compress", word]).unwrap().compress, Some(c));
        }
        let a = parse(&["--replica-address", "10.1.2.3/24@eth0"]).unwrap();
        assert_eq!(
            a.replica_address.map(|a| a.to_string()).as_deref(),
            Some("10.1.2.3/24@eth0")
        );
        for bad in [
            &["--mode", "eventually"][..],
            &["--mode", "Async"],
            &["--on-replica-loss", "shrug"],
            &["--compress", "lz4"],
            &["--replica-address", "1.2.3"],
            &["--replica-address", "0.0.0.0/0"],
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad[1]), "{bad:?}: {e}");
        }
    }
}
