//! `tandem peer ...`: pairing with other sites.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::names::validate_name;
use tandem_control::config::peers::Peer;

use super::output::{table, unexpected};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Pair with another site: accept connections from it and allow
    /// connecting to it. Run the matching `peer add` at the other site too.
    Add {
        /// A local name for the peer (letters, digits, '_', '.', '-').
        name: String,
        /// Where the peer listens: HOST[:PORT] (its site.toml `listen`).
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
        /// The peer's site id, as its `tandem status` shows.
        #[arg(long, value_name = "SITEID")]
        id: String,
    },
    /// List paired sites.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Unpair a site: its connections are refused from now on.
    Remove {
        /// The peer's local name.
        name: String,
    },
    /// Connect to a peer with mutual TLS and measure a round trip.
    Check {
        /// The peer's local name.
        name: String,
    },
}

pub async fn run(data: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Add { name, addr, id } => add(data, name, addr, id).await,
        Command::List { json } => list(data, json).await,
        Command::Remove { name } => remove(data, name).await,
        Command::Check { name } => check(data, name).await,
    }
}

async fn add(data: &Path, name: String, addr: String, id: String) -> anyhow::Result<ExitCode> {
    validate_name("peer name", &name)?;
    // Own id and duplicates are the daemon's to check; it holds the list.
    let reply = client::call(
        data,
        &Request::PeerAdd {
            peer: Peer {
                name: name.clone(),
                addr,
                id,
            },
        },
    )
    .await
    .with_context(|| format!("cannot add peer {name}"))?;
    let Reply::PeerAdded(p) = reply else {
        return Err(unexpected(&reply));
    };
    say!("Added peer {} at {} (id {})", p.name, p.addr, p.id);
    Ok(ExitCode::SUCCESS)
}

async fn list(data: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let reply = client::call(data, &Request::PeerList)
        .await
        .context("cannot list peers")?;
    let Reply::Peers(peers) = reply else {
        return Err(unexpected(&reply));
    };
    if json {
        say!("{}", serde_json::to_string_pretty(&peers)?);
    } else if peers.is_empty() {
        say!("no peers (pair one with `tandem peer add NAME --addr HOST:PORT --id SITEID`)");
    } else {
        let rows: Vec<Vec<String>> = peers
            .iter()
            .map(|p| vec![p.name.clone(), p.addr.clone(), p.id.clone()])
            .collect();
        say!("{}", table(&["PEER", "ADDRESS", "SITE ID"], &rows));
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(data: &Path, name: String) -> anyhow::Result<ExitCode> {
    validate_name("peer name", &name)?;
    let reply = client::call(data, &Request::PeerRemove { name: name.clone() })
        .await
        .with_context(|| format!("cannot remove peer {name}"))?;
    let Reply::PeerRemoved(p) = reply else {
        return Err(unexpected(&reply));
    };
    say!("Removed peer {} (id {})", p.name, p.id);
    Ok(ExitCode::SUCCESS)
}

async fn check(data: &Path, name: String) -> anyhow::Result<ExitCode> {
    validate_name("peer name", &name)?;
    let reply = client::call(data, &Request::PeerCheck { name: name.clone() })
        .await
        .with_context(|| format!("peer check {name} failed"))?;
    let Reply::PeerChecked(c) = reply else {
        return Err(unexpected(&reply));
    };
    say!(
        "peer {} at {} is reachable and paired both ways (id {}): connect+handshake {:.1} ms, round trip {:.3} ms",
        c.name,
        c.addr,
        c.id,
        c.connect_us as f64 / 1000.0,
        c.rtt_us as f64 / 1000.0
    );
    Ok(ExitCode::SUCCESS)
}
