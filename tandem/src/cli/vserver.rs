//! `tandem vserver ...`

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::names::{parse_address, validate_name};
use tandem_store::AddressSpec;

use super::output::{describe_endpoint, unexpected};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a vserver and start serving it on its addresses.
    Create {
        /// The vserver's name.
        name: String,
        /// IP/PREFIX[@INTERFACE], e.g. 127.0.0.2/32 or 10.0.0.5/24@eth0.
        /// Repeatable.
        #[arg(
            long = "address",
            required = true,
            value_name = "IP/PREFIX[@INTERFACE]",
            value_parser = parse_address
        )]
        addresses: Vec<AddressSpec>,
    },
}

pub async fn run(data: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create { name, addresses } => create(data, name, addresses).await,
    }
}

async fn create(
    data: &Path,
    name: String,
    addresses: Vec<AddressSpec>,
) -> anyhow::Result<ExitCode> {
    validate_name("vserver name", &name)?;
    let reply = client::call(
        data,
        &Request::VserverCreate {
            name: name.clone(),
            addresses,
        },
    )
    .await
    .with_context(|| format!("cannot create vserver {name}"))?;
    let Reply::VserverCreated(vs) = reply else {
        return Err(unexpected(&reply));
    };
    say!(
        "Created vserver {} ({})",
        vs.name,
        vs.addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for e in &vs.endpoints {
        say!("  serving {}", describe_endpoint(e));
    }
    for f in &vs.bind_failures {
        say!("  NOT serving {}: {}", f.address, f.error);
    }
    Ok(ExitCode::SUCCESS)
}
