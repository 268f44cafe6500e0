//! `tandem demo`: the newcomer's first command. Two sites in one process:
//! the active one serves a vserver on a loopback address (a writable export
//! with a README in it); a disaster-recovery site, paired with it over
//! mutual TLS, receives the vserver by replication and serves the copy
//! read-only on a second address. It prints the client commands to try and
//! runs until Ctrl-C.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tandem_control::daemon::{Daemon, RunningDaemon};
use tandem_control::peer::Peer;
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

const ACTIVE_LISTEN: &str = "127.0.0.1:7447";
const DR_PEER: &str = "dr";
const ACTIVE_PEER: &str = "active";
/// How long the demo waits for the first copy to reach the DR site.
const REPLICA_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Loopback address the demo vserver serves on.
    #[arg(long, default_value = "127.0.0.2")]
    ip: IpAddr,
    /// Loopback address of the disaster-recovery site: it listens for its
    /// peer there and serves the replica read-only.
    #[arg(long, default_value = "127.0.0.3")]
    dr_ip: IpAddr,
    /// Only the active site: no DR site, no replication.
    #[arg(long)]
    no_dr: bool,
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
        Site::init(&dir, "demo-site", ACTIVE_LISTEN, running_as_root())
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
    let dr = if args.no_dr {
        None
    } else {
        let dr_dir = dir.with_file_name(format!(
            "{}-dr",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("site")
        ));
        match start_dr(running.daemon(), &dr_dir, args.dr_ip).await {
            Ok(d) => Some((dr_dir, d)),
            Err(e) => {
                running.stop().await;
                return Err(e);
            }
        }
    };
    print_instructions(&dir, &vs, args.ip);
    if let Some((dr_dir, _)) = &dr {
        print_dr_instructions(&dir, dr_dir, &vs, args.dr_ip);
    }
    say!("Press Ctrl-C to stop.");
    let sig = terminate.recv().await;
    say!("\n{sig}: stopping the demo");
    if let Some((_, d)) = dr {
        d.stop().await;
    }
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Starts the DR site, pairs the two sites both ways, replicates the demo
/// vserver to it and waits until the copy has caught up.
async fn start_dr(
    active: &Arc<Daemon>,
    dr_dir: &Path,
    dr_ip: IpAddr,
) -> anyhow::Result<RunningDaemon> {
    let active_listen = active.site().config.listen.clone();
    // Same port as the active site's listener, on the DR address.
    let port = active_listen
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or("7447");
    let dr_listen = match dr_ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    if !dr_dir.join("site.toml").exists() {
        let mut site = Site::init(dr_dir, "demo-dr", &dr_listen, running_as_root())
            .with_context(|| format!("cannot create the DR site in {}", dr_dir.display()))?;
        // The same NFS ports as the active site (on another address), so one
        // set of client commands works for both.
        site.config.nfs = active.site().config.nfs.clone();
        site.save()
            .with_context(|| format!("cannot configure the DR site in {}", dr_dir.display()))?;
    }
    let dr = RunningDaemon::start(dr_dir)
        .await
        .with_context(|| format!("cannot start the DR site in {}", dr_dir.display()))?;
    let result = async {
        let pairs = [
            (
                active,
                DR_PEER,
                dr_listen.clone(),
                dr.daemon().site().identity.id.clone(),
            ),
            (
                dr.daemon(),
                ACTIVE_PEER,
                active_listen.clone(),
                active.site().identity.id.clone(),
            ),
        ];
        for (daemon, name, addr, id) in pairs {
            let known = daemon.peers().await.iter().any(|p| p.name == name);
            if !known {
                daemon
                    .add_peer(Peer {
                        name: name.to_string(),
                        addr,
                        id,
                    })
                    .await
                    .with_context(|| format!("pairing the demo sites ({name})"))?;
            }
        }
        let prefix = if dr_ip.is_ipv4() { 32 } else { 128 };
        let replicated = active
            .status(Some(VSERVER))
            .await?
            .vservers
            .iter()
            .any(|v| v.replication.is_some());
        if !replicated {
            active
                .replicate(
                    VSERVER,
                    tandem_control::replication::Outgoing {
                        replica_address: Some(format!("{dr_ip}/{prefix}")),
                        ..tandem_control::replication::Outgoing::new(DR_PEER, "async")
                    },
                )
                .await
                .context("replicating the demo vserver to the DR site")?;
        }
        wait_for_replica(active, dr.daemon()).await
    }
    .await;
    match result {
        Ok(()) => Ok(dr),
        Err(e) => {
            dr.stop().await;
            Err(e)
        }
    }
}

/// Polls (with a deadline) until the DR site has applied everything the
/// active site has, so the printed commands find the README there.
async fn wait_for_replica(active: &Arc<Daemon>, dr: &Arc<Daemon>) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let want = active
            .status(Some(VSERVER))
            .await?
            .vservers
            .first()
            .map(|v| v.last_lsn)
            .unwrap_or(0);
        let have = dr
            .status(Some(VSERVER))
            .await
            .ok()
            .and_then(|r| r.vservers.into_iter().next())
            .map(|v| v.last_lsn)
            .unwrap_or(0);
        if want > 0 && have >= want {
            return Ok(());
        }
        if started.elapsed() > REPLICA_WAIT {
            let why = active.status(Some(VSERVER)).await?.replication_error();
            bail!(
                "the DR copy did not catch up within {}s (at LSN {have} of {want}): {why}. \
                 Run with --no-dr for the active site alone.",
                REPLICA_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// The host part of an NFS URL for `ip`.
fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// URL query naming the ports, unless the portmapper on 111 finds them.
/// Both demo sites use the same ports (the DR site copies the active's).
fn port_query(e: &tandem_control::service::Endpoint) -> String {
    if e.portmap_port == Some(111) {
        String::new()
    } else {
        format!("?nfsport={}&mountport={}", e.nfs_port, e.mount_port)
    }
}

fn print_instructions(dir: &Path, vs: &VserverStatus, ip: IpAddr) {
    let Some(e) = vs.endpoints.first() else {
        return;
    };
    let host = url_host(ip);
    let query = port_query(e);
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
}

fn print_dr_instructions(dir: &Path, dr_dir: &Path, vs: &VserverStatus, dr_ip: IpAddr) {
    let Some(e) = vs.endpoints.first() else {
        return;
    };
    let host = url_host(dr_ip);
    let query = port_query(e);
    say!("Disaster-recovery site `demo-dr` holds a replica of `{VSERVER}`, kept up to date");
    say!("over mutual TLS, and serves it read-only at {host}:");
    say!("  nfs-cat \"nfs://{host}{EXPORT}/README{query}\"");
    say!("  nfs-ls \"nfs://{host}{EXPORT}{query}\"     # copy a file in at the active site, then look here");
    say!("  tandem --data {} status", dr_dir.display());
    say!(
        "  tandem --data {} verify {VSERVER}     # both sites digested at one LSN and compared",
        dir.display()
    );
    say!();
}
