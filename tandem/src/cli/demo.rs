//! `tandem demo`: the newcomer's first command. A site, a vserver on a
//! loopback address, a writable export with a README in it, and the client
//! commands to try, all in one process, until Ctrl-C.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use tandem_control::daemon::{Daemon, RunningDaemon};
use tandem_control::site::{running_as_root, Site};
use tandem_control::status::VserverStatus;
use tandem_store::config::NOBODY;
use tandem_store::{AddressSpec, CreateHow, Cred, Export, OpCtx, SetAttr, Store, StoreError};

use super::signal::Terminate;

const VSERVER: &str = "demo";
const FS: &str = "data";
const EXPORT: &str = "/data";
const README: &[u8] = b"Hello from Tandem.\n\n\
This file lives in the file system `data` of the virtual server `demo`.\n\
Everything written here goes through Tandem's journal: try copying a file\n\
in with nfs-cp, restarting `tandem demo --data DIR`, and reading it back.\n";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Loopback address the demo vserver serves on.
    #[arg(long, default_value = "127.0.0.2")]
    ip: IpAddr,
}

pub async fn run(data: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let mut terminate = Terminate::install()?;
    // Without --data the demo lives in a temporary directory, removed at
    // exit; with it, the demo's data survives and a rerun picks it up.
    let (dir, _temp) = match data {
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("tandem-demo-")
                .tempdir()
                .context("creating a temporary site directory")?;
            (t.path().join("site"), Some(t))
        }
    };
    if !dir.join("site.toml").exists() {
        Site::init(&dir, "demo-site", "127.0.0.1", running_as_root())
            .with_context(|| format!("cannot create the demo site in {}", dir.display()))?;
    }
    let running = RunningDaemon::start(&dir)
        .await
        .with_context(|| format!("cannot start the demo site in {}", dir.display()))?;
    let prepared = prepare(running.daemon(), args.ip).await;
    let vs = match prepared {
        Ok(vs) => vs,
        Err(e) => {
            running.stop().await;
            return Err(e);
        }
    };
    print_instructions(&dir, &vs, args.ip);
    let sig = terminate.recv().await;
    say!("\n{sig}: stopping the demo");
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Creates (or finds) the demo vserver, its file system and its README.
async fn prepare(daemon: &Arc<Daemon>, ip: IpAddr) -> anyhow::Result<VserverStatus> {
    if daemon.status(Some(VSERVER)).await.is_err() {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        daemon
            .create_vserver(
                VSERVER,
                vec![AddressSpec {
                    ip,
                    prefix,
                    interface: None,
                }],
            )
            .await
            .context("creating the demo vserver")?;
        daemon
            .create_fs(
                VSERVER,
                FS,
                Export {
                    path: EXPORT.to_string(),
                    clients: Vec::new(),
                    read_only: false,
                    // So whoever runs the client tools can write.
                    root_squash: false,
                    anon_uid: NOBODY,
                    anon_gid: NOBODY,
                },
            )
            .await
            .context("creating the demo file system")?;
        let store = daemon.store(VSERVER).await?;
        tokio::task::spawn_blocking(move || write_readme(&store))
            .await
            .context("writing the demo README")?
            .context("writing the demo README")?;
    }
    let report = daemon.status(Some(VSERVER)).await?;
    let Some(vs) = report.vservers.into_iter().next() else {
        bail!("the demo vserver vanished");
    };
    if vs.endpoints.is_empty() {
        let why = vs
            .bind_failures
            .iter()
            .map(|f| format!("{}: {}", f.address, f.error))
            .collect::<Vec<_>>()
            .join("; ");
        bail!(
            "the demo vserver could not be served ({why}). Is another NFS server using the \
             ports? Pick another address with --ip, or other ports in site.toml with --data DIR"
        );
    }
    Ok(vs)
}

/// The README, and a root directory anyone may write to: the demo runs on
/// loopback only, and the first thing a newcomer tries is copying a file in.
fn write_readme(store: &Store) -> anyhow::Result<()> {
    let root_ino = store
        .config()
        .filesystems
        .get(FS)
        .map(|fs| fs.root_ino)
        .context("the demo file system is missing")?;
    let ctx = OpCtx::new(Cred::root());
    let chmod = SetAttr {
        mode: Some(0o1777),
        ..SetAttr::default()
    };
    store.setattr(&ctx, root_ino, &chmod, None)?;
    let set = SetAttr {
        mode: Some(0o644),
        ..SetAttr::default()
    };
    let file = match store.create(&ctx, root_ino, b"README", CreateHow::Guarded, &set) {
        Ok(m) => m.value,
        Err(StoreError::Exist) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let written = store.write(&ctx, file.ino, 0, README)?;
    store.wait_durable_blocking(written.lsn)?;
    Ok(())
}

fn print_instructions(dir: &Path, vs: &VserverStatus, ip: IpAddr) {
    let Some(e) = vs.endpoints.first() else {
        return;
    };
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let query = if e.portmap_port == Some(111) {
        String::new()
    } else {
        format!("?nfsport={}&mountport={}", e.nfs_port, e.mount_port)
    };
    let url = |path: &str| format!("nfs://{host}{EXPORT}{path}{query}");
    say!();
    say!("Tandem demo is serving vserver `{VSERVER}` at {host}, export {EXPORT}.");
    say!("Site data: {}", dir.display());
    say!();
    say!("Try, from another terminal (Debian/Ubuntu: apt-get install libnfs-utils):");
    say!("  nfs-ls \"{}\"", url(""));
    say!("  nfs-cat \"{}\"", url("/README"));
    say!("  nfs-cp /etc/hostname \"{}\"", url("/hostname"));
    say!("  nfs-cp \"{}\" /tmp/hostname.copy", url("/hostname"));
    if query.is_empty() {
        // Clients that do not ask the portmapper need the ports spelled out.
        say!(
            "  (without the portmapper: nfs-ls \"nfs://{host}{EXPORT}?nfsport={}&mountport={}\")",
            e.nfs_port,
            e.mount_port
        );
    }
    say!();
    say!("Inspect the site:");
    say!("  tandem --data {} status", dir.display());
    say!();
    say!("Press Ctrl-C to stop.");
}
