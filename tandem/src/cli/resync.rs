//! `tandem resync VS [--replica-address ADDR] [--json]`, at a diverged
//! former active site: keeps its divergent writes in a folder, rewinds it
//! to the promoted site's state and makes it that site's replica.

use std::path::Path;
use std::time::Duration;

use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::names::{parse_address, validate_name};
use tandem_store::AddressSpec;

use super::output::unexpected;

/// A resync moves the divergent ranges and the state: minutes at most
/// for what a cut-off site writes before it is noticed.
const RESYNC_CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The diverged vserver (run at the former active site).
    vserver: String,
    /// Address ("IP/PREFIX[@INTERFACE]") this site then serves its replica
    /// on, read-only.
    #[arg(long, value_parser = parse_address)]
    replica_address: Option<AddressSpec>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(data: &Path, args: Args) -> anyhow::Result<()> {
    validate_name("vserver name", &args.vserver)?;
    let request = Request::Resync {
        vserver: args.vserver.clone(),
        replica_address: args.replica_address.clone(),
    };
    let reply = client::call_within(data, &request, RESYNC_CLIENT_TIMEOUT).await?;
    let Reply::Resynced(r) = reply else {
        return Err(unexpected(&reply));
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    say!(
        "{}: {} divergent records after the shared LSN {} kept in {}",
        r.vserver,
        r.divergent_records,
        r.shared_lsn,
        r.folder
    );
    say!(
        "fetched {} bytes of file data (+ {} bytes of state) from {}; divergent bytes {}, bytes {} changed {}",
        r.fetched_bytes, r.state_bytes, r.peer, r.divergent_bytes, r.peer, r.peer_changed_bytes
    );
    say!(
        "{} is now a replica of {} at LSN {} (epoch {}); bring it home with `tandem switchover {} --to <this site>` at {}",
        r.vserver, r.peer, r.lsn, r.epoch, r.vserver, r.peer
    );
    Ok(())
}
