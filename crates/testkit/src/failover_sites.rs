//! Two Tandem sites on this machine for a failover, each a `tandem daemon`
//! child process so the active one can really be killed (SIGKILL, as a
//! power cut would: no shutdown code runs). Both declare the interface
//! `front` on `lo` and use the same NFS and MOUNT ports, so after the
//! failover the vserver answers at the very same address and port. The
//! vserver is replicated in commit-sync (blocking on replica loss): every
//! byte whose COMMIT returned is at the DR site. `tandem demo` and
//! `tandem bench failover` both drive it, through the control socket.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tandem_control::api::client;
use tandem_control::api::proto::{Reply, Request};
use tandem_control::config::peers::Peer;
use tandem_control::config::resources::InterfaceSettings;
use tandem_control::config::site::Site;
use tandem_control::dr::failover::report::FailoverReport;
use tandem_control::dr::resync::ResyncReport;
use tandem_control::dr::switchover::report::SwitchoverReport;
use tandem_control::replication::{Mode, OnLoss, ReplicationState};
use tandem_control::vserver::status::{VserverState, VserverStatus};
use tandem_store::{AddressSpec, Export};

use crate::net::free_port;
use crate::site::init_site;
use crate::target::Target;

/// The interface both sites declare, on `lo`.
const INTERFACE: &str = "front";
const FS: &str = "data";
const EXPORT: &str = "/data";
const DR_PEER: &str = "dr";
const ACTIVE_PEER: &str = "active";
/// How often readiness and convergence are polled.
const POLL: Duration = Duration::from_millis(10);
/// How long a stopped daemon gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Longest tail of a daemon's log quoted in an error.
const MAX_LOG_TAIL_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct SitesOptions {
    /// The `tandem` binary whose `daemon` runs each site.
    pub tandem_bin: PathBuf,
    /// Parent of both sites (`active/` and `dr/`, created here).
    pub dir: PathBuf,
    pub vserver: String,
    /// The vserver's address (it moves from one site to the other).
    pub vs_ip: IpAddr,
    /// Where each site listens for its peer; the DR site also serves the
    /// read-only replica at `dr_ip`.
    pub active_ip: IpAddr,
    pub dr_ip: IpAddr,
    /// Bound on every wait: a daemon starting, the replica converging, a
    /// failover answering.
    pub timeout: Duration,
}

/// How the vserver is replicated from the active site to the DR site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// Commit-sync, blocking on replica loss: nothing committed is lost.
    CommitSync,
    /// Async: the active site keeps writing when cut off, so it can
    /// diverge (what a resync measures).
    Async,
}

impl Replication {
    fn mode(self) -> Mode {
        match self {
            Replication::CommitSync => Mode::CommitSync,
            Replication::Async => Mode::Async,
        }
    }
}

/// One site's daemon process.
struct SiteProcess {
    dir: PathBuf,
    child: Child,
}

impl SiteProcess {
    fn spawn(bin: &Path, dir: &Path) -> anyhow::Result<SiteProcess> {
        let log = std::fs::File::create(dir.join("daemon.log"))
            .with_context(|| format!("creating {}/daemon.log", dir.display()))?;
        let err = log.try_clone().context("sharing the daemon log")?;
        let child = Command::new(bin)
            .arg("--data")
            .arg(dir)
            .arg("daemon")
            .env_remove("TANDEM_DATA")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {} daemon", bin.display()))?;
        Ok(SiteProcess {
            dir: dir.to_path_buf(),
            child,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read(self.dir.join("daemon.log")).unwrap_or_default();
        let from = text.len().saturating_sub(MAX_LOG_TAIL_BYTES);
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    /// Polls until the control socket answers.
    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("polling a site daemon")? {
                bail!(
                    "the daemon of {} exited ({status}); its log:\n{}",
                    self.dir.display(),
                    self.log_tail()
                );
            }
            if client::call(&self.dir, &Request::Status { vserver: None })
                .await
                .is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "the daemon of {} did not answer within {timeout:?}; its log:\n{}",
                    self.dir.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL, then reaps it.
    fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill().context("SIGKILL to a site daemon")?;
        self.child.wait().context("reaping a killed site daemon")?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `STOP_GRACE`.
    fn stop(mut self) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        };
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < STOP_GRACE {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        tracing::warn!(dir = %self.dir.display(), "a site daemon ignored SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct FailoverSites {
    opts: SitesOptions,
    pub active_dir: PathBuf,
    pub dr_dir: PathBuf,
    active: Option<SiteProcess>,
    dr: Option<SiteProcess>,
    /// The vserver's NFS service, the same before and after the failover.
    pub target: Target,
}

impl FailoverSites {
    /// Creates both sites, starts their daemons, pairs them, creates the
    /// vserver with one file system and replicates it in commit-sync;
    /// returns once the replica has converged.
    pub async fn start(opts: SitesOptions) -> anyhow::Result<FailoverSites> {
        FailoverSites::start_with(opts, Replication::CommitSync).await
    }

    /// `start`, replicating in `mode`.
    pub async fn start_with(
        opts: SitesOptions,
        mode: Replication,
    ) -> anyhow::Result<FailoverSites> {
        let active_dir = opts.dir.join("active");
        let dr_dir = opts.dir.join("dr");
        for d in [&active_dir, &dr_dir] {
            if d.exists() {
                bail!("{} exists already; give an empty directory", d.display());
            }
        }
        let nfs_port = free_port(opts.vs_ip)?;
        let mount_port = free_port(opts.vs_ip)?;
        let shared_ports = |site: &mut Site| {
            site.config.nfs.nfs_port = nfs_port;
            site.config.nfs.mount_port = mount_port;
            site.config.interfaces = vec![InterfaceSettings {
                name: INTERFACE.into(),
                device: "lo".into(),
                substitute: None,
            }];
        };
        let active_listen = init_site(&active_dir, "active", opts.active_ip, shared_ports)?;
        let dr_listen = init_site(&dr_dir, "dr", opts.dr_ip, shared_ports)?;
        let mut sites = FailoverSites {
            target: Target {
                server: "Tandem",
                ip: opts.vs_ip,
                nfs_port,
                mount_port,
                export: EXPORT.into(),
            },
            active: Some(SiteProcess::spawn(&opts.tandem_bin, &active_dir)?),
            dr: Some(SiteProcess::spawn(&opts.tandem_bin, &dr_dir)?),
            opts,
            active_dir,
            dr_dir,
        };
        for p in [sites.active.as_mut(), sites.dr.as_mut()]
            .into_iter()
            .flatten()
        {
            p.wait_ready(sites.opts.timeout).await?;
        }
        sites.setup(active_listen, dr_listen, mode).await?;
        sites.wait_converged().await?;
        Ok(sites)
    }

    async fn setup(
        &self,
        active_listen: SocketAddr,
        dr_listen: SocketAddr,
        mode: Replication,
    ) -> anyhow::Result<()> {
        let id = |dir: &Path| -> anyhow::Result<String> {
            Ok(Site::load(dir)
                .with_context(|| format!("reading the site in {}", dir.display()))?
                .identity
                .id)
        };
        let pairs = [
            (&self.active_dir, DR_PEER, dr_listen, id(&self.dr_dir)?),
            (
                &self.dr_dir,
                ACTIVE_PEER,
                active_listen,
                id(&self.active_dir)?,
            ),
        ];
        for (dir, name, addr, id) in pairs {
            let peer = Peer {
                name: name.into(),
                addr: addr.to_string(),
                id,
            };
            call(dir, &Request::PeerAdd { peer }).await?;
        }
        let vs = &self.opts.vserver;
        let create = Request::VserverCreate {
            name: vs.clone(),
            addresses: vec![AddressSpec {
                ip: self.opts.vs_ip,
                prefix: full_prefix(self.opts.vs_ip),
                interface: Some(INTERFACE.into()),
            }],
        };
        call(&self.active_dir, &create).await?;
        let fs = Request::FsCreate {
            vserver: vs.clone(),
            name: FS.into(),
            export: Export {
                path: EXPORT.into(),
                clients: Vec::new(),
                read_only: false,
                // So whoever runs client tools against the demo can write.
                root_squash: false,
                anon_uid: tandem_store::config::NOBODY,
                anon_gid: tandem_store::config::NOBODY,
            },
        };
        call(&self.active_dir, &fs).await?;
        let replicate = Request::Replicate {
            vserver: vs.clone(),
            to: DR_PEER.into(),
            mode: mode.mode(),
            replica_address: Some(AddressSpec {
                ip: self.opts.dr_ip,
                prefix: full_prefix(self.opts.dr_ip),
                interface: None,
            }),
            sync_timeout_ms: None,
            on_replica_loss: (mode == Replication::CommitSync).then_some(OnLoss::Block),
            max_lag_ms: None,
            bandwidth_mbps: None,
            compress: None,
        };
        call(&self.active_dir, &replicate).await?;
        Ok(())
    }

    /// The vserver's status at the active site (`dr == false`) or the DR
    /// site.
    pub async fn status(&self, dr: bool) -> anyhow::Result<VserverStatus> {
        let dir = if dr { &self.dr_dir } else { &self.active_dir };
        let request = Request::Status {
            vserver: Some(self.opts.vserver.clone()),
        };
        match call(dir, &request).await? {
            Reply::Status(report) => {
                report.vservers.into_iter().next().with_context(|| {
                    format!("no vserver {} at {}", self.opts.vserver, dir.display())
                })
            }
            other => bail!("unexpected reply to status: {other:?}"),
        }
    }

    /// Polls until the replica has acknowledged everything the active site
    /// holds.
    pub async fn wait_converged(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let vs = self.status(false).await?;
            let (acked, streaming) = vs
                .replication
                .as_ref()
                .map(|r| (r.replica_lsn, r.state == ReplicationState::Streaming))
                .unwrap_or((0, false));
            if streaming && vs.last_lsn > 0 && acked >= vs.last_lsn {
                return Ok(());
            }
            if started.elapsed() > self.opts.timeout {
                let why = vs
                    .replication
                    .and_then(|r| r.last_error)
                    .unwrap_or_else(|| "no error reported".into());
                bail!(
                    "the replica did not converge within {:?} (acked LSN {acked} of {}): {why}",
                    self.opts.timeout,
                    vs.last_lsn
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kills the active site's daemon with SIGKILL; returns its pid.
    pub fn kill_active(&mut self) -> anyhow::Result<u32> {
        let p = self
            .active
            .take()
            .context("the active site is gone already")?;
        let pid = p.pid();
        p.kill9()?;
        Ok(pid)
    }

    /// Cuts the active site off: removes its pairing with the DR site and
    /// restarts it (a running session outlives the removal), so its sender
    /// cannot reach the DR site; returns the pairing file to restore.
    pub async fn cut_off_active(&mut self) -> anyhow::Result<Vec<u8>> {
        let peers = self.active_dir.join("peers.toml");
        let paired =
            std::fs::read(&peers).with_context(|| format!("reading {}", peers.display()))?;
        call(
            &self.active_dir,
            &Request::PeerRemove {
                name: DR_PEER.into(),
            },
        )
        .await?;
        self.stop_active()?;
        self.restart_active(None).await?;
        Ok(paired)
    }

    /// Stops the active site's daemon (SIGTERM).
    pub fn stop_active(&mut self) -> anyhow::Result<()> {
        self.active
            .take()
            .context("the active site is gone already")?
            .stop();
        Ok(())
    }

    /// Starts the active site's daemon again, with `peers` (from
    /// `cut_off_active`) as its pairing file if given.
    pub async fn restart_active(&mut self, peers: Option<&[u8]>) -> anyhow::Result<()> {
        if self.active.is_some() {
            bail!("the active site is running already");
        }
        if let Some(peers) = peers {
            let file = self.active_dir.join("peers.toml");
            std::fs::write(&file, peers).with_context(|| format!("writing {}", file.display()))?;
        }
        let mut p = SiteProcess::spawn(&self.opts.tandem_bin, &self.active_dir)?;
        p.wait_ready(self.opts.timeout).await?;
        self.active = Some(p);
        Ok(())
    }

    /// Polls until the vserver is in `state` at the active site
    /// (`dr == false`) or the DR site.
    pub async fn wait_state(&self, dr: bool, state: VserverState) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let vs = self.status(dr).await?;
            if vs.state == state {
                return Ok(());
            }
            if started.elapsed() > self.opts.timeout {
                bail!(
                    "the vserver is {} there, not {state}, after {:?}",
                    vs.state,
                    self.opts.timeout
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `tandem resync VS` at the (diverged) first active site.
    pub async fn resync_active(&self) -> anyhow::Result<ResyncReport> {
        let request = Request::Resync {
            vserver: self.opts.vserver.clone(),
            replica_address: None,
        };
        match client::call_within(&self.active_dir, &request, self.opts.timeout).await? {
            Reply::Resynced(report) => Ok(*report),
            other => bail!("unexpected reply to resync: {other:?}"),
        }
    }

    /// `tandem switchover VS --to PEER` at the site active now: from the
    /// first site to the DR site (`to_dr`), or back.
    pub async fn switchover(&self, to_dr: bool) -> anyhow::Result<SwitchoverReport> {
        let (dir, to) = if to_dr {
            (&self.active_dir, DR_PEER)
        } else {
            (&self.dr_dir, ACTIVE_PEER)
        };
        let request = Request::Switchover {
            vserver: self.opts.vserver.clone(),
            to: to.into(),
            timeout_ms: None,
        };
        match client::call_within(dir, &request, self.opts.timeout).await? {
            Reply::SwitchedOver(report) => Ok(*report),
            other => bail!("unexpected reply to switchover: {other:?}"),
        }
    }

    /// `tandem failover VS --yes` at the DR site, through its control
    /// socket.
    pub async fn failover(&self) -> anyhow::Result<FailoverReport> {
        let request = Request::Failover {
            vserver: self.opts.vserver.clone(),
            force: false,
        };
        match client::call_within(&self.dr_dir, &request, self.opts.timeout).await? {
            Reply::FailedOver(report) if report.done => Ok(*report),
            Reply::FailedOver(report) => bail!(
                "the failover stopped after its check: {}",
                report
                    .check
                    .map(|c| {
                        c.lines
                            .iter()
                            .filter(|l| l.outcome.blocks())
                            .map(|l| format!("{}: {}", l.resource, l.reason))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default()
            ),
            other => bail!("unexpected reply to failover: {other:?}"),
        }
    }

    /// Stops the daemons still running (SIGTERM).
    pub fn stop(&mut self) {
        for p in [self.dr.take(), self.active.take()].into_iter().flatten() {
            p.stop();
        }
    }
}

impl Drop for FailoverSites {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn call(dir: &Path, request: &Request) -> anyhow::Result<Reply> {
    client::call(dir, request)
        .await
        .with_context(|| format!("site {}", dir.display()))
}

fn full_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}
