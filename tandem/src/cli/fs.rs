//! `tandem fs ...`

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::names::{parse_clients, validate_export_path, validate_name};
use tandem_store::config::NOBODY;
use tandem_store::Export;

use super::output::{describe_fs, unexpected};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a file system in a vserver and export it.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The vserver to create it in.
    vserver: String,
    /// The file system's name.
    name: String,
    /// The path clients mount, e.g. /data.
    #[arg(long, value_name = "/PATH")]
    export: String,
    /// Client networks allowed, comma-separated CIDRs; default: everyone.
    #[arg(long, value_name = "CIDR,...")]
    clients: Option<String>,
    /// Export read-only.
    #[arg(long)]
    ro: bool,
    /// Map client root to the anonymous ids (the default).
    #[arg(long, overrides_with = "no_root_squash")]
    root_squash: bool,
    /// Let client root act as root.
    #[arg(long, overrides_with = "root_squash")]
    no_root_squash: bool,
    /// Uid that squashed and unknown users get.
    #[arg(long, default_value_t = NOBODY, value_name = "N")]
    anon_uid: u32,
    /// Gid that squashed and unknown users get.
    #[arg(long, default_value_t = NOBODY, value_name = "N")]
    anon_gid: u32,
}

pub async fn run(data: &Path, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create(args) => create(data, args).await,
    }
}

async fn create(data: &Path, args: CreateArgs) -> anyhow::Result<ExitCode> {
    validate_name("vserver name", &args.vserver)?;
    validate_name("file system name", &args.name)?;
    validate_export_path(&args.export)?;
    let clients = match &args.clients {
        Some(text) => parse_clients(text)?,
        None => Vec::new(),
    };
    let export = Export {
        path: args.export.clone(),
        clients,
        read_only: args.ro,
        root_squash: !args.no_root_squash,
        anon_uid: args.anon_uid,
        anon_gid: args.anon_gid,
    };
    let reply = client::call(
        data,
        &Request::FsCreate {
            vserver: args.vserver.clone(),
            name: args.name.clone(),
            export,
        },
    )
    .await
    .with_context(|| {
        format!(
            "cannot create file system {} in vserver {}",
            args.name, args.vserver
        )
    })?;
    let Reply::FsCreated { vserver, fs, .. } = reply else {
        return Err(unexpected(&reply));
    };
    say!("Created file system {} in vserver {vserver}", fs.name);
    say!("  {}", describe_fs(&fs));
    Ok(ExitCode::SUCCESS)
}
