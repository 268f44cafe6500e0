//! `tandem user ...`

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::names::{parse_groups, validate_name};
use tandem_store::User;

use super::output::{describe_user, unexpected};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a user to a vserver's user map.
    Add(AddArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The vserver.
    vserver: String,
    /// The user's name.
    name: String,
    #[arg(long, value_name = "N")]
    uid: u32,
    #[arg(long, value_name = "N")]
    gid: u32,
    /// Supplementary group ids, comma-separated.
    #[arg(long, value_name = "GID,...")]
    groups: Option<String>,
}

pub async fn run(data: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Add(args) => add(data, args).await,
    }
}

async fn add(data: &Path, args: AddArgs) -> anyhow::Result<ExitCode> {
    validate_name("vserver name", &args.vserver)?;
    validate_name("user name", &args.name)?;
    let groups = match &args.groups {
        Some(text) => parse_groups(text)?,
        None => Vec::new(),
    };
    let user = User {
        name: args.name.clone(),
        uid: args.uid,
        gid: args.gid,
        groups,
    };
    let reply = client::call(
        data,
        &Request::UserAdd {
            vserver: args.vserver.clone(),
            user,
        },
    )
    .await
    .with_context(|| format!("cannot add user {} to vserver {}", args.name, args.vserver))?;
    let Reply::UserAdded { vserver, user, .. } = reply else {
        return Err(unexpected(&reply));
    };
    say!("Added user {} to vserver {vserver}", describe_user(&user));
    Ok(ExitCode::SUCCESS)
}
