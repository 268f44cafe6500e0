//! Fencing a returning old active site, and `tandem resync VS`
//! (docs/design.md, "Failover": fencing and resync).
//!
//! * **Epoch probe** (`probe_and_fence`): before an active vserver with
//!   outgoing replication is served at daemon start, the peer is asked
//!   for its epoch (`EPOCH <vs> <epoch>`, answered `OK <epoch> <role>
//!   <shared-lsn|->`), within `control.epoch_probe_timeout_ms`. A peer holding the
//!   vserver active at a higher epoch fences the store before it serves
//!   anything (`diverged`); an unreachable peer is logged and the vserver
//!   served: the peer may be the site that is gone.
//! * **Resync** (`resync`, at the diverged site): asks the promoted site
//!   for the shared LSN S, reads its own journal after S, keeps a report and
//!   the affected files (dr::resync::report), then `RESYNC` on a new
//!   connection: the promoted site sends a catch-up of both sides' changes
//!   since S (repl::resync), installed here (install.rs); this site
//!   becomes its replica and the promoted site replicates to it from then
//!   on. The promoted site's side is `serve_resync`.

use std::sync::Arc;
use std::time::Duration;

use tandem_store::{AddressSpec, Lsn, Store};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::config::names::{parse_address, validate_name};
use crate::config::peers::Peer;
use crate::daemon::Daemon;
use crate::dr::resync::ResyncReport;
use crate::error::{ControlError, Result};
use crate::replication::link::{PeerTls, MAX_PING_LINE_BYTES};
use crate::replication::{Mode, Outgoing};

mod install;

/// Each exchange of a resync's line protocol (not the transfer itself).
const RESYNC_LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The peer's answer to `EPOCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEpoch {
    pub epoch: u64,
    pub active: bool,
    pub shared_lsn: Option<Lsn>,
}

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
) -> Result<BufReader<impl AsyncRead + AsyncWrite + Unpin + Send>> {
    Ok(BufReader::new(
        crate::replication::link::dial(peer, peer_tls).await?,
    ))
}

/// Sends one line and reads the answer line (bounded).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    line: &str,
    timeout: Duration,
) -> std::io::Result<String> {
    let talk = async {
        write_line(stream, line).await?;
        read_line(stream).await
    };
    match tokio::time::timeout(timeout, talk).await {
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} ms", timeout.as_millis()),
        )),
        Ok(r) => r,
    }
}

async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> std::io::Result<()> {
    w.write_all(format!("{line}\n").as_bytes()).await?;
    w.flush().await
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut line = Vec::new();
    r.take(MAX_PING_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if line.last() != Some(&b'\n') || line.len() > MAX_PING_LINE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "answer cut short or longer than a line",
        ));
    }
    line.pop();
    String::from_utf8(line)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "answer is not UTF-8"))
}

/// Parses "OK <epoch> <active|replica|none> <shared-lsn|->".
fn parse_epoch_answer(line: &str) -> std::result::Result<PeerEpoch, String> {
    let w: Vec<&str> = line.split(' ').collect();
    let bad = || {
        format!(
            "unexpected answer {:?}",
            line.chars().take(200).collect::<String>()
        )
    };
    match w.as_slice() {
        ["OK", epoch, role, shared] => {
            let epoch = epoch.parse().map_err(|_| bad())?;
            let active = match *role {
                "active" => true,
                "replica" | "none" => false,
                _ => return Err(bad()),
            };
            let shared_lsn = match *shared {
                "-" => None,
                s => Some(s.parse().map_err(|_| bad())?),
            };
            Ok(PeerEpoch {
                epoch,
                active,
                shared_lsn,
            })
        }
        _ => Err(line.strip_prefix("ERR ").map_or_else(bad, str::to_string)),
    }
}

/// Asks `peer` for its epoch of `vserver`, telling it ours.
pub async fn ask_epoch(
    peer: &Peer,
    peer_tls: &PeerTls,
    vserver: &str,
    ours: u64,
    timeout: Duration,
) -> Result<PeerEpoch> {
    let ask = async {
        let mut s = connect(peer, peer_tls).await?;
        let line = exchange(&mut s, &format!("EPOCH {vserver} {ours}"), timeout)
            .await
            .map_err(|e| unreachable(peer, e.to_string()))?;
        parse_epoch_answer(&line).map_err(|why| unreachable(peer, why))
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
        Ok(p) if p.active && p.epoch > store.epoch() => {
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

impl Daemon {
    /// Peer side of `EPOCH <vs> <their-epoch>`.
    pub(crate) async fn answer_epoch(&self, args: &str) -> String {
        let Some((vserver, epoch)) = args.split_once(' ') else {
            return "ERR usage: EPOCH <vserver> <epoch>".into();
        };
        let Ok(theirs) = epoch.parse::<u64>() else {
            return "ERR usage: EPOCH <vserver> <epoch>".into();
        };
        if validate_name("vserver name", vserver).is_err() {
            return "ERR bad vserver name".into();
        }
        let Ok(store) = self.store(vserver).await else {
            return "OK 0 none -".into();
        };
        if store.is_replica() {
            return format!("OK {} replica -", store.epoch());
        }
        let shared = store
            .epoch_history()
            .ok()
            .and_then(|h| tandem_store::resync::shared_lsn_in(&h, theirs));
        let shared = shared.map_or_else(|| "-".to_string(), |s| s.to_string());
        format!("OK {} active {shared}", store.epoch())
    }

    /// Peer side of `RESYNC <vs> <their-epoch> <shared-lsn> <replica-address|->`:
    /// the promoted site sends the catch-up, then, once the diverged site
    /// says READY, replicates to it.
    pub(crate) async fn serve_resync<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: BufReader<S>,
        peer_id: &str,
        args: &str,
    ) -> std::io::Result<()> {
        let w: Vec<&str> = args.split(' ').collect();
        let (vserver, epoch, shared, address) = match w.as_slice() {
            [v, e, s, a] => match (e.parse::<u64>(), s.parse::<Lsn>()) {
                (Ok(e), Ok(s)) => (*v, e, s, (*a != "-").then_some(*a)),
                _ => return write_line(&mut stream, "ERR bad RESYNC line").await,
            },
            _ => return write_line(&mut stream, "ERR bad RESYNC line").await,
        };
        let checked = async {
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
        };
        let (peer, store, address) = match checked.await {
            Ok(x) => x,
            Err(e) => {
                let text: String = e.to_string().replace('\n', " ").chars().take(200).collect();
                return write_line(&mut stream, &format!("ERR {text}")).await;
            }
        };
        write_line(&mut stream, "OK").await?;
        let cfg = tandem_repl::baseline::BaselineConfig::default();
        let sent = match tandem_repl::resync::serve_resync(&mut stream, store, epoch, shared, &cfg)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(peer_id, vserver, error = %e, "resync ended unfinished");
                return Ok(());
            }
        };
        let ready = tokio::time::timeout(RESYNC_LINE_TIMEOUT, read_line(&mut stream)).await;
        if !matches!(ready, Ok(Ok(ref l)) if l == "READY") {
            tracing::warn!(
                peer_id,
                vserver,
                "resync installed but the peer did not say READY; not replicating to it"
            );
            return Ok(());
        }
        let out = Outgoing {
            replica_address: address,
            ..Outgoing::new(peer.name.clone(), Mode::Async)
        };
        let line = match self.replicate(vserver, out).await {
            Ok(_) => format!(
                "DONE {} {} {} {} {}",
                sent.lsn,
                sent.data_bytes,
                sent.state_bytes,
                sent.own_changed_bytes,
                sent.divergent_bytes
            ),
            Err(e) => format!(
                "ERR resync installed, but replicating to {}: {e}",
                peer.name
            ),
        };
        tracing::info!(
            peer_id,
            vserver,
            lsn = sent.lsn,
            data_bytes = sent.data_bytes,
            "resync done; replicating to the former active site"
        );
        write_line(&mut stream, &line).await
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
        PeerEpoch {
            active: true,
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
                    if other.active { "active" } else { "not active" },
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
        let mut conn = connect(&peer, &tls).await?;
        let address = replica_address
            .as_ref()
            .map_or_else(|| "-".to_string(), ToString::to_string);
        let line = format!("RESYNC {vserver} {epoch} {shared} {address}");
        let answer = exchange(&mut conn, &line, RESYNC_LINE_TIMEOUT)
            .await
            .map_err(|e| unreachable(&peer, e.to_string()))?;
        if answer != "OK" {
            return Err(unreachable(&peer, format!("refused the resync: {answer}")));
        }
        drop(store);
        let installed = self.install(vserver, &mut conn, request).await?;
        let done = exchange(&mut conn, "READY", RESYNC_LINE_TIMEOUT)
            .await
            .map_err(|e| unreachable(&peer, format!("after the install: {e}")))?;
        let figures: Vec<u64> = done
            .strip_prefix("DONE ")
            .map(|r| r.split(' ').filter_map(|w| w.parse().ok()).collect())
            .unwrap_or_default();
        let [lsn, fetched, state_bytes, peer_changed, divergent] = figures[..] else {
            return Err(unreachable(&peer, format!("after the install: {done}")));
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_answers_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_epoch_answer("OK 3 active 41").unwrap(),
            PeerEpoch {
                epoch: 3,
                active: true,
                shared_lsn: Some(41)
            }
        );
        assert!(!parse_epoch_answer("OK 1 replica -").unwrap().active);
        for bad in [
            "OK",
            "OK x active 1",
            "OK 1 boss -",
            "OK 1 active y",
            "HELLO",
        ] {
            assert!(parse_epoch_answer(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_epoch_answer("ERR nope").unwrap_err(), "nope");
    }
}
