//! The site daemon: owns the site lock, every vserver of the site, and the
//! control socket. Control-plane changes are serialised by one lock over the
//! vserver table: they are rare, and ordering them keeps checks (name taken,
//! address held) free of races.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tandem_store::config::normalize_export_path;
use tandem_store::config::{MAX_ADDRESSES, MAX_CLIENT_RULES, MAX_FILESYSTEMS, MAX_GROUPS_PER_USER};
use tandem_store::{AddressSpec, Export, Lsn, Store, SyncPolicy, User};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::api::proto::{Reply, Request, Response};
use crate::api::server::ApiServer;
use crate::config::lock::SiteLock;
use crate::config::names::parse_address;
use crate::config::names::{validate_address, validate_export_path, validate_name};
use crate::config::peers::{self as peer, Peer, MAX_PEERS};
use crate::config::site::ServiceConfig;
use crate::config::site::Site;
use crate::dr::crash_point;
use crate::dr::failover::check::{self as failover, CheckInputs, CheckLine, FailoverCheck};
use crate::dr::failover::mark::{self as failover_mark, Mark, Step};
use crate::dr::failover::report::{FailoverReport, StepClock};
use crate::error::{ControlError, Result};
use crate::replication::link::{self, PeerCheck, PeerTls};
use crate::replication::{self, Incoming, Outgoing, ReplicationStatus, Sender};
use crate::vserver::status::{FsStatus, SiteStatus, StatusReport, VserverState, VserverStatus};
use crate::vserver::Vserver;

mod failover_catchup;
mod fence_watch;
mod peer_listener;
pub mod resync;
pub(crate) mod switchover;

pub use peer_listener::{PeerListener, MAX_PEER_CONNECTIONS};

/// Longest wait for a replica store's last users (in-flight NFS reads)
/// before a catch-up gives up for this attempt.
const CATCHUP_RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a replication session at this site runs against.
pub enum IncomingTarget {
    /// A replica's open store.
    Store(Arc<Store>),
    /// A replica whose baseline is unfinished: only a baseline can go on.
    Baseline,
}

pub struct Daemon {
    site: Site,
    service_cfg: ServiceConfig,
    vservers: Mutex<BTreeMap<String, Vserver>>,
    /// Paired sites; changes are written to peers.toml before they show
    /// here or in `peer_tls.allowed`.
    peers: Mutex<Vec<Peer>>,
    peer_tls: PeerTls,
    /// Set when the peer listener could not start (the site still serves
    /// its vservers; only pairing traffic is affected).
    peer_listener_error: Option<String>,
    /// A copy of `peers` the replication senders read without awaiting.
    peer_snapshot: Arc<std::sync::Mutex<Vec<Peer>>>,
    /// replication.toml as last written.
    replication: Mutex<replication::Settings>,
    /// One sender per vserver this site replicates to a peer.
    senders: Mutex<BTreeMap<String, Sender>>,
    /// One failover at a time: two runs for one vserver must not both
    /// reserve (the second would take the first's new epoch + 1).
    failover_running: Mutex<()>,
    /// Per replica vserver: set when a failover promotes it, so its
    /// incoming session (peer.rs) ends at once instead of at its next
    /// batch. Never removed (a few bytes per vserver ever replicated).
    session_stops: std::sync::Mutex<BTreeMap<String, watch::Sender<bool>>>,
    /// Notified by a sender that fenced its store (fence_watch.rs).
    fenced: Arc<tokio::sync::Notify>,
}

impl Daemon {
    /// Opens every vserver found in the site's vservers directory.
    async fn open(site: Site) -> Result<Daemon> {
        let service_cfg = site.config.server_config();
        let dir = site.paths.vservers();
        std::fs::create_dir_all(&dir).map_err(|e| ControlError::io(&dir, e))?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| ControlError::io(&dir, e))? {
            let entry = entry.map_err(|e| ControlError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Leftovers (editor backups, a half-removed vserver) are not
            // vservers; say so rather than fail the site.
            if validate_name("vserver", &name).is_err() || !entry.path().is_dir() {
                tracing::warn!(entry = %entry.path().display(), "ignoring entry in vservers directory");
                continue;
            }
            names.push(name);
        }
        names.sort();
        let replication = replication::load(&site.paths)?;
        let peers = peer::load(&site.paths, &site.identity.id)?;
        let peer_tls = PeerTls {
            own_id: site.identity.id.clone(),
            cert_pem: site.identity.cert_pem.clone(),
            key_pem: link::load_key_pem(&site.paths)?,
            allowed: tandem_repl::tls::AllowedIds::new(peers.iter().map(|p| p.id.clone())),
            refused: Arc::new(AtomicU64::new(0)),
        };
        let mut vservers = BTreeMap::new();
        for name in names {
            let mut vs = Vserver::open_unserved(
                &site.paths.vserver(&name),
                &name,
                site.config.store.store_options(),
            )
            .await;
            // Fencing (resync.rs): learn a higher epoch before serving.
            let to = replication.outgoing.get(&name).map(|o| &o.to);
            if let (Some(peer), Ok(store)) = (
                to.and_then(|t| peers.iter().find(|p| &p.name == t)),
                vs.store(),
            ) {
                let timeout =
                    std::time::Duration::from_millis(site.config.control.epoch_probe_timeout_ms);
                crate::daemon::resync::probe_and_fence(store, &name, peer, &peer_tls, timeout)
                    .await;
            }
            crate::daemon::resync::serve_unless_diverged(&mut vs, &service_cfg).await;
            if let Some(inc) = replication.incoming.get(&name) {
                vs.set_replica_source(&inc.from);
                if let Some(addr) = &inc.replica_address {
                    vs.serve_replica_address(addr, &service_cfg).await;
                }
            }
            vservers.insert(name, vs);
        }
        Ok(Daemon {
            site,
            service_cfg,
            vservers: Mutex::new(vservers),
            peer_snapshot: Arc::new(std::sync::Mutex::new(peers.clone())),
            peers: Mutex::new(peers),
            peer_tls,
            peer_listener_error: None,
            replication: Mutex::new(replication),
            senders: Mutex::new(BTreeMap::new()),
            failover_running: Mutex::new(()),
            session_stops: std::sync::Mutex::new(BTreeMap::new()),
            fenced: Arc::new(tokio::sync::Notify::new()),
        })
    }

    fn set_peer_snapshot(&self, peers: &[Peer]) {
        match self.peer_snapshot.lock() {
            Ok(mut g) => *g = peers.to_vec(),
            Err(p) => *p.into_inner() = peers.to_vec(),
        }
    }

    fn start_sender(
        &self,
        vserver: &str,
        store: Arc<Store>,
        settings: Outgoing,
        policy: SyncPolicy,
    ) -> Sender {
        let snapshot = self.peer_snapshot.clone();
        let lookup: replication::PeerLookup = Arc::new(move |name: &str| {
            let peers = match snapshot.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            peers.iter().find(|p| p.name == name).cloned()
        });
        tracing::info!(vserver, to = %settings.to, mode = %settings.mode, "replication sender started");
        replication::start_sender(
            vserver.to_string(),
            store,
            settings,
            policy,
            self.peer_tls.clone(),
            lookup,
            self.fenced.clone(),
        )
    }

    /// Starts a sender for every replicated vserver that is active here.
    async fn start_senders(&self) {
        let settings = self.replication.lock().await.outgoing.clone();
        let table = self.vservers.lock().await;
        let mut senders = self.senders.lock().await;
        for (name, out) in settings {
            let Some(vs) = table.get(&name) else {
                tracing::warn!(vserver = %name, "replication.toml names a vserver this site does not have");
                continue;
            };
            let Ok(store) = vs.store() else { continue };
            if vs.is_replica() {
                continue;
            }
            // A hand-edited mode word is not guessed at: the vserver is not
            // replicated until it is fixed, and the log says why.
            let policy = match out.policy() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(vserver = %name, error = %e, "replication.toml: not replicating this vserver");
                    continue;
                }
            };
            let sender = self.start_sender(&name, store.clone(), out, policy);
            senders.insert(name, sender);
        }
    }

    /// `tandem replicate`: records the settings durably, then starts the
    /// sender and makes replies wait by the mode. Run again with other
    /// options it changes them (file, sender, store policy); with the same
    /// ones it changes nothing. Every option is checked here too: the
    /// socket may carry anything.
    pub async fn replicate(&self, vserver: &str, mut out: Outgoing) -> Result<ReplicationStatus> {
        validate_name("vserver name", vserver)?;
        validate_name("peer name", &out.to)?;
        out.replica_address = match out.replica_address.take() {
            Some(a) => Some(parse_address(&a)?.to_string()),
            None => None,
        };
        let policy = out.policy()?;
        if !self.peers.lock().await.iter().any(|p| p.name == out.to) {
            return Err(ControlError::NoPeer(out.to.clone()));
        }
        let table = self.vservers.lock().await;
        let vs = table
            .get(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        if vs.is_replica() {
            return Err(ControlError::invalid(
                "vserver",
                format!("{vserver} is a replica at this site; replicate it from its active site"),
            ));
        }
        let store = vs.store()?.clone();
        let mut senders = self.senders.lock().await;
        if let Some(s) = senders.get(vserver) {
            if s.settings.to != out.to {
                return Err(ControlError::Exists {
                    what: "replication".into(),
                    detail: format!(
                        "{vserver} is already replicated to {}; stop that first \
                         (`tandem replicate {vserver} --stop`) to replicate it to {}",
                        s.settings.to, out.to
                    ),
                });
            }
            if s.settings == out {
                return Ok(s.status(&store));
            }
        }
        let mut settings = self.replication.lock().await;
        let mut next = settings.clone();
        next.outgoing.insert(vserver.to_string(), out.clone());
        replication::save(&self.site.paths, &next)?;
        *settings = next;
        if let Some(old) = senders.remove(vserver) {
            tracing::info!(
                vserver,
                "replication settings changed; restarting the sender"
            );
            old.stop().await;
        }
        let sender = self.start_sender(vserver, store.clone(), out, policy);
        let status = sender.status(&store);
        senders.insert(vserver.to_string(), sender);
        Ok(status)
    }

    /// `tandem replicate VS --stop`: stops the sender and forgets the
    /// settings; the copy at the peer stays there, a replica. Returns the
    /// settings that were in force.
    pub async fn stop_replication(&self, vserver: &str) -> Result<Outgoing> {
        validate_name("vserver name", vserver)?;
        let mut senders = self.senders.lock().await;
        let mut settings = self.replication.lock().await;
        let Some(out) = settings.outgoing.get(vserver).cloned() else {
            return Err(ControlError::invalid(
                "vserver",
                format!("{vserver} is not replicated from this site"),
            ));
        };
        let mut next = settings.clone();
        next.outgoing.remove(vserver);
        replication::save(&self.site.paths, &next)?;
        *settings = next;
        if let Some(s) = senders.remove(vserver) {
            let store = s.store().clone();
            s.stop().await;
            // Nothing is kept for that replica any more: without this the
            // journal would grow to the limit and a change map be kept
            // for a replica nobody sends to.
            match tokio::task::spawn_blocking(move || store.forget_replica()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(vserver, error = %e, "could not forget the replica"),
                Err(e) => tracing::error!(vserver, error = %e, "could not forget the replica"),
            }
        }
        tracing::info!(vserver, to = %out.to, "replication stopped; the replica at the peer stays");
        Ok(out)
    }

    /// A peer asks to replicate `vserver` here (the Replicate request):
    /// returns the store the session runs against and the lock that keeps
    /// it to one session. A vserver unknown here gets an empty replica
    /// store; an active one is refused. Serves `replica_address` read-only
    /// if given.
    pub async fn incoming(
        &self,
        peer_id: &str,
        vserver: &str,
        replica_address: Option<&str>,
    ) -> Result<(IncomingTarget, Arc<tokio::sync::Mutex<()>>)> {
        validate_name("vserver name", vserver)?;
        let replica_address = match replica_address {
            Some(a) => Some(parse_address(a)?.to_string()),
            None => None,
        };
        let mut table = self.vservers.lock().await;
        // Checked under the table lock, which reserve takes too.
        if let Some(mark) = failover_mark::load(&self.site.paths.root, vserver)? {
            return Err(ControlError::Exists {
                what: "failover".into(),
                detail: format!(
                    "{vserver} is being failed over here (step {}, epoch {}); refusing to replicate into it",
                    mark.step, mark.epoch
                ),
            });
        }
        if let Some(vs) = table.get(vserver) {
            if !vs.is_replica() && !vs.in_baseline() {
                // Refused before any session: whatever the journals hold,
                // an active vserver is never overwritten by another site.
                vs.store()?;
                return Err(ControlError::Exists {
                    what: "vserver".into(),
                    detail: format!(
                        "{vserver} is active here, not a replica; refusing to replicate over it"
                    ),
                });
            }
        } else {
            if table.len() >= self.site.config.control.max_vservers {
                return Err(ControlError::invalid(
                    "vserver",
                    format!(
                        "the site already holds control.max_vservers = {} vservers",
                        self.site.config.control.max_vservers
                    ),
                ));
            }
            let dir = self.site.paths.vserver(vserver);
            if dir.exists() {
                return Err(ControlError::Exists {
                    what: "vserver directory".into(),
                    detail: dir.display().to_string(),
                });
            }
            let vs = Vserver::create_replica(&dir, vserver, self.store_options()).await?;
            table.insert(vserver.to_string(), vs);
        }
        let mut settings = self.replication.lock().await;
        let known = settings.incoming.get(vserver).cloned();
        if let Some(k) = &known {
            if k.from != peer_id {
                return Err(ControlError::Exists {
                    what: "replica".into(),
                    detail: format!("{vserver} here is replicated from site {}", k.from),
                });
            }
        }
        let entry = Incoming {
            from: peer_id.to_string(),
            replica_address: replica_address
                .clone()
                .or_else(|| known.as_ref().and_then(|k| k.replica_address.clone())),
        };
        if known.as_ref() != Some(&entry) {
            let mut next = settings.clone();
            next.incoming.insert(vserver.to_string(), entry.clone());
            replication::save(&self.site.paths, &next)?;
            *settings = next;
        }
        drop(settings);
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        vs.set_replica_source(peer_id);
        self.set_session_stop(vserver, false);
        if let Some(addr) = &entry.replica_address {
            vs.serve_replica_address(addr, &self.service_cfg).await;
        }
        let lock = vs
            .session_lock()
            .ok_or_else(|| ControlError::Internal(format!("{vserver} is not a replica")))?;
        if vs.in_baseline() {
            return Ok((IncomingTarget::Baseline, lock));
        }
        Ok((IncomingTarget::Store(vs.store()?.clone()), lock))
    }

    /// Sets the stop flag of `vserver`'s incoming sessions (true: end them).
    fn set_session_stop(&self, vserver: &str, stop: bool) {
        let mut stops = match self.session_stops.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match stops.get(vserver) {
            Some(tx) => {
                tx.send_replace(stop);
            }
            None => {
                stops.insert(vserver.to_string(), watch::channel(stop).0);
            }
        }
    }

    /// What an incoming session of `vserver` watches: true once a failover
    /// promoted the vserver here. Take it after `incoming` accepted.
    pub fn session_stop(&self, vserver: &str) -> watch::Receiver<bool> {
        let mut stops = match self.session_stops.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        stops
            .entry(vserver.to_string())
            .or_insert_with(|| watch::channel(false).0)
            .subscribe()
    }

    /// The epoch of `vserver` if it is active here (told to a sender that
    /// asks to replicate over it, so an older active site fences itself).
    pub async fn active_epoch(&self, vserver: &str) -> Option<u64> {
        let table = self.vservers.lock().await;
        let vs = table.get(vserver)?;
        if vs.is_replica() || vs.in_baseline() {
            return None;
        }
        vs.store().ok().map(|s| s.epoch())
    }

    /// Readies a replica that never received a record for a baseline:
    /// stops serving it and closes its store. Returns its directory.
    pub async fn begin_baseline(&self, vserver: &str) -> Result<std::path::PathBuf> {
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        if !vs.is_replica() && !vs.in_baseline() {
            return Err(ControlError::invalid(
                "vserver",
                format!("{vserver} is not a replica here"),
            ));
        }
        let dir = self.site.paths.vserver(vserver);
        if !vs.in_baseline() {
            vs.begin_baseline(&dir).await?;
        } else if matches!(tandem_store::baseline::baseline_in_progress(&dir), Ok(None)) {
            // No progress mark: a baseline that stopped before writing one
            // left a directory with no record in it; start clean.
            crate::vserver::discard_empty_replica_dir(&dir)?;
        }
        Ok(dir)
    }

    /// A baseline arrived whole: the vserver is a replica of `store` from
    /// now on, served on its replica address if it has one.
    pub async fn finish_baseline(&self, vserver: &str, store: Store) -> Result<Arc<Store>> {
        let address = self
            .replication
            .lock()
            .await
            .incoming
            .get(vserver)
            .and_then(|i| i.replica_address.clone());
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        vs.finish_baseline(store);
        if let Some(a) = &address {
            vs.serve_replica_address(a, &self.service_cfg).await;
        }
        Ok(vs.store()?.clone())
    }

    /// Readies a replica for a catch-up: stops serving it (its read-only
    /// address too) and closes its store, then waits until nothing holds
    /// the store any more (in-flight requests), so the install can lock the
    /// directory. Returns the directory.
    pub async fn begin_catchup(&self, vserver: &str) -> Result<std::path::PathBuf> {
        let store = {
            let mut table = self.vservers.lock().await;
            let vs = table
                .get_mut(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            vs.begin_catchup().await?
        };
        let deadline = tokio::time::Instant::now() + CATCHUP_RELEASE_TIMEOUT;
        while Arc::strong_count(&store) > 1 {
            if tokio::time::Instant::now() >= deadline {
                // Reopened by `finish_catchup(None)` once the holder lets go.
                return Err(ControlError::Unavailable {
                    vserver: vserver.to_string(),
                    reason: "the replica store is still in use; catch-up postponed".into(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(store);
        Ok(self.site.paths.vserver(vserver))
    }

    /// After a catch-up: the installed store, or (`None`: the catch-up
    /// failed, leaving the replica as it was) the directory reopened. The
    /// vserver is a replica again, served on its replica address.
    pub async fn finish_catchup(&self, vserver: &str, store: Option<Store>) -> Result<Arc<Store>> {
        let store = match store {
            Some(s) => s,
            None => {
                let dir = self.site.paths.vserver(vserver);
                let opts = self.store_options();
                tokio::task::spawn_blocking(move || Store::open_replica(&dir, opts))
                    .await
                    .map_err(|e| ControlError::Internal(format!("reopening {vserver}: {e}")))?
                    .map_err(|e| ControlError::store(vserver, e))?
            }
        };
        self.finish_baseline(vserver, store).await
    }

    pub fn site(&self) -> &Site {
        &self.site
    }

    /// The options every vserver store of this site opens with (site.toml
    /// `[store]`; per site, since one process may run several).
    pub fn store_options(&self) -> tandem_store::StoreOptions {
        self.site.config.store.store_options()
    }

    /// The open store of a vserver, for in-process users (the demo).
    pub async fn store(&self, vserver: &str) -> Result<Arc<Store>> {
        let table = self.vservers.lock().await;
        let vs = table
            .get(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        Ok(vs.store()?.clone())
    }

    async fn dispatch(&self, req: Request) -> Response {
        let result = match req {
            Request::Status { vserver } => self.status(vserver.as_deref()).await.map(Reply::Status),
            Request::VserverCreate { name, addresses } => self
                .create_vserver(&name, addresses)
                .await
                .map(Reply::VserverCreated),
            Request::FsCreate {
                vserver,
                name,
                export,
            } => self
                .create_fs(&vserver, &name, export)
                .await
                .map(|(fs, lsn)| Reply::FsCreated { vserver, fs, lsn }),
            Request::UserAdd { vserver, user } => {
                let added = self.add_user(&vserver, user.clone()).await;
                added.map(|lsn| Reply::UserAdded { vserver, user, lsn })
            }
            Request::PeerAdd { peer } => self.add_peer(peer).await.map(Reply::PeerAdded),
            Request::PeerList => Ok(Reply::Peers(self.peers().await)),
            Request::PeerRemove { name } => self.remove_peer(&name).await.map(Reply::PeerRemoved),
            Request::PeerCheck { name } => self.check_peer(&name).await.map(Reply::PeerChecked),
            Request::Replicate {
                vserver,
                to,
                mode,
                replica_address,
                sync_timeout_ms,
                on_replica_loss,
                max_lag_ms,
                bandwidth_mbps,
                compress,
            } => {
                let out = Outgoing {
                    to,
                    mode,
                    replica_address,
                    sync_timeout_ms,
                    on_replica_loss,
                    max_lag_ms,
                    bandwidth_mbps,
                    compress,
                };
                self.replicate(&vserver, out)
                    .await
                    .map(|replication| Reply::Replicating {
                        vserver,
                        replication: Box::new(replication),
                    })
            }
            Request::ReplicateStop { vserver } => {
                self.stop_replication(&vserver)
                    .await
                    .map(|out| Reply::ReplicationStopped {
                        vserver,
                        to: out.to,
                    })
            }
            Request::Verify { vserver } => self.verify(&vserver).await.map(Reply::Verified),
            Request::FailoverCheck { vserver } => self
                .failover_check(&vserver)
                .await
                .map(Reply::FailoverChecked),
            Request::Failover { vserver, force } => self
                .failover(&vserver, force)
                .await
                .map(|r| Reply::FailedOver(Box::new(r))),
            Request::Resync {
                vserver,
                replica_address,
            } => crate::daemon::resync::resync(self, &vserver, replica_address)
                .await
                .map(|r| Reply::Resynced(Box::new(r))),
            Request::Switchover {
                vserver,
                to,
                timeout_ms,
            } => self
                .switchover(&vserver, &to, timeout_ms)
                .await
                .map(|r| Reply::SwitchedOver(Box::new(r))),
        };
        if let Err(e) = &result {
            tracing::info!(error = %e, "control request refused");
        }
        result.into()
    }

    /// `tandem verify`: through the vserver's running sender, which holds
    /// no lock of ours while the (long) comparison runs.
    pub async fn verify(&self, vserver: &str) -> Result<crate::replication::verify::VerifyReport> {
        let is_replica = {
            let table = self.vservers.lock().await;
            let vs = table
                .get(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            vs.is_replica()
        };
        if is_replica {
            return Err(ControlError::invalid(
                "verify",
                format!("{vserver} is a replica at this site; run verify at the active site"),
            ));
        }
        let verifier = match self.senders.lock().await.get(vserver) {
            Some(s) => s.verifier(),
            None => {
                return Err(ControlError::invalid(
                    "verify",
                    format!("{vserver} is not replicated from this site (see `tandem replicate`)"),
                ))
            }
        };
        verifier
            .verify(vserver, crate::replication::verify::VERIFY_TIMEOUT)
            .await
    }

    /// `tandem failover VS --check`: gathers what the checks need under
    /// the table lock, then runs them (port binds, a directory walk) on
    /// the blocking pool without it.
    pub async fn failover_check(&self, vserver: &str) -> Result<FailoverCheck> {
        validate_name("vserver name", vserver)?;
        let inputs = {
            let table = self.vservers.lock().await;
            let vs = table
                .get(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            let status = vs.status();
            if status.state != VserverState::Replica {
                let why = match status.state {
                    VserverState::Active => format!(
                        "{vserver} is active here; run failover at the DR site that holds its replica"
                    ),
                    _ => format!(
                        "{vserver} is {} here: {}",
                        status.state,
                        status.error.as_deref().unwrap_or("no reason recorded")
                    ),
                };
                return Err(ControlError::invalid("failover", why));
            }
            let addresses = vs.store().ok().map(|s| s.config().addresses);
            let held = table
                .values()
                .filter(|other| other.name() != vserver)
                .flat_map(|other| held_ips(&other.status()))
                .collect();
            let replication = status.replication.as_deref();
            let nfs = &self.site.config.nfs;
            let mut ports = vec![
                ("NFS".to_string(), nfs.nfs_port),
                ("MOUNT".to_string(), nfs.mount_port),
            ];
            if nfs.portmap {
                ports.push(("portmapper".to_string(), nfs.portmap_port));
            }
            CheckInputs {
                vserver: vserver.to_string(),
                site: self.site.config.name.clone(),
                addresses,
                held,
                in_baseline: vs.in_baseline(),
                replication_state: replication.map(|r| r.state.clone()),
                last_lsn: status.last_lsn,
                lag_records: replication.map_or(0, |r| r.lag_records),
                interfaces: self.site.config.interfaces.clone(),
                pools: self.site.config.pools.clone(),
                data_dir: self.site.paths.root.clone(),
                store_dir: self.site.paths.vserver(vserver),
                ports,
            }
        };
        tokio::task::spawn_blocking(move || {
            failover::run_checks(&inputs, std::path::Path::new(failover::SYS_CLASS_NET))
        })
        .await
        .map_err(|e| ControlError::Internal(format!("failover check failed: {e}")))
    }

    /// `tandem failover VS`: check; then, when every resource is present
    /// or `force`, reserve (the FAILOVER mark), promote the store and serve
    /// the vserver's addresses read-write here. An interrupted failover
    /// (its mark left) resumes from the step the mark names, without a
    /// new check. Each step is timed.
    pub async fn failover(&self, vserver: &str, force: bool) -> Result<FailoverReport> {
        validate_name("vserver name", vserver)?;
        let Ok(_one) = self.failover_running.try_lock() else {
            return Err(ControlError::Unavailable {
                vserver: vserver.to_string(),
                reason: "another failover is running at this site; rerun when it is done".into(),
            });
        };
        let root = self.site.paths.root.clone();
        let mut report = FailoverReport {
            vserver: vserver.to_string(),
            site: self.site.config.name.clone(),
            check: None,
            resumed_from: None,
            done: false,
            left_out: Vec::new(),
            epoch: 0,
            lsn: 0,
            serving: Vec::new(),
            not_serving: Vec::new(),
            steps: Vec::new(),
        };
        let mut mark = match failover_mark::load(&root, vserver)? {
            Some(m) => {
                tracing::warn!(vserver, step = %m.step, epoch = m.epoch, "resuming an interrupted failover");
                report.resumed_from = Some(m.step.to_string());
                m
            }
            None => {
                let clock = StepClock::start();
                let check = self.failover_check(vserver).await?;
                clock.stop("check", &mut report.steps);
                let ready = check.ready;
                report.left_out = check
                    .lines
                    .iter()
                    .filter(|l| l.outcome.blocks())
                    .cloned()
                    .collect::<Vec<CheckLine>>();
                report.check = Some(check);
                if !ready && !force {
                    return Ok(report);
                }
                if let Some(lsn) = self.end_catchup_for_failover(vserver).await? {
                    failover_catchup::note_copy_brought_up(&mut report.left_out, lsn);
                }
                let clock = StepClock::start();
                let table = self.vservers.lock().await;
                let vs = table
                    .get(vserver)
                    .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
                let mark = Mark {
                    vserver: vserver.to_string(),
                    epoch: vs.store()?.epoch() + 1,
                    step: Step::Reserved,
                    forced: !ready,
                };
                failover_mark::save(&root, &mark)?;
                crash_point::reached("failover-reserved");
                drop(table);
                clock.stop("reserve", &mut report.steps);
                tracing::warn!(
                    vserver,
                    epoch = mark.epoch,
                    forced = mark.forced,
                    "failover: reserved"
                );
                mark
            }
        };
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        if mark.step < Step::Promoted {
            let clock = StepClock::start();
            // The incoming session ends now; promote waits for a batch it
            // may be applying.
            self.set_session_stop(vserver, true);
            vs.promote(mark.epoch).await?;
            self.forget_incoming(vserver).await?;
            mark.step = Step::Promoted;
            failover_mark::save(&root, &mark)?;
            crash_point::reached("failover-promoted");
            clock.stop("promote", &mut report.steps);
            tracing::warn!(vserver, epoch = mark.epoch, "failover: promoted");
        }
        let clock = StepClock::start();
        vs.serve_active(&self.service_cfg).await?;
        failover_mark::remove(&root, vserver)?;
        clock.stop("serve", &mut report.steps);
        let status = vs.status();
        let store = vs.store()?;
        report.epoch = store.epoch();
        report.lsn = store.last_lsn();
        report.serving = status.addresses.clone();
        // A portmapper-only failure ("IP/P portmap port N") still serves
        // NFS and MOUNT on the address.
        report
            .serving
            .retain(|a| !status.bind_failures.iter().any(|f| &f.address == a));
        report.not_serving = status
            .bind_failures
            .iter()
            .map(|f| format!("{}: {}", f.address, f.error))
            .collect();
        report.done = true;
        tracing::warn!(
            vserver,
            epoch = report.epoch,
            lsn = report.lsn,
            total_us = report.total_micros(),
            "failover done: active here"
        );
        Ok(report)
    }

    /// A promoted vserver is no replica any more: its replication.toml
    /// incoming entry goes (failover, switchover).
    async fn forget_incoming(&self, vserver: &str) -> Result<()> {
        let mut settings = self.replication.lock().await;
        if settings.incoming.contains_key(vserver) {
            let mut next = settings.clone();
            next.incoming.remove(vserver);
            replication::save(&self.site.paths, &next)?;
            *settings = next;
        }
        Ok(())
    }

    pub async fn status(&self, only: Option<&str>) -> Result<StatusReport> {
        let table = self.vservers.lock().await;
        let mut vservers = match only {
            Some(name) => vec![table
                .get(name)
                .ok_or_else(|| ControlError::NoVserver(name.to_string()))?
                .status()],
            None => table.values().map(Vserver::status).collect(),
        };
        let senders = self.senders.lock().await;
        for v in &mut vservers {
            let (Some(sender), Some(vs)) = (senders.get(&v.name), table.get(&v.name)) else {
                continue;
            };
            if let Ok(store) = vs.store() {
                v.replication = Some(Box::new(sender.status(store)));
            }
        }
        drop(senders);
        Ok(StatusReport {
            site: SiteStatus {
                name: self.site.config.name.clone(),
                id: self.site.identity.id.clone(),
                listen: self.site.config.listen.clone(),
                data_dir: self.site.paths.root.display().to_string(),
                daemon_pid: std::process::id(),
                peers: self.peers.lock().await.len(),
                refused_peer_connections: self.peer_tls.refused.load(Ordering::Relaxed),
                peer_listener_error: self.peer_listener_error.clone(),
            },
            vservers,
        })
    }

    pub async fn create_vserver(
        &self,
        name: &str,
        addresses: Vec<AddressSpec>,
    ) -> Result<VserverStatus> {
        validate_name("vserver name", name)?;
        if addresses.is_empty() {
            return Err(ControlError::invalid(
                "vserver",
                "needs at least one --address",
            ));
        }
        if addresses.len() > MAX_ADDRESSES {
            return Err(ControlError::invalid(
                "vserver",
                format!("more than {MAX_ADDRESSES} addresses"),
            ));
        }
        for (i, a) in addresses.iter().enumerate() {
            validate_address(a)?;
            if addresses[..i].iter().any(|b| b.ip == a.ip) {
                return Err(ControlError::invalid(
                    "address",
                    format!("{} is given twice", a.ip),
                ));
            }
        }
        let mut table = self.vservers.lock().await;
        if table.contains_key(name) {
            return Err(ControlError::VserverExists(name.to_string()));
        }
        if table.len() >= self.site.config.control.max_vservers {
            return Err(ControlError::invalid(
                "vserver",
                format!(
                    "the site already holds control.max_vservers = {} vservers",
                    self.site.config.control.max_vservers
                ),
            ));
        }
        for (other, vs) in table.iter() {
            let Ok(store) = vs.store() else { continue };
            let held = store.config().addresses;
            if let Some(a) = addresses.iter().find(|a| held.iter().any(|h| h.ip == a.ip)) {
                return Err(ControlError::Exists {
                    what: "address".into(),
                    detail: format!("{} is held by vserver {other}", a.ip),
                });
            }
        }
        let dir = self.site.paths.vserver(name);
        if dir.exists() {
            return Err(ControlError::Exists {
                what: "vserver directory".into(),
                detail: dir.display().to_string(),
            });
        }
        let vs = Vserver::create(
            &dir,
            name,
            addresses,
            &self.service_cfg,
            self.store_options(),
        )
        .await?;
        tracing::info!(vserver = name, "vserver created");
        let status = vs.status();
        table.insert(name.to_string(), vs);
        Ok(status)
    }

    pub async fn create_fs(
        &self,
        vserver: &str,
        name: &str,
        export: Export,
    ) -> Result<(FsStatus, Lsn)> {
        validate_name("file system name", name)?;
        validate_export_path(&export.path)?;
        if export.clients.len() > MAX_CLIENT_RULES {
            return Err(ControlError::invalid(
                "client networks",
                format!("more than {MAX_CLIENT_RULES}"),
            ));
        }
        let table = self.vservers.lock().await;
        let vs = table
            .get(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        let cfg = vs.store()?.config();
        if cfg.filesystems.contains_key(name) {
            return Err(ControlError::Exists {
                what: "file system".into(),
                detail: format!("{name} in vserver {vserver}"),
            });
        }
        if let Some(other) = cfg.fs_by_export_path(&export.path) {
            return Err(ControlError::Exists {
                what: "export path".into(),
                detail: format!(
                    "{} is already exported by file system {}",
                    normalize_export_path(&export.path),
                    other.name
                ),
            });
        }
        if cfg.filesystems.len() >= MAX_FILESYSTEMS {
            return Err(ControlError::invalid(
                "file system",
                format!("vserver {vserver} already has {MAX_FILESYSTEMS} file systems"),
            ));
        }
        let (fs, lsn) = vs.create_fs(name, export).await?;
        tracing::info!(vserver, fs = name, fsid = fs.fsid, "file system created");
        Ok((FsStatus::from_config(&fs), lsn))
    }

    pub async fn add_user(&self, vserver: &str, user: User) -> Result<Lsn> {
        validate_name("user name", &user.name)?;
        if user.groups.len() > MAX_GROUPS_PER_USER {
            return Err(ControlError::invalid(
                "groups",
                format!("more than {MAX_GROUPS_PER_USER} supplementary groups"),
            ));
        }
        let table = self.vservers.lock().await;
        let vs = table
            .get(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        if vs.store()?.config().users.contains_key(&user.name) {
            return Err(ControlError::Exists {
                what: "user".into(),
                detail: format!("{} in vserver {vserver}", user.name),
            });
        }
        let name = user.name.clone();
        let lsn = vs.add_user(user).await?;
        tracing::info!(vserver, user = %name, "user added");
        Ok(lsn)
    }

    /// The paired sites.
    pub async fn peers(&self) -> Vec<Peer> {
        self.peers.lock().await.clone()
    }

    /// Pairs a site: durable in peers.toml first, then accepted by the
    /// listener from the next handshake on.
    pub async fn add_peer(&self, peer: Peer) -> Result<Peer> {
        let peer = peer::validate_peer(&peer, &self.site.identity.id)?;
        let mut peers = self.peers.lock().await;
        peer::check_unique(&peers, &peer)?;
        if peers.len() >= MAX_PEERS {
            return Err(ControlError::invalid(
                "peer",
                format!("the site already has {MAX_PEERS} peers"),
            ));
        }
        let mut next = peers.clone();
        next.push(peer.clone());
        peer::save(&self.site.paths, &next)?;
        self.peer_tls
            .allowed
            .replace(next.iter().map(|p| p.id.clone()));
        self.set_peer_snapshot(&next);
        *peers = next;
        tracing::info!(peer = %peer.name, addr = %peer.addr, id = %peer.id, "peer added");
        Ok(peer)
    }

    /// Unpairs a site. Connections already open stay until they close;
    /// new handshakes from it are refused at once.
    pub async fn remove_peer(&self, name: &str) -> Result<Peer> {
        validate_name("peer name", name)?;
        let mut peers = self.peers.lock().await;
        let Some(pos) = peers.iter().position(|p| p.name == name) else {
            return Err(ControlError::NoPeer(name.to_string()));
        };
        let mut next = peers.clone();
        let removed = next.remove(pos);
        peer::save(&self.site.paths, &next)?;
        self.peer_tls
            .allowed
            .replace(next.iter().map(|p| p.id.clone()));
        self.set_peer_snapshot(&next);
        *peers = next;
        tracing::info!(peer = %removed.name, id = %removed.id, "peer removed");
        Ok(removed)
    }

    /// Connects to a peer with mutual TLS and exchanges a Ping/Pong.
    pub async fn check_peer(&self, name: &str) -> Result<PeerCheck> {
        validate_name("peer name", name)?;
        // Cloned so the list is not locked during network waits.
        let found = self
            .peers
            .lock()
            .await
            .iter()
            .find(|p| p.name == name)
            .cloned();
        let Some(p) = found else {
            return Err(ControlError::NoPeer(name.to_string()));
        };
        link::check(&p, &self.peer_tls).await
    }

    /// Stops every vserver: services first, then the stores.
    async fn shutdown(&self) {
        // Senders first: they hold the stores and their connections.
        let senders = std::mem::take(&mut *self.senders.lock().await);
        for (_, s) in senders {
            s.stop().await;
        }
        let mut table = self.vservers.lock().await;
        let all = std::mem::take(&mut *table);
        for (_, vs) in all {
            vs.shutdown().await;
        }
    }
}

/// Hooks for `tandem resync` (resync.rs keeps its logic there).
impl crate::api::Handler for Daemon {
    async fn handle(&self, req: Request) -> Response {
        self.dispatch(req).await
    }

    async fn status(&self) -> Result<StatusReport> {
        Daemon::status(self, None).await
    }
}

impl Daemon {
    pub(crate) fn peer_tls(&self) -> PeerTls {
        self.peer_tls.clone()
    }

    /// The peer `vserver` is replicated to from here, if any.
    pub(crate) async fn outgoing_to(&self, vserver: &str) -> Option<String> {
        let settings = self.replication.lock().await;
        settings.outgoing.get(vserver).map(|o| o.to.clone())
    }

    pub(crate) async fn stop_sender(&self, vserver: &str) {
        let sender = self.senders.lock().await.remove(vserver);
        if let Some(s) = sender {
            s.stop().await;
        }
    }

    /// Stops serving `vserver` and closes its store, waiting until no one
    /// holds it (in-flight requests), so the install can lock it.
    pub(crate) async fn close_for_resync(&self, vserver: &str) -> Result<()> {
        let store = {
            let mut table = self.vservers.lock().await;
            let vs = table
                .get_mut(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            vs.close_for_resync().await?
        };
        let deadline = tokio::time::Instant::now() + crate::daemon::resync::RELEASE_TIMEOUT;
        while Arc::strong_count(&store) > 1 {
            if tokio::time::Instant::now() >= deadline {
                drop(store);
                self.reopen_after_resync(vserver).await;
                return Err(ControlError::Unavailable {
                    vserver: vserver.to_string(),
                    reason: "the store is still in use; resync not started".into(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// A resync that did not install: the vserver is opened and served
    /// again as it was, and its sender restarted.
    pub(crate) async fn reopen_after_resync(&self, vserver: &str) {
        let dir = self.site.paths.vserver(vserver);
        let mut vs = Vserver::open_unserved(&dir, vserver, self.store_options()).await;
        crate::daemon::resync::serve_unless_diverged(&mut vs, &self.service_cfg).await;
        let store = vs.store().ok().cloned();
        self.vservers.lock().await.insert(vserver.to_string(), vs);
        let out = self.replication.lock().await.outgoing.get(vserver).cloned();
        if let (Some(store), Some(out)) = (store, out) {
            match out.policy() {
                Ok(policy) => {
                    let sender = self.start_sender(vserver, store, out, policy);
                    self.senders
                        .lock()
                        .await
                        .insert(vserver.to_string(), sender);
                }
                Err(e) => {
                    tracing::error!(vserver, error = %e, "replication.toml: not replicating this vserver")
                }
            }
        }
    }

    /// A resync installed: the vserver is a replica here and no longer
    /// replicated from here (the promoted site replicates to it).
    pub(crate) async fn finish_resync(&self, vserver: &str, store: Store) -> Result<()> {
        let mut settings = self.replication.lock().await;
        let mut next = settings.clone();
        next.outgoing.remove(vserver);
        replication::save(&self.site.paths, &next)?;
        *settings = next;
        drop(settings);
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        vs.finish_baseline(store);
        Ok(())
    }
}

/// The IPs a vserver holds at this site: its own addresses and, for a
/// replica, the address it is served on read-only.
fn held_ips(status: &VserverStatus) -> Vec<(String, std::net::IpAddr)> {
    let replica = status
        .replication
        .as_ref()
        .and_then(|r| r.replica_address.clone());
    status
        .addresses
        .iter()
        .cloned()
        .chain(replica)
        .filter_map(|a| parse_address(&a).ok())
        .map(|a| (status.name.clone(), a.ip))
        .collect()
}

/// A daemon running inside this process.
pub struct RunningDaemon {
    daemon: Arc<Daemon>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    peer_server: Option<JoinHandle<()>>,
    metrics_server: Option<JoinHandle<()>>,
    fence_watch: JoinHandle<()>,
    _lock: SiteLock,
}

impl RunningDaemon {
    /// Locks the site, opens its vservers and starts the control socket.
    pub async fn start(site_dir: &Path) -> Result<RunningDaemon> {
        let site = Site::load(site_dir)?;
        let lock = SiteLock::acquire(site_dir, &site.paths.lock())?;
        let server = ApiServer::bind(&site.paths.socket())?;
        let settings = site.config.control.clone();
        tracing::info!(
            site = %site.config.name,
            id = %site.identity.id,
            dir = %site_dir.display(),
            "starting daemon"
        );
        let mut daemon = Daemon::open(site).await?;
        // A listen address that cannot be bound (taken, not local) must not
        // stop NFS service: it is logged and shown in status instead.
        let listen = daemon.site.config.listen.clone();
        let peer_listener = match PeerListener::bind(&listen, daemon.peer_tls.clone()).await {
            Ok(l) => {
                tracing::info!(listen = %listen, "peer listener ready (mutual TLS, paired sites only)");
                Some(l)
            }
            Err(e) => {
                tracing::error!(listen = %listen, error = %e, "peer listener not started");
                daemon.peer_listener_error = Some(e.to_string());
                None
            }
        };
        let daemon = Arc::new(daemon);
        daemon.start_senders().await;
        switchover::resume::resume_interrupted(daemon.clone()).await;
        let (stop, stopped) = watch::channel(false);
        let fence_watch =
            fence_watch::spawn(daemon.clone(), daemon.fenced.clone(), stopped.clone());
        let peer_server = peer_listener
            .map(|l| tokio::spawn(l.serve_with(stopped.clone(), Some(daemon.clone()))));
        let metrics_server = match daemon.site.config.metrics.listen.clone() {
            None => None,
            // Like the peer listener: a metrics address that cannot be
            // bound is logged, never a reason to stop serving NFS.
            Some(addr) => match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => {
                    tracing::info!(listen = %addr, "metrics on /metrics");
                    Some(tokio::spawn(crate::api::metrics::serve(
                        l,
                        daemon.clone(),
                        stopped.clone(),
                    )))
                }
                Err(e) => {
                    tracing::error!(listen = %addr, error = %e, "metrics endpoint not started");
                    None
                }
            },
        };
        let server = tokio::spawn(server.serve(daemon.clone(), settings, stopped));
        Ok(RunningDaemon {
            daemon,
            stop,
            server,
            peer_server,
            metrics_server,
            fence_watch,
            _lock: lock,
        })
    }

    pub fn daemon(&self) -> &Arc<Daemon> {
        &self.daemon
    }

    /// Stops the control socket (requests in progress finish), then the
    /// vservers; the site lock is released last.
    pub async fn stop(self) {
        // Ignored: no receiver means the server already ended.
        let _ = self.stop.send(true);
        if let Err(e) = self.server.await {
            tracing::error!(error = %e, "control server task failed");
        }
        if let Some(peer_server) = self.peer_server {
            if let Err(e) = peer_server.await {
                tracing::error!(error = %e, "peer listener task failed");
            }
        }
        if let Some(metrics_server) = self.metrics_server {
            if let Err(e) = metrics_server.await {
                tracing::error!(error = %e, "metrics task failed");
            }
        }
        if let Err(e) = self.fence_watch.await {
            tracing::error!(error = %e, "fence watch task failed");
        }
        self.daemon.shutdown().await;
        tracing::info!("daemon stopped");
    }
}
