//! The site daemon: owns the site lock, every vserver of the site, the
//! replication senders, the control socket and the peer listener.
//!
//! # Where things are
//!
//! * `mod.rs`: the `Daemon`, its tables and their lock order; opening
//!   the site and closing it;
//! * `running.rs`: `RunningDaemon`, the tasks a started site runs (control
//!   socket, peer listener, metrics, fence watch) and their shutdown;
//! * `dispatch.rs`: a control request to the method that answers it;
//! * `vservers.rs`: creating vservers, file systems and users; status;
//! * `peers.rs`: pairing sites;
//! * `outgoing.rs`: this site's senders (`tandem replicate`, verify);
//! * `incoming.rs`: the replica side: what an incoming session runs
//!   against, and installing its baseline or catch-up;
//! * `peer_listener.rs`: the listener other sites connect to;
//! * `fence_watch.rs`: stops serving a vserver a sender found fenced;
//! * `failover/`, `switchover/`, `resync/`: the workflows.
//!
//! # Adding a workflow
//!
//! A workflow that changes vservers (failover, switchover, resync) is an
//! `impl Daemon` block in its own folder here. What needs no running
//! daemon (checks, durable marks, reports) is pure and lives in
//! `dr/<workflow>/`; the daemon side gathers the inputs under the locks
//! below, calls it, and applies the outcome. The entry point (the method
//! `dispatch` calls) reads as its list of phases, one method each. A
//! workflow that must not overlap another takes `failover_running` first.
//!
//! # Locks, and the order they are taken in
//!
//! 1. `failover_running` (tokio): one DR workflow at a time: failover,
//!    switchover at either end, taking back an interrupted switchover.
//!    Held for the whole workflow, across awaits (network ones too). Taken
//!    with `try_lock` (a second request is refused at once), except by the
//!    background take-back, which waits its turn.
//! 2. A replica's session lock (`Vserver::session_lock`, tokio): one
//!    incoming session per replica; held for the session's life.
//! 3. `vservers` (tokio): the vserver table and every vserver's state
//!    (services, store open or closed). Held across the awaits of local
//!    changes to a vserver (services starting and stopping, a store
//!    opened or promoted), never across a wait on a peer.
//! 4. `senders` (tokio): the running senders; held across `Sender::stop`.
//! 5. `replication` (tokio): replication.toml as last written; the file
//!    is written before the copy here changes.
//! 6. `peers` (parking_lot, blocking): the paired sites, also read by
//!    the senders; peers.toml is written before it changes.
//! 7. `session_stops` (parking_lot, blocking): the token that ends a
//!    replica's incoming session.
//!
//! A task holding one of these may take only locks further down the
//! list; to take one further up it first lets go. A task never holds two
//! vservers' session locks. The two blocking locks are leaves: none of
//! the daemon's locks is taken under them, and they are never held
//! across an await (the compiler holds us to that where it matters:
//! their guards are not `Send`, and requests and sessions run in spawned
//! tasks). They do not poison: what they guard is plain tables a
//! panicking holder cannot leave half-changed (each change is one
//! assignment after the file is written). Waiting for another task
//! counts as taking what it takes: an incoming session, holding its
//! session lock, waits for the switchover promotion, which takes
//! `failover_running`; that is why the promotion only tries it.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::names::validate_name;
use crate::config::peers::{self as peer, Peer};
use crate::config::site::ServiceConfig;
use crate::config::site::Site;
use crate::error::{ControlError, Result};
use crate::replication::link::{self, PeerTls};
use crate::replication::{self, Sender};
use crate::vserver::Vserver;

mod dispatch;
mod failover;
mod fence_watch;
mod incoming;
mod outgoing;
mod peer_admission;
mod peer_listener;
mod peers;
pub mod resync;
mod running;
pub(crate) mod switchover;
mod vservers;

pub use incoming::IncomingTarget;
pub use peer_listener::{PeerListener, MAX_PEER_CONNECTIONS};
pub use running::RunningDaemon;

pub struct Daemon {
    site: Site,
    service_cfg: ServiceConfig,
    /// One DR workflow at a time: two failovers of one vserver must not
    /// both reserve (the second would take the first's new epoch + 1).
    failover_running: Mutex<()>,
    vservers: Mutex<BTreeMap<String, Vserver>>,
    /// One sender per vserver this site replicates to a peer.
    senders: Mutex<BTreeMap<String, Sender>>,
    /// replication.toml as last written.
    replication: Mutex<replication::Settings>,
    /// Paired sites; changes are written to peers.toml before they show
    /// here or in `peer_tls.allowed`. Shared with the senders, which look
    /// their peer up without awaiting.
    peers: Arc<parking_lot::Mutex<Vec<Peer>>>,
    /// Per replica vserver: cancelled when a failover promotes it, so its
    /// incoming session (peer_listener.rs) ends at once instead of at its
    /// next batch. Never removed (a few bytes per vserver ever replicated).
    session_stops: parking_lot::Mutex<BTreeMap<String, CancellationToken>>,
    peer_tls: PeerTls,
    /// Set when the peer listener could not start (the site still serves
    /// its vservers; only pairing traffic is affected).
    peer_listener_error: Option<String>,
    /// Notified by a sender that fenced its store (fence_watch.rs).
    fenced: Arc<tokio::sync::Notify>,
}

impl Daemon {
    /// Opens every vserver found in the site's vservers directory.
    pub(super) async fn open(site: Site) -> Result<Daemon> {
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
            // Fencing (resync/): learn a higher epoch before serving.
            let to = replication.outgoing.get(&name).map(|o| &o.to);
            if let (Some(peer), Ok(store)) = (
                to.and_then(|t| peers.iter().find(|p| &p.name == t)),
                vs.store(),
            ) {
                let timeout =
                    std::time::Duration::from_millis(site.config.control.epoch_probe_timeout_ms);
                resync::probe_and_fence(store, &name, peer, &peer_tls, timeout).await;
            }
            resync::serve_unless_diverged(&mut vs, &service_cfg).await;
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
            failover_running: Mutex::new(()),
            vservers: Mutex::new(vservers),
            senders: Mutex::new(BTreeMap::new()),
            replication: Mutex::new(replication),
            peers: Arc::new(parking_lot::Mutex::new(peers)),
            session_stops: parking_lot::Mutex::new(BTreeMap::new()),
            peer_tls,
            peer_listener_error: None,
            fenced: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Stops every vserver: services first, then the stores.
    pub(super) async fn shutdown(&self) {
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

    pub fn site(&self) -> &Site {
        &self.site
    }

    /// The options every vserver store of this site opens with (site.toml
    /// `[store]`; per site, since one process may run several).
    pub fn store_options(&self) -> tandem_store::StoreOptions {
        self.site.config.store.store_options()
    }

    pub(crate) fn peer_tls(&self) -> PeerTls {
        self.peer_tls.clone()
    }
}
