//! Fencing a returning old active site, and `tandem resync VS`
//! (docs/design.md, "Failover": fencing and resync).
//!
//! * **Epoch probe** (`probe_and_fence`): before an active vserver with
//!   outgoing replication is served at daemon start, the peer is asked
//!   for its epoch (the preface request `Epoch`, tandem_repl::peer,
//!   answered with its epoch, role and the shared LSN it knows), within
//!   `control.epoch_probe_timeout_ms`. A peer holding the
//!   vserver active at a higher epoch fences the store before it serves
//!   anything (`diverged`); an unreachable peer is logged and the vserver
//!   served: the peer may be the site that is gone.
//! * **Resync** (`resync`, at the diverged site): asks the promoted site
//!   for the shared LSN S, reads its own journal after S, keeps a report and
//!   the affected files (dr::resync::report), then `Resync` on a new
//!   connection: the promoted site sends a catch-up of both sides' changes
//!   since S (repl::resync), installed here (install.rs); this site
//!   becomes its replica and the promoted site replicates to it from then
//!   on. The promoted site's side is `serve_resync`.

use std::sync::Arc;
use std::time::Duration;

use tandem_repl::peer::{Answer, Connection, PeerError, Request};
use tandem_repl::wire::{code, EpochAnswer, ResyncDone, ResyncOpen, Role};
use tandem_store::{AddressSpec, Store};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::names::{parse_address, validate_name};
use crate::config::peers::Peer;
use crate::daemon::Daemon;
use crate::dr::resync::ResyncReport;
use crate::error::{ControlError, Result};
use crate::replication::link::PeerTls;
use crate::replication::{Mode, Outgoing};

mod install;

/// Each exchange of a resync's preface (not the transfer itself).
const RESYNC_LINE_TIMEOUT: Duration = Duration::from_secs(30);

fn unreachable(peer: &Peer, reason: String) -> ControlError {
    ControlError::PeerUnreachable {
        name: peer.name.clone(),
        addr: peer.addr.clone(),
        reason,
    }
}

async fn connect(
    peer: &Peer,
    peer_tls: &PeerTls,
    timeout: Duration,
) -> Result<Connection<impl AsyncRead + AsyncWrite + Unpin + Send>> {
    let stream = crate::replication::link::dial(peer, peer_tls).await?;
    Ok(Connection::new(stream, timeout))
}

/// Asks `peer` for its epoch of `vserver`, telling it ours.
pub async fn ask_epoch(
    peer: &Peer,
    peer_tls: &PeerTls,
    vserver: &str,
    ours: u64,
    timeout: Duration,
) -> Result<EpochAnswer> {
    let ask = async {
        let mut conn = connect(peer, peer_tls, timeout).await?;
        let question = Request::Epoch {
            vserver: vserver.to_string(),
            epoch: ours,
        };
        match conn.request(question).await {
            Ok(Answer::Epoch(a)) => Ok(a),
            Ok(Answer::Refused { reason, .. }) => Err(unreachable(peer, reason)),
            Ok(other) => Err(unreachable(peer, format!("unexpected answer {other:?}"))),
            Err(e) => Err(unreachable(peer, e.to_string())),
        }
    };
    match tokio::time::timeout(timeout, ask).await {
        Err(_) => Err(unreachable(
            peer,
            format!("no epoch answer within {} ms", timeout.as_millis()),
        )),
        Ok(r) => r,
    }
}

/// At daemon start, before `store`'s vserver is served: fences it if
/// `peer` holds it active at a higher epoch (see the module doc).
pub async fn probe_and_fence(
    store: &Arc<Store>,
    vserver: &str,
    peer: &Peer,
    peer_tls: &PeerTls,
    timeout: Duration,
) {
    if store.is_replica() || store.fenced_by().is_some() {
        return;
    }
    match ask_epoch(peer, peer_tls, vserver, store.epoch(), timeout).await {
        Ok(p) if p.role == Role::Active && p.epoch > store.epoch() => {
            let s = store.clone();
            let theirs = p.epoch;
            match tokio::task::spawn_blocking(move || s.fence(theirs)).await {
                Ok(Ok(())) => {
                    tracing::error!(vserver, peer = %peer.name, theirs, "the peer holds this vserver active at a higher epoch: diverged, not taking writes; see `tandem resync`")
                }
                Ok(Err(e)) => tracing::error!(vserver, error = %e, "could not fence the store"),
                Err(e) => tracing::error!(vserver, error = %e, "could not fence the store"),
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(vserver, peer = %peer.name, error = %e, "could not learn the peer's epoch; serving (the peer may be the site that is gone)")
        }
    }
}

/// Serves a vserver `open_unserved` opened, unless it is diverged: the
/// promoted site holds its addresses, and claiming them here (netlink,
/// announcements) would take them from it. A diverged vserver is kept
/// like a replica, unserved, until `tandem resync`.
pub(crate) async fn serve_unless_diverged(
    vs: &mut crate::vserver::Vserver,
    cfg: &crate::config::site::ServiceConfig,
) {
    match vs.store() {
        Ok(s) if s.fenced_by().is_some() => tracing::warn!(
            vserver = vs.name(),
            theirs = s.fenced_by(),
            "diverged: another site holds this vserver at a higher epoch; not serving its addresses (see `tandem resync`)"
        ),
        _ => vs.serve_opened(cfg).await,
    }
}

/// A refusal of a resync, its reason on one line.
fn refusal(e: impl std::fmt::Display) -> Answer {
    Answer::Refused {
        code: code::INTERNAL,
        reason: e.to_string().replace('\n', " ").chars().take(200).collect(),
    }
}

impl Daemon {
    /// Peer side of the epoch question (the vserver name is the wire's,
    /// already checked).
    pub(crate) async fn answer_epoch(&self, vserver: &str, theirs: u64) -> Answer {
        let Ok(store) = self.store(vserver).await else {
            return Answer::Epoch(EpochAnswer {
                epoch: 0,
                role: Role::None,
                shared_lsn: None,
            });
        };
        if store.is_replica() {
            return Answer::Epoch(EpochAnswer {
                epoch: store.epoch(),
                role: Role::Replica,
                shared_lsn: None,
            });
        }
        let shared_lsn = store
            .epoch_history()
            .ok()
            .and_then(|h| tandem_store::resync::shared_lsn_in(&h, theirs));
        Answer::Epoch(EpochAnswer {
            epoch: store.epoch(),
            role: Role::Active,
            shared_lsn,
        })
    }

    /// Peer side of a resync: the promoted site checks the request, sends the
    /// catch-up, then, once the diverged site says Ready, replicates to it.
    pub(crate) async fn serve_resync<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut conn: Connection<S>,
        peer_id: &str,
        open: ResyncOpen,
    ) -> std::result::Result<(), PeerError> {
        let ResyncOpen {
            vserver,
            epoch,
            shared_lsn: shared,
            replica_address: address,
        } = open;
        let vserver = vserver.as_str();
        let (peer, store, address) = match self
            .check_resync(peer_id, vserver, epoch, address.as_deref())
            .await
        {
            Ok(x) => x,
            Err(e) => return conn.answer(refusal(e)).await,
        };
        conn.answer(Answer::ResyncOk).await?;
        let cfg = tandem_repl::baseline::BaselineConfig::default();
        let sent =
            match tandem_repl::resync::serve_resync(conn.get_mut(), store, epoch, shared, &cfg)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(peer_id, vserver, error = %e, "resync ended unfinished");
                    return Ok(());
                }
            };
        let mut conn = Connection::new(conn.into_inner(), RESYNC_LINE_TIMEOUT);
        if !matches!(conn.read_request().await, Ok(Request::Ready)) {
            tracing::warn!(
                peer_id,
                vserver,
                "resync installed but the peer did not say Ready; not replicating to it"
            );
            return Ok(());
        }
        let out = Outgoing {
            replica_address: address,
            ..Outgoing::new(peer.name.clone(), Mode::Async)
        };
        let answer = match self.replicate(vserver, out).await {
            Ok(_) => Answer::ResyncDone(ResyncDone {
                lsn: sent.lsn,
                data_bytes: sent.data_bytes,
                state_bytes: sent.state_bytes,
                own_changed_bytes: sent.own_changed_bytes,
                divergent_bytes: sent.divergent_bytes,
            }),
            Err(e) => refusal(format!(
                "resync installed, but replicating to {}: {e}",
                peer.name
            )),
        };
        tracing::info!(
            peer_id,
            vserver,
            lsn = sent.lsn,
            data_bytes = sent.data_bytes,
            "resync done; replicating to the former active site"
        );
        conn.answer(answer).await
    }

    /// A resync is served when the vserver is active here at an epoch above
    /// the diverged site's, the connecting site is a paired peer and the
    /// address parses.
    async fn check_resync(
        &self,
        peer_id: &str,
        vserver: &str,
        epoch: u64,
        address: Option<&str>,
    ) -> Result<(Peer, Arc<Store>, Option<AddressSpec>)> {
        validate_name("vserver name", vserver)?;
        let address = address.map(parse_address).transpose()?;
        let peer = self
            .peers()
            .await
            .into_iter()
            .find(|p| p.id == peer_id)
            .ok_or_else(|| ControlError::NoPeer(peer_id.to_string()))?;
        let store = self.store(vserver).await?;
        if store.is_replica() || store.epoch() <= epoch {
            return Err(ControlError::invalid(
                "vserver",
                format!("{vserver} is not active here at an epoch above {epoch}"),
            ));
        }
        Ok((peer, store, address))
    }

    /// `tandem resync VS` at the diverged site (module doc).
    pub async fn resync(
        &self,
        vserver: &str,
        replica_address: Option<AddressSpec>,
    ) -> Result<ResyncReport> {
        validate_name("vserver name", vserver)?;
        let store = self.store(vserver).await?;
        if store.fenced_by().is_none() {
            return Err(ControlError::invalid(
            "vserver",
            format!("{vserver} is not diverged here (no other site holds a higher epoch); nothing to resync"),
        ));
        }
        let to = self.outgoing_to(vserver).await.ok_or_else(|| {
            ControlError::invalid(
                "vserver",
                format!("{vserver} has no outgoing replication here, so no peer to resync from"),
            )
        })?;
        let peer = self
            .peers()
            .await
            .into_iter()
            .find(|p| p.name == to)
            .ok_or_else(|| ControlError::NoPeer(to.clone()))?;
        let tls = self.peer_tls();
        let epoch = store.epoch();
        let theirs = ask_epoch(&peer, &tls, vserver, epoch, RESYNC_LINE_TIMEOUT).await?;
        let shared = match theirs {
        EpochAnswer {
            role: Role::Active,
            shared_lsn: Some(s),
            epoch: e,
        } if e > epoch => s,
        other => {
            return Err(ControlError::invalid(
                "vserver",
                format!(
                    "peer {} does not know where it diverged from this site (its epoch {}, {}, shared LSN {:?}); \
                     fall back to a new baseline: remove {vserver} here and replicate it from {}",
                    peer.name,
                    other.epoch,
                    if other.role == Role::Active { "active" } else { "not active" },
                    other.shared_lsn,
                    peer.name
                ),
            ))
        }
    };
        let s = store.clone();
        let div = tokio::task::spawn_blocking(move || s.divergence(shared))
            .await
            .map_err(|e| ControlError::Internal(format!("reading the journal: {e}")))?
            .map_err(|e| ControlError::store(vserver, e))?;
        let folder = crate::dr::resync::report::write(self.site(), vserver, &store, &div).await?;
        let request = tandem_repl::resync::request(vserver, epoch, &div)
            .map_err(|why| ControlError::invalid("vserver", why))?;
        let mut conn = connect(&peer, &tls, RESYNC_LINE_TIMEOUT).await?;
        let open = Request::Resync(ResyncOpen {
            vserver: vserver.to_string(),
            epoch,
            shared_lsn: shared,
            replica_address: replica_address.as_ref().map(ToString::to_string),
        });
        let accepted = conn.request(open).await;
        take_answer(&peer, "the resync", accepted, |a| {
            matches!(a, Answer::ResyncOk).then_some(())
        })?;
        drop(store);
        let installed = self.install(vserver, conn.get_mut(), request).await?;
        let done = conn.request(Request::Ready).await;
        let done = take_answer(&peer, "after the install", done, |a| match a {
            Answer::ResyncDone(d) => Some(d),
            _ => None,
        })?;
        let ResyncDone {
            lsn,
            data_bytes: fetched,
            state_bytes,
            own_changed_bytes: peer_changed,
            divergent_bytes: divergent,
        } = done;
        tracing::info!(
            vserver,
            lsn,
            fetched,
            divergent,
            "resync done: this site is a replica of {}",
            peer.name
        );
        Ok(ResyncReport {
            vserver: vserver.to_string(),
            peer: peer.name,
            shared_lsn: shared,
            lsn: installed.max(lsn),
            epoch: self.installed_epoch(vserver).await,
            divergent_records: div.records.len() as u64,
            folder: folder.display().to_string(),
            fetched_bytes: fetched,
            state_bytes,
            divergent_bytes: divergent,
            peer_changed_bytes: peer_changed,
        })
    }

    async fn installed_epoch(&self, vserver: &str) -> u64 {
        self.store(vserver).await.map_or(0, |s| s.epoch())
    }
}

/// What `want` takes from the peer's answer at `step`; a refusal, another
/// answer or a failed exchange is an error naming the step.
fn take_answer<T>(
    peer: &Peer,
    step: &str,
    got: std::result::Result<Answer, PeerError>,
    want: impl FnOnce(Answer) -> Option<T>,
) -> Result<T> {
    let why = match got {
        Ok(Answer::Refused { reason, .. }) => format!("refused: {reason}"),
        Ok(a) => {
            let shown = format!("unexpected answer {a:?}");
            match want(a) {
                Some(t) => return Ok(t),
                None => shown,
            }
        }
        Err(e) => e.to_string(),
    };
    Err(unreachable(peer, format!("{step}: {why}")))
}
