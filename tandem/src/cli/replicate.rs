//! `tandem replicate VS --to PEER [--mode async|commit-sync|sync]
//! [--sync-timeout-ms N] [--on-replica-loss degrade|block] [--replica-address IP/PREFIX]`

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::names::{parse_address, validate_name};

use super::output::unexpected;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vserver to replicate (active at this site).
    vserver: String,
    /// The paired site to replicate to (a name from `tandem peer list`).
    #[arg(long, value_name = "PEER")]
    to: String,
    /// async: stable replies wait for the local journal only. commit-sync:
    /// COMMIT, FILE_SYNC writes and namespace changes also wait for the
    /// replica's durable ack. sync: every write waits for it.
    #[arg(long, default_value = "async", value_parser = ["async", "commit-sync", "sync"])]
    mode: String,
    /// commit-sync and sync: how long a reply waits for the replica's ack
    /// before --on-replica-loss applies [default: 5000].
    #[arg(long, value_name = "MS")]
    sync_timeout_ms: Option<u64>,
    /// commit-sync and sync: degrade (reply without the replica, raise an
    /// alert, return to the mode once it caught up) or block (keep waiting).
    #[arg(long, value_parser = ["degrade", "block"])]
    on_replica_loss: Option<String>,
    /// Serve the copy read-only over NFS on this address at the peer:
    /// IP/PREFIX[@INTERFACE].
    #[arg(long, value_name = "IP/PREFIX")]
    replica_address: Option<String>,
}

pub async fn run(data: &Path, args: Args) -> anyhow::Result<ExitCode> {
    validate_name("vserver name", &args.vserver)?;
    validate_name("peer name", &args.to)?;
    if let Some(a) = &args.replica_address {
        parse_address(a)?;
    }
    let reply = client::call(
        data,
        &Request::Replicate {
            vserver: args.vserver.clone(),
            to: args.to.clone(),
            mode: args.mode.clone(),
            replica_address: args.replica_address.clone(),
            sync_timeout_ms: args.sync_timeout_ms,
            on_replica_loss: args.on_replica_loss.clone(),
        },
    )
    .await
    .with_context(|| format!("cannot replicate {} to {}", args.vserver, args.to))?;
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
    Ok(ExitCode::SUCCESS)
}
