//! One virtual server as the daemon holds it: its open store and the NFS
//! services on its addresses. Store calls block (fsync), so they run on
//! tokio's blocking pool, never on the async workers.

pub mod fsck;
pub mod release;
pub mod service;
pub mod status;

use std::path::Path;
use std::sync::Arc;

use tandem_store::{AddressSpec, Export, FsConfig, Lsn, Store, StoreOptions, User};

use crate::config::site::ServiceConfig;
use crate::error::{ControlError, Result};
use crate::replication::{Mode, ReplicationState, ReplicationStatus};
use crate::vserver::service::Service;
use crate::vserver::status::{BindFailure, FsStatus, VserverState, VserverStatus};

pub struct Vserver {
    name: String,
    state: State,
}

enum State {
    Active {
        store: Arc<Store>,
        services: Vec<Service>,
        bind_failures: Vec<BindFailure>,
    },
    /// A copy of a vserver active at another site: its store takes changes
    /// only from replication, and it is served (read-only) only on its
    /// replica address, never on the vserver's own addresses.
    Replica {
        store: Arc<Store>,
        services: Vec<Service>,
        bind_failures: Vec<BindFailure>,
        /// Held by the one replication session running for it.
        session: Arc<tokio::sync::Mutex<()>>,
        /// Site id of the sender, once known.
        from: Option<String>,
        replica_address: Option<AddressSpec>,
    },
    /// A replica whose first copy (baseline) is being received or was cut
    /// short: its directory is not a store yet, so nothing is served.
    Baseline {
        session: Arc<tokio::sync::Mutex<()>>,
        from: Option<String>,
        replica_address: Option<AddressSpec>,
    },
    /// Kept so status can say why, instead of the vserver vanishing.
    Failed { error: String },
}

/// Runs a blocking store call off the async workers. A panic inside the
/// store becomes an error for this one request, not a dead daemon.
pub(crate) async fn blocking<T: Send + 'static>(
    vserver: &str,
    f: impl FnOnce() -> tandem_store::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| ControlError::store(vserver, e)),
        Err(e) => Err(ControlError::Internal(format!(
            "vserver {vserver}: store call failed: {e}"
        ))),
    }
}

/// Starts the service on one address, claiming the address on its device
/// first (crate::net::addresses) and announcing it once served. The claim goes
/// with the service, which releases it when it stops; a failed start
/// releases it at once.
async fn start_service(
    store: &Arc<Store>,
    addr: &AddressSpec,
    cfg: &ServiceConfig,
) -> std::result::Result<(Service, Option<BindFailure>), String> {
    let claim = crate::net::addresses::claim(addr, &cfg.interfaces)
        .await
        .map_err(|e| e.to_string())?;
    match bind_service(store, addr, cfg).await {
        Ok((mut service, failure)) => {
            if let Some(claim) = claim {
                let t = claim.target();
                crate::net::announce::spawn_announce(t.device.clone(), claim.ifindex(), t.ip);
                service.hold(claim);
            }
            Ok((service, failure))
        }
        Err(error) => {
            if let Some(claim) = claim {
                if let Err(e) = claim.release().await {
                    tracing::error!(address = %addr, error = %e, "cannot release the address");
                }
            }
            Err(error)
        }
    }
}

/// Binds the service on one address. Port 111 is often held by a system
/// rpcbind on the wildcard address; NFS and MOUNT are still worth serving
/// then (clients can name the ports), so a failure with the portmapper is
/// retried without it and reported.
async fn bind_service(
    store: &Arc<Store>,
    addr: &AddressSpec,
    cfg: &ServiceConfig,
) -> std::result::Result<(Service, Option<BindFailure>), String> {
    let error = match Service::start(store.clone(), addr.ip, cfg).await {
        Ok(s) => return Ok((s, None)),
        Err(e) => e,
    };
    let Some(port) = cfg.nfs.portmap_port else {
        return Err(error);
    };
    let mut without = cfg.clone();
    without.nfs.portmap_port = None;
    let s = Service::start(store.clone(), addr.ip, &without)
        .await
        .map_err(|_| error.clone())?;
    tracing::warn!(address = %addr, %error, "serving without the portmapper");
    Ok((
        s,
        Some(BindFailure {
            address: format!("{addr} portmap port {port}"),
            error,
        }),
    ))
}

/// `vservers/.NAME.what`: beside the vserver's directory, and never taken
/// for a vserver (names do not start with '.').
fn side_dir(dir: &Path, what: &str) -> std::path::PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!(".{name}.{what}"))
}

/// A directory without FORMAT, progress mark, checkpoint or journal
/// segment: a baseline that stopped before writing its progress mark. It
/// holds no record, so a new baseline may replace it.
fn holds_nothing(dir: &Path) -> bool {
    let none = |p: &str| !dir.join(p).exists();
    let no_segments = match std::fs::read_dir(dir.join("journal")) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    none("FORMAT") && none("BASELINE") && none("checkpoint") && no_segments
}

/// Discards a replica directory that holds no record (see `holds_nothing`
/// and `begin_baseline`): renamed away first, so a crash leaves all or none.
pub fn discard_empty_replica_dir(dir: &Path) -> Result<()> {
    let discard = side_dir(dir, "discarded");
    remove_leftover(&discard)?;
    match std::fs::rename(dir, &discard) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ControlError::io(dir, e)),
    }
    std::fs::remove_dir_all(&discard).map_err(|e| ControlError::io(&discard, e))
}

/// Removes what an interrupted create or discard left behind.
fn remove_leftover(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ControlError::io(path, e)),
    }
}

impl Vserver {
    /// Opens an existing vserver and serves it. Never fails: a store that
    /// cannot be opened is kept as `Failed` with the reason.
    pub async fn open(dir: &Path, name: &str, cfg: &ServiceConfig, opts: StoreOptions) -> Vserver {
        let mut vs = Vserver::open_unserved(dir, name, opts).await;
        vs.serve_opened(cfg).await;
        vs
    }

    /// Serves an active vserver opened by `open_unserved` (resync.rs
    /// fences it first if the peer was promoted meanwhile).
    pub async fn serve_opened(&mut self, cfg: &ServiceConfig) {
        self.serve_all(cfg).await;
    }

    /// `open` without serving: an active store is open but not served.
    pub async fn open_unserved(dir: &Path, name: &str, opts: StoreOptions) -> Vserver {
        let owned_dir = dir.to_path_buf();
        let opened = blocking(name, move || Store::open(&owned_dir, opts)).await;
        match opened {
            Ok(store) if store.is_replica() => {
                tracing::info!(vserver = name, lsn = store.last_lsn(), "replica opened");
                Vserver::replica(name, store)
            }
            Ok(store) => Vserver {
                name: name.to_string(),
                state: State::Active {
                    store: Arc::new(store),
                    services: Vec::new(),
                    bind_failures: Vec::new(),
                },
            },
            Err(e)
                if matches!(
                    tandem_store::baseline::baseline_in_progress(dir),
                    Ok(Some(_))
                ) || holds_nothing(dir) =>
            {
                tracing::info!(vserver = name, error = %e, "replica baseline unfinished; it resumes when its site reconnects");
                Vserver::baseline(name, Arc::new(tokio::sync::Mutex::new(())), None, None)
            }
            Err(e) => {
                tracing::error!(vserver = name, error = %e, "cannot open vserver store");
                Vserver {
                    name: name.to_string(),
                    state: State::Failed {
                        error: e.to_string(),
                    },
                }
            }
        }
    }

    /// Creates a new vserver store with its addresses, durably, then serves
    /// it. On failure nothing is left behind.
    pub async fn create(
        dir: &Path,
        name: &str,
        addresses: Vec<AddressSpec>,
        cfg: &ServiceConfig,
        opts: StoreOptions,
    ) -> Result<Vserver> {
        let owned_dir = dir.to_path_buf();
        let owned_name = name.to_string();
        let made = blocking(name, move || {
            let store = Store::init(&owned_dir, &owned_name, opts)?;
            let mut last: Lsn = store.last_lsn();
            for a in addresses {
                last = store.add_address(a)?.lsn;
            }
            store.wait_durable_blocking(last)?;
            Ok(store)
        })
        .await;
        let store = match made {
            Ok(s) => s,
            Err(e) => {
                if let Err(rm) = std::fs::remove_dir_all(dir) {
                    if rm.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(vserver = name, error = %rm, "cannot remove half-created vserver");
                    }
                }
                return Err(e);
            }
        };
        let mut vs = Vserver {
            name: name.to_string(),
            state: State::Active {
                store: Arc::new(store),
                services: Vec::new(),
                bind_failures: Vec::new(),
            },
        };
        vs.serve_all(cfg).await;
        Ok(vs)
    }

    fn replica(name: &str, store: Store) -> Vserver {
        Vserver {
            name: name.to_string(),
            state: State::Replica {
                store: Arc::new(store),
                services: Vec::new(),
                bind_failures: Vec::new(),
                session: Arc::new(tokio::sync::Mutex::new(())),
                from: None,
                replica_address: None,
            },
        }
    }

    fn baseline(
        name: &str,
        session: Arc<tokio::sync::Mutex<()>>,
        from: Option<String>,
        replica_address: Option<AddressSpec>,
    ) -> Vserver {
        Vserver {
            name: name.to_string(),
            state: State::Baseline {
                session,
                from,
                replica_address,
            },
        }
    }

    /// Whether this is a replica whose baseline has not finished.
    pub fn in_baseline(&self) -> bool {
        matches!(self.state, State::Baseline { .. })
    }

    /// The session lock of a replica, baseline or not.
    pub fn session_lock(&self) -> Option<Arc<tokio::sync::Mutex<()>>> {
        match &self.state {
            State::Replica { session, .. } | State::Baseline { session, .. } => {
                Some(session.clone())
            }
            _ => None,
        }
    }

    /// Stops serving a replica that never received a record and closes
    /// its store, leaving its directory to a baseline. The vserver stays
    /// (in baseline state) with the same session lock.
    pub async fn begin_baseline(&mut self, dir: &Path) -> Result<()> {
        let State::Replica { store, .. } = &self.state else {
            return Ok(());
        };
        if store.last_lsn() != 0 {
            return Err(ControlError::Unavailable {
                vserver: self.name.clone(),
                reason: format!(
                    "the replica holds records up to LSN {}; a baseline needs an empty replica",
                    store.last_lsn()
                ),
            });
        }
        self.pause_replica().await?;
        // Closing wrote a checkpoint at LSN 0, which a baseline refuses to
        // overwrite; the directory holds no record, so nothing is lost by
        // removing it. Renamed away first, so a crash leaves either the
        // whole replica or none (the next connection then creates one).
        discard_empty_replica_dir(dir)
    }

    /// Stops serving a replica and closes its store for a catch-up, which
    /// installs into the same directory (the replica stays valid at its
    /// LSN until the install's switch). Shown as a baseline meanwhile (not
    /// served, same session lock). Returns the closed store: the install
    /// waits for every other holder to let it go.
    pub async fn begin_catchup(&mut self) -> Result<Arc<Store>> {
        self.pause_replica().await
    }

    /// Stops serving an active vserver whose store a peer's higher epoch
    /// fenced at runtime: its services end, releasing the addresses they
    /// claimed, as for a vserver found diverged at start (the promoted
    /// site holds them now; two hosts must not answer for one address).
    /// The store stays open for `tandem resync`. Returns whether anything
    /// was stopped.
    pub async fn stop_serving_if_fenced(&mut self) -> bool {
        let State::Active {
            store,
            services,
            bind_failures,
        } = &mut self.state
        else {
            return false;
        };
        let Some(theirs) = store.fenced_by() else {
            return false;
        };
        if services.is_empty() {
            return false;
        }
        tracing::warn!(
            vserver = %self.name,
            theirs,
            "diverged: another site holds this vserver at a higher epoch; no longer serving its addresses (see `tandem resync`)"
        );
        for s in services.drain(..) {
            s.shutdown().await;
        }
        bind_failures.clear();
        true
    }

    /// Resync: stops serving an active (diverged) vserver, closes its
    /// store and puts it in baseline state until `finish_baseline`.
    pub async fn close_for_resync(&mut self) -> Result<Arc<Store>> {
        // A resync interrupted after marking the store a replica: rerun.
        if matches!(self.state, State::Replica { .. }) {
            return self.pause_replica().await;
        }
        let State::Active {
            store, services, ..
        } = &mut self.state
        else {
            return Err(ControlError::Unavailable {
                vserver: self.name.clone(),
                reason: "not an active vserver with an open store".into(),
            });
        };
        let baseline = State::Baseline {
            session: Arc::new(tokio::sync::Mutex::new(())),
            from: None,
            replica_address: None,
        };
        let (store, services) = (store.clone(), std::mem::take(services));
        self.close_into(baseline, store, services).await
    }

    /// Stops serving a replica, closes its store and puts the vserver in
    /// baseline state (not served, same session lock).
    async fn pause_replica(&mut self) -> Result<Arc<Store>> {
        let State::Replica {
            store,
            services,
            session,
            from,
            replica_address,
            ..
        } = &mut self.state
        else {
            return Err(ControlError::Unavailable {
                vserver: self.name.clone(),
                reason: "not a replica with an open store".into(),
            });
        };
        let baseline = State::Baseline {
            session: session.clone(),
            from: from.take(),
            replica_address: replica_address.take(),
        };
        let (store, services) = (store.clone(), std::mem::take(services));
        self.close_into(baseline, store, services).await
    }

    /// Ends `services` (releasing their addresses), puts the vserver in
    /// `baseline` state (not served) and closes `store`, which is returned
    /// for the install that follows.
    async fn close_into(
        &mut self,
        baseline: State,
        store: Arc<Store>,
        services: Vec<Service>,
    ) -> Result<Arc<Store>> {
        for s in services {
            s.shutdown().await;
        }
        self.state = baseline;
        let closing = store.clone();
        blocking(&self.name, move || closing.close()).await?;
        Ok(store)
    }

    /// A finished baseline: the vserver becomes a replica of `store` again
    /// (not served until `serve_replica_address`).
    pub fn finish_baseline(&mut self, store: Store) {
        let (session, from) = match &mut self.state {
            State::Baseline { session, from, .. } => (session.clone(), from.take()),
            _ => return,
        };
        self.state = State::Replica {
            store: Arc::new(store),
            services: Vec::new(),
            bind_failures: Vec::new(),
            session,
            from,
            replica_address: None,
        };
    }

    /// Creates an empty replica store (LSN 0) for a vserver another site
    /// starts replicating here. Nothing is served until an address is set.
    pub async fn create_replica(dir: &Path, name: &str, opts: StoreOptions) -> Result<Vserver> {
        // Built beside its place and renamed into it, so a crash never
        // leaves a half-made replica that cannot be opened.
        let new = side_dir(dir, "new");
        remove_leftover(&new)?;
        let owned_dir = dir.to_path_buf();
        let store = blocking(name, move || {
            // Dropped, not closed: closing would checkpoint LSN 0, and a
            // baseline only goes into a replica without a checkpoint.
            drop(Store::init_replica(&new, opts.clone())?);
            std::fs::rename(&new, &owned_dir)
                .map_err(|e| tandem_store::StoreError::io(&owned_dir, e))?;
            Store::open_replica(&owned_dir, opts)
        })
        .await?;
        tracing::info!(vserver = name, "replica store created");
        Ok(Vserver::replica(name, store))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_replica(&self) -> bool {
        matches!(self.state, State::Replica { .. })
    }

    /// Records which site sends this replica (shown in status).
    pub fn set_replica_source(&mut self, site_id: &str) {
        if let State::Replica { from, .. } | State::Baseline { from, .. } = &mut self.state {
            *from = Some(site_id.to_string());
        }
    }

    /// Serves the replica read-only on `address`, once; a later different
    /// address replaces it. The store refuses every change, so NFS writes
    /// there get ROFS.
    pub async fn serve_replica_address(&mut self, address: &AddressSpec, cfg: &ServiceConfig) {
        if let State::Baseline {
            replica_address, ..
        } = &mut self.state
        {
            // Served once the baseline has made it a store.
            *replica_address = Some(address.clone());
            return;
        }
        let State::Replica {
            store,
            services,
            bind_failures,
            replica_address,
            ..
        } = &mut self.state
        else {
            return;
        };
        if replica_address.as_ref() == Some(address) && !services.is_empty() {
            return;
        }
        for s in services.drain(..) {
            s.shutdown().await;
        }
        bind_failures.clear();
        *replica_address = Some(address.clone());
        match start_service(store, address, cfg).await {
            Ok((s, portmap_failure)) => {
                tracing::info!(vserver = %self.name, %address, "serving replica read-only");
                services.push(s);
                bind_failures.extend(portmap_failure);
            }
            Err(error) => {
                tracing::error!(vserver = %self.name, %address, %error, "cannot serve replica address");
                bind_failures.push(BindFailure {
                    address: address.to_string(),
                    error,
                });
            }
        }
    }

    /// Failover: stops serving the replica (its read-only address), then
    /// promotes its store to `epoch` (tandem_store::promote). The vserver
    /// stays a replica here until `serve_active`. Already active (a rerun
    /// after a restart that opened it active): nothing to do.
    pub async fn promote(&mut self, epoch: u64) -> Result<Option<tandem_store::promote::Promoted>> {
        let State::Replica {
            store, services, ..
        } = &mut self.state
        else {
            if matches!(self.state, State::Active { .. }) {
                return Ok(None);
            }
            return Err(ControlError::Unavailable {
                vserver: self.name.clone(),
                reason: "not a replica with an open store; cannot promote".into(),
            });
        };
        for s in services.drain(..) {
            s.shutdown().await;
        }
        let store = store.clone();
        blocking(&self.name, move || store.promote(epoch))
            .await
            .map(Some)
    }

    /// Failover, last step: a promoted store becomes this vserver's active
    /// copy, served read-write on every address of its config.
    pub async fn serve_active(&mut self, cfg: &ServiceConfig) -> Result<()> {
        let store = match &self.state {
            State::Active { services, .. } if !services.is_empty() => return Ok(()),
            State::Active { store, .. } | State::Replica { store, .. } => store.clone(),
            _ => {
                return Err(ControlError::Unavailable {
                    vserver: self.name.clone(),
                    reason: "no open store to serve".into(),
                })
            }
        };
        if store.is_replica() {
            return Err(ControlError::Unavailable {
                vserver: self.name.clone(),
                reason: "the store is still a replica; promote it first".into(),
            });
        }
        self.state = State::Active {
            store,
            services: Vec::new(),
            bind_failures: Vec::new(),
        };
        self.serve_all(cfg).await;
        Ok(())
    }

    /// Switchover: the pause gates of every address served read-write.
    pub fn pause_gates(&self) -> Vec<Arc<tandem_nfs::pause::PauseGate>> {
        match &self.state {
            State::Active { services, .. } => services.iter().map(Service::pause_gate).collect(),
            _ => Vec::new(),
        }
    }

    /// Switchover: demotes the active store (tandem_store::demote), then
    /// stops serving its addresses; the vserver is a replica of `to_site`.
    pub async fn demote(&mut self, to_site: &str) -> Result<tandem_store::demote::Demoted> {
        let State::Active { store, .. } = &self.state else {
            return Err(ControlError::Unavailable {
                vserver: self.name.clone(),
                reason: "not active here; cannot demote".into(),
            });
        };
        let store = store.clone();
        let demoting = store.clone();
        let demoted = blocking(&self.name, move || demoting.demote()).await?;
        let old = std::mem::replace(
            &mut self.state,
            State::Failed {
                error: String::new(),
            },
        );
        if let State::Active { services, .. } = old {
            for s in services {
                s.shutdown().await;
            }
        }
        self.state = State::Replica {
            store,
            services: Vec::new(),
            bind_failures: Vec::new(),
            session: Arc::new(tokio::sync::Mutex::new(())),
            from: Some(to_site.to_string()),
            replica_address: None,
        };
        Ok(demoted)
    }

    /// Takes back `demote` (the peer was never asked to promote): active
    /// and served again.
    pub async fn undo_demote(&mut self, cfg: &ServiceConfig) -> Result<()> {
        let store = self.store()?.clone();
        blocking(&self.name, move || store.undo_demote()).await?;
        self.serve_active(cfg).await
    }

    pub fn store(&self) -> Result<&Arc<Store>> {
        match &self.state {
            State::Active { store, .. } | State::Replica { store, .. } => Ok(store),
            State::Failed { error } => Err(ControlError::Unavailable {
                vserver: self.name.clone(),
                reason: format!("not open: {error}"),
            }),
            State::Baseline { .. } => Err(ControlError::Unavailable {
                vserver: self.name.clone(),
                reason: "replica baseline in progress".into(),
            }),
        }
    }

    /// Starts one NFS service per address; an address that cannot be bound
    /// is logged and remembered, the others still serve.
    async fn serve_all(&mut self, cfg: &ServiceConfig) {
        let State::Active {
            store,
            services,
            bind_failures,
        } = &mut self.state
        else {
            return;
        };
        let addresses = store.config().addresses;
        for addr in addresses {
            match start_service(store, &addr, cfg).await {
                Ok((s, portmap_failure)) => {
                    tracing::info!(vserver = %self.name, address = %addr, "serving");
                    services.push(s);
                    bind_failures.extend(portmap_failure);
                }
                Err(error) => {
                    tracing::error!(vserver = %self.name, address = %addr, %error, "cannot serve address");
                    bind_failures.push(BindFailure {
                        address: addr.to_string(),
                        error,
                    });
                }
            }
        }
    }

    pub async fn create_fs(&self, fs: &str, export: Export) -> Result<(FsConfig, Lsn)> {
        let store = self.store()?.clone();
        let fs = fs.to_string();
        blocking(&self.name, move || {
            let m = store.create_fs(&fs, export)?;
            store.wait_durable_blocking(m.lsn)?;
            Ok((m.value, m.lsn))
        })
        .await
    }

    pub async fn add_user(&self, user: User) -> Result<Lsn> {
        let store = self.store()?.clone();
        blocking(&self.name, move || {
            let m = store.add_user(user)?;
            store.wait_durable_blocking(m.lsn)?;
            Ok(m.lsn)
        })
        .await
    }

    pub fn status(&self) -> VserverStatus {
        match &self.state {
            State::Active {
                store,
                services,
                bind_failures,
            } => served(
                &self.name,
                if store.fenced_by().is_some() {
                    VserverState::Diverged
                } else {
                    VserverState::Active
                },
                store,
                services,
                bind_failures,
                None,
            ),
            State::Replica {
                store,
                services,
                bind_failures,
                session,
                from,
                replica_address,
            } => {
                let receiving = session.try_lock().is_err();
                let state = if receiving {
                    ReplicationState::Receiving
                } else {
                    ReplicationState::Replica
                };
                let replication = incoming(from, replica_address, state, store.last_lsn());
                served(
                    &self.name,
                    // A resync interrupted before its install: still diverged.
                    if store.fenced_by().is_some() {
                        VserverState::Diverged
                    } else {
                        VserverState::Replica
                    },
                    store,
                    services,
                    bind_failures,
                    Some(replication),
                )
            }
            State::Baseline {
                session,
                from,
                replica_address,
            } => {
                let copying = session.try_lock().is_err();
                let state = if copying {
                    ReplicationState::Baseline
                } else {
                    ReplicationState::BaselineUnfinished
                };
                VserverStatus {
                    replication: Some(Box::new(incoming(from, replica_address, state, 0))),
                    ..unserved(&self.name, VserverState::Replica, None)
                }
            }
            State::Failed { error } => {
                unserved(&self.name, VserverState::Failed, Some(error.clone()))
            }
        }
    }

    /// Stops serving first (no new requests), then closes the store so it
    /// flushes and checkpoints.
    pub async fn shutdown(self) {
        let (store, services) = match self.state {
            State::Active {
                store, services, ..
            }
            | State::Replica {
                store, services, ..
            } => (store, services),
            State::Failed { .. } | State::Baseline { .. } => return,
        };
        for s in services {
            s.shutdown().await;
        }
        let name = self.name.clone();
        match blocking(&self.name, move || store.close()).await {
            Ok(()) => tracing::info!(vserver = %name, "store closed"),
            Err(e) => tracing::error!(vserver = %name, error = %e, "closing store failed"),
        }
    }
}

/// Status of a vserver whose store is open here (active or replica).
fn served(
    name: &str,
    state: VserverState,
    store: &Store,
    services: &[Service],
    bind_failures: &[BindFailure],
    replication: Option<ReplicationStatus>,
) -> VserverStatus {
    let cfg = store.config();
    VserverStatus {
        name: name.to_string(),
        state,
        error: None,
        addresses: cfg.addresses.clone(),
        filesystems: cfg
            .filesystems
            .values()
            .map(FsStatus::from_config)
            .collect(),
        users: cfg.users.into_values().collect(),
        last_lsn: store.last_lsn(),
        durable_lsn: store.durable_lsn(),
        endpoints: services.iter().flat_map(Service::endpoints).collect(),
        bind_failures: bind_failures.to_vec(),
        replication: replication.map(Box::new),
        space: Some(Box::new(crate::vserver::status::SpaceStatus::of(store))),
    }
}

/// Status of a vserver with no open store here (failed, or a baseline copy
/// still arriving).
fn unserved(name: &str, state: VserverState, error: Option<String>) -> VserverStatus {
    VserverStatus {
        name: name.to_string(),
        state,
        error,
        addresses: Vec::new(),
        filesystems: Vec::new(),
        users: Vec::new(),
        last_lsn: 0,
        durable_lsn: 0,
        endpoints: Vec::new(),
        bind_failures: Vec::new(),
        replication: None,
        space: None,
    }
}

/// Replication as the replica site sees it: where it comes from and how far
/// it has applied; lag and modes are the active site's to report.
fn incoming(
    from: &Option<String>,
    replica_address: &Option<AddressSpec>,
    state: ReplicationState,
    applied_lsn: Lsn,
) -> ReplicationStatus {
    ReplicationStatus {
        to: None,
        from: from.clone(),
        mode: Mode::Async,
        state,
        replica_lsn: applied_lsn,
        lag_records: 0,
        lag_bytes: 0,
        lag_ms: 0,
        last_error: None,
        connected_since_unix_ms: None,
        replica_address: replica_address.clone(),
        baseline_done_bytes: None,
        baseline_total_bytes: None,
        on_replica_loss: None,
        sync_timeout_ms: None,
        degraded: false,
        degraded_replies: 0,
        figures: Default::default(),
        overflow: Default::default(),
    }
}
