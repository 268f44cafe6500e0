//! Two Tandem sites in this process (like `tandem demo`): an active one
//! serving the bench vserver over NFS, and a replica site it replicates to
//! in async mode through the counting proxy. The daemons run on a runtime
//! of their own so the client workload does not share their threads.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tandem_control::config::peers::Peer;
use tandem_control::config::site::Site;
use tandem_control::daemon::{Daemon, RunningDaemon};
use tandem_control::replication::{Mode, Outgoing, ReplicationState};
use tandem_store::{AddressSpec, Export, Lsn};
use tandem_testkit::site::init_site;
use tandem_testkit::target::Target;
use tokio::runtime::Runtime;
use tracing::info;

use crate::replication_proxy::{CountingProxy, WireBytes};

pub const VSERVER: &str = "bench";
const FS: &str = "data";
const EXPORT: &str = "/data";
const REPLICA_PEER: &str = "replica";
const ACTIVE_PEER: &str = "active";
/// How often convergence is polled.
const POLL: Duration = Duration::from_millis(5);
/// How long the site runtime gets to wind down.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(10);

/// One status sample of the active site.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub last_lsn: Lsn,
    pub replica_lsn: Lsn,
    pub lag_ms: u64,
    pub streaming: bool,
}

/// The active site's status, from any runtime (it only awaits tokio
/// mutexes).
#[derive(Clone)]
pub struct Probe(Arc<Daemon>);

impl Probe {
    pub async fn sample(&self) -> anyhow::Result<Sample> {
        sample(&self.0).await
    }

    /// Polls until the replica has acknowledged everything the active
    /// site holds; returns when that was seen.
    pub async fn converged(&self, timeout: Duration) -> anyhow::Result<Instant> {
        wait_converged(&self.0, timeout).await
    }
}

pub struct Sites {
    rt: Option<Runtime>,
    active: Option<RunningDaemon>,
    replica: Option<RunningDaemon>,
    replica_dir: PathBuf,
    proxy: Option<CountingProxy>,
    target: Target,
}

impl Sites {
    /// Creates both sites under `dir`, pairs them (the active one through
    /// the proxy), creates the vserver with one file system and starts
    /// replicating it; returns once the replica has converged.
    /// `journal_max_bytes`: the sites' journal limit (site.toml default if
    /// `None`), past which an absent replica gets a changed-ranges catch-up.
    pub fn start(
        dir: &Path,
        active_ip: IpAddr,
        replica_ip: IpAddr,
        timeout: Duration,
        journal_max_bytes: Option<u64>,
    ) -> anyhow::Result<Sites> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bench-sites")
            .build()
            .context("building the sites' runtime")?;
        let active_dir = dir.join("active");
        let replica_dir = dir.join("replica");
        let journal_limit = |site: &mut Site| {
            if let Some(bytes) = journal_max_bytes {
                site.config.store.journal_max_bytes = bytes;
            }
        };
        let active_listen = init_site(&active_dir, "bench-active", active_ip, journal_limit)?;
        let replica_listen = init_site(&replica_dir, "bench-replica", replica_ip, journal_limit)?;
        let (active, replica, proxy, target) = rt.block_on(async {
            let active = RunningDaemon::start(&active_dir)
                .await
                .context("starting the active site")?;
            let replica = RunningDaemon::start(&replica_dir)
                .await
                .context("starting the replica site")?;
            let proxy = CountingProxy::start(SocketAddr::new(active_ip, 0), replica_listen).await?;
            let target = setup(
                active.daemon(),
                replica.daemon(),
                active_listen,
                proxy.addr(),
                active_ip,
                replica_ip,
            )
            .await?;
            anyhow::Ok((active, replica, proxy, target))
        })?;
        let sites = Sites {
            rt: Some(rt),
            active: Some(active),
            replica: Some(replica),
            replica_dir,
            proxy: Some(proxy),
            target,
        };
        sites.wait_converged(timeout)?;
        Ok(sites)
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn wire(&self) -> WireBytes {
        self.proxy.as_ref().map(|p| p.bytes()).unwrap_or_default()
    }

    /// When the last replication connection reached the replica.
    pub fn last_session(&self) -> Option<Instant> {
        self.proxy.as_ref().and_then(|p| p.sessions().1)
    }

    fn rt(&self) -> anyhow::Result<&Runtime> {
        self.rt.as_ref().context("the sites are stopped")
    }

    fn active(&self) -> anyhow::Result<Arc<Daemon>> {
        Ok(self
            .active
            .as_ref()
            .context("the active site is stopped")?
            .daemon()
            .clone())
    }

    /// A handle on the active site's status for tasks of any runtime.
    pub fn probe(&self) -> anyhow::Result<Probe> {
        Ok(Probe(self.active()?))
    }

    /// Polls until the replica has acknowledged everything the active
    /// site holds; returns when that was seen. Not from inside a runtime.
    pub fn wait_converged(&self, timeout: Duration) -> anyhow::Result<Instant> {
        let probe = self.probe()?;
        self.rt()?.block_on(probe.converged(timeout))
    }

    /// The active site's replication state for the bench vserver.
    pub fn active_replication_state(&self) -> anyhow::Result<ReplicationState> {
        let active = self.active.as_ref().context("the active site is stopped")?;
        let report = self.rt()?.block_on(active.daemon().status(Some(VSERVER)))?;
        report
            .vservers
            .first()
            .and_then(|v| v.replication.as_ref())
            .map(|r| r.state)
            .context("the bench vserver shows no replication")
    }

    /// Stops the replica site's daemon (its listener goes away: the
    /// active site's sender retries with backoff).
    pub fn stop_replica(&mut self) -> anyhow::Result<()> {
        let replica = self.replica.take().context("the replica is stopped")?;
        self.rt()?.block_on(replica.stop());
        info!("replica site stopped");
        Ok(())
    }

    /// Starts the replica site's daemon again; returns when it was started.
    pub fn restart_replica(&mut self) -> anyhow::Result<Instant> {
        if self.replica.is_some() {
            bail!("the replica is already running");
        }
        let dir = self.replica_dir.clone();
        let running = self
            .rt()?
            .block_on(RunningDaemon::start(&dir))
            .context("restarting the replica site")?;
        let at = Instant::now();
        self.replica = Some(running);
        info!("replica site restarted");
        Ok(at)
    }

    pub fn stop(&mut self) {
        self.proxy = None;
        if let Some(rt) = self.rt.take() {
            for d in [self.replica.take(), self.active.take()]
                .into_iter()
                .flatten()
            {
                rt.block_on(d.stop());
            }
            rt.shutdown_timeout(RUNTIME_SHUTDOWN);
        }
    }
}

impl Drop for Sites {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn setup(
    active: &Arc<Daemon>,
    replica: &Arc<Daemon>,
    active_listen: SocketAddr,
    proxy: SocketAddr,
    active_ip: IpAddr,
    replica_ip: IpAddr,
) -> anyhow::Result<Target> {
    active
        .add_peer(Peer {
            name: REPLICA_PEER.into(),
            addr: proxy.to_string(),
            id: replica.site().identity.id.clone(),
        })
        .await
        .context("pairing the active site with the replica (through the proxy)")?;
    replica
        .add_peer(Peer {
            name: ACTIVE_PEER.into(),
            addr: active_listen.to_string(),
            id: active.site().identity.id.clone(),
        })
        .await
        .context("pairing the replica site with the active one")?;
    let prefix = |ip: IpAddr| if ip.is_ipv4() { 32 } else { 128 };
    active
        .create_vserver(
            VSERVER,
            vec![AddressSpec {
                ip: active_ip,
                prefix: prefix(active_ip),
                interface: None,
            }],
        )
        .await
        .context("creating the bench vserver")?;
    active
        .create_fs(
            VSERVER,
            FS,
            Export {
                path: EXPORT.into(),
                clients: Vec::new(),
                read_only: false,
                root_squash: false,
                anon_uid: 65534,
                anon_gid: 65534,
            },
        )
        .await
        .context("creating the bench file system")?;
    active
        .replicate(
            VSERVER,
            tandem_control::replication::Outgoing {
                replica_address: Some(AddressSpec {
                    ip: replica_ip,
                    prefix: prefix(replica_ip),
                    interface: None,
                }),
                ..Outgoing::new(REPLICA_PEER, Mode::Async)
            },
        )
        .await
        .context("replicating the bench vserver")?;
    let status = active.status(Some(VSERVER)).await?;
    let endpoint = status
        .vservers
        .first()
        .and_then(|v| v.endpoints.iter().find(|e| e.ip == active_ip).cloned())
        .with_context(|| format!("the bench vserver is not served on {active_ip}"))?;
    Ok(Target {
        server: "Tandem",
        ip: active_ip,
        nfs_port: endpoint.nfs_port,
        mount_port: endpoint.mount_port,
        export: EXPORT.into(),
    })
}

async fn sample(daemon: &Daemon) -> anyhow::Result<Sample> {
    let report = daemon.status(Some(VSERVER)).await?;
    let vs = report
        .vservers
        .into_iter()
        .next()
        .context("the bench vserver vanished")?;
    let r = vs
        .replication
        .context("the bench vserver is not replicated")?;
    Ok(Sample {
        last_lsn: vs.last_lsn,
        replica_lsn: r.replica_lsn,
        lag_ms: r.lag_ms,
        streaming: r.state == ReplicationState::Streaming,
    })
}

async fn wait_converged(daemon: &Daemon, timeout: Duration) -> anyhow::Result<Instant> {
    let started = Instant::now();
    loop {
        let s = sample(daemon).await?;
        if s.streaming && s.last_lsn > 0 && s.replica_lsn >= s.last_lsn {
            return Ok(Instant::now());
        }
        if started.elapsed() > timeout {
            let err = daemon.status(Some(VSERVER)).await?.replication_error();
            bail!(
                "the replica did not converge within {timeout:?} (acked LSN {} of {}): {err}",
                s.replica_lsn,
                s.last_lsn
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
