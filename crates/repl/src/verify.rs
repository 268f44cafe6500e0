//! `tandem verify` inside a replication session: both sites digest the
//! same LSN L and the active site compares (docs/replication-protocol.md,
//! "Verify").
//!
//! The sender takes its own digest snapshot first (its state at L, the
//! current last LSN, with L durable), then cuts the batch stream exactly at
//! L: the batch before `VerifyRequest { lsn: L }` ends at L. The receiver
//! applies each batch whole before reading the next message, so when it
//! reads the request it stands exactly at L, and takes its snapshot there.
//! Both compute off their session loops (which keep streaming) and the
//! receiver sends its digest back in `VerifyResult` + `VerifyEntries`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tandem_store::digest::{first_difference, DigestError, DigestSnapshot, Digests, Hash};
use tandem_store::state::State;
use tandem_store::{Ino, Lsn, Store};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::session::SessionError;
use crate::wire::{Message, VerifyHeader, VerifyResult, MAX_VERIFY_ENTRIES_PER_MESSAGE};

/// Inodes the replica may report beyond those of our snapshot: a replica
/// that differs may hold a few more, one that holds far more is broken (and
/// its word would otherwise size our memory).
pub const MAX_EXTRA_REPLICA_INODES: u64 = 65_536;
/// Verify asks queued for one sender at most (one runs at a time).
pub const MAX_QUEUED_VERIFY_ASKS: usize = 4;

/// What a verify found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub lsn: Lsn,
    pub matches: bool,
    pub ours_root: Hash,
    pub theirs_root: Hash,
    /// `None` when they match.
    pub first_difference: Option<String>,
    /// Regular files and their bytes digested (at this site).
    pub files: u64,
    pub bytes: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    #[error("a verify is already running for this vserver; retry when it is done")]
    Busy,
    #[error("digest at the active site failed: {0}")]
    Ours(String),
    #[error("digest at the replica failed: {0}")]
    Theirs(String),
    #[error("the replication session ended: {0}")]
    SessionEnded(String),
}

pub type VerifyReply = oneshot::Sender<Result<VerifyOutcome, VerifyError>>;

/// A request to verify, for a running sender.
#[derive(Debug)]
pub struct VerifyAsk {
    pub reply: VerifyReply,
}

type Computed = Result<(Digests, State), DigestError>;

/// Sets the flag on drop, so a digest whose session ended (or whose caller
/// gave up) stops and releases its data-file hold.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Computes `snap` on a blocking thread; cancelled with the returned guard.
fn spawn_compute(snap: DigestSnapshot) -> (JoinHandle<Computed>, CancelOnDrop) {
    let flag = Arc::new(AtomicBool::new(false));
    let seen = flag.clone();
    let task = tokio::task::spawn_blocking(move || snap.compute(&|| seen.load(Ordering::Relaxed)));
    (task, CancelOnDrop(flag))
}

async fn take_snapshot(store: &Arc<Store>) -> Result<DigestSnapshot, SessionError> {
    let s = store.clone();
    Ok(tokio::task::spawn_blocking(move || s.digest_snapshot())
        .await
        .map_err(|e| SessionError::Task(e.to_string()))??)
}

type Snapshotting = JoinHandle<tandem_store::Result<DigestSnapshot>>;

/// The sender's side of one verify.
pub(crate) struct Verifying {
    /// The last LSN sent when the verify was asked: the stream pauses there
    /// until our snapshot is taken, so the snapshot's LSN is never behind it.
    paused_at: Lsn,
    /// Our snapshot being taken (it waits for the data applier and the
    /// journal: off the session loop, which keeps taking acks meanwhile).
    snapshotting: Option<Snapshotting>,
    /// Set once the snapshot is taken.
    lsn: Option<Lsn>,
    request_sent: bool,
    reply: Option<VerifyReply>,
    started: Instant,
    our_inodes: u64,
    ours: Option<JoinHandle<Computed>>,
    ours_done: Option<Result<(Digests, State), String>>,
    cancel: Option<CancelOnDrop>,
    header: Option<Result<VerifyHeader, String>>,
    theirs: BTreeMap<Ino, Hash>,
}

impl Verifying {
    /// Starts taking our snapshot; `sent`: the last LSN already sent.
    pub(crate) fn start(store: &Arc<Store>, sent: Lsn, reply: VerifyReply) -> Verifying {
        let s = store.clone();
        Verifying {
            paused_at: sent,
            snapshotting: Some(tokio::task::spawn_blocking(move || s.digest_snapshot())),
            lsn: None,
            request_sent: false,
            reply: Some(reply),
            started: Instant::now(),
            our_inodes: 0,
            ours: None,
            ours_done: None,
            cancel: None,
            header: None,
            theirs: BTreeMap::new(),
        }
    }

    /// Where the batch stream must stop until the request is sent.
    pub(crate) fn cut(v: &Option<Verifying>) -> Option<Lsn> {
        let v = v.as_ref().filter(|v| !v.request_sent)?;
        Some(v.lsn.unwrap_or(v.paused_at))
    }

    /// The request, once everything up to its LSN is sent (and only once).
    pub(crate) fn request_due(v: &mut Option<Verifying>, sent: Lsn) -> Option<Message> {
        let v = v
            .as_mut()
            .filter(|v| !v.request_sent && v.lsn == Some(sent))?;
        v.request_sent = true;
        Some(Message::VerifyRequest { lsn: sent })
    }

    /// Whether our snapshot or digest is still being computed.
    pub(crate) fn ours_running(v: &Option<Verifying>) -> bool {
        v.as_ref()
            .is_some_and(|v| v.snapshotting.is_some() || v.ours.is_some())
    }

    /// Waits for the next step of our side (only polled while
    /// `ours_running`): the snapshot taken, then the digest done. A failed
    /// snapshot ends the verify (answered), not the session.
    pub(crate) async fn ours_progress(v: &mut Option<Verifying>) {
        let Some(cur) = v.as_mut() else {
            return std::future::pending().await;
        };
        if let Some(task) = cur.snapshotting.as_mut() {
            let r = task.await;
            cur.snapshotting = None;
            let snap = match r {
                Ok(Ok(snap)) if snap.lsn() >= cur.paused_at => snap,
                Ok(Ok(snap)) => {
                    let e = format!(
                        "snapshot at LSN {} is behind the {} already sent",
                        snap.lsn(),
                        cur.paused_at
                    );
                    return Self::abandon(v, e);
                }
                Ok(Err(e)) => return Self::abandon(v, e.to_string()),
                Err(e) => return Self::abandon(v, e.to_string()),
            };
            let lsn = snap.lsn();
            cur.our_inodes = snap.state().inodes.len() as u64;
            cur.lsn = Some(lsn);
            let (task, cancel) = spawn_compute(snap);
            cur.ours = Some(task);
            cur.cancel = Some(cancel);
            tracing::info!(lsn, "verify started");
            return;
        }
        let Some(task) = cur.ours.as_mut() else {
            return std::future::pending().await;
        };
        let r = match task.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        cur.ours = None;
        cur.ours_done = Some(r);
    }

    /// Ends a verify whose request was never sent, telling the caller.
    fn abandon(v: &mut Option<Verifying>, why: String) {
        if let Some(reply) = v.take().and_then(|c| c.reply) {
            let _ = reply.send(Err(VerifyError::Ours(why)));
        }
    }

    /// Takes one of the replica's verify messages; a protocol error ends the
    /// session.
    pub(crate) fn on_message(v: &mut Option<Verifying>, msg: Message) -> Result<(), SessionError> {
        let Some(cur) = v.as_mut().filter(|v| v.request_sent) else {
            return Err(SessionError::Protocol(format!(
                "{} with no verify asked",
                msg.kind()
            )));
        };
        let bad = |why: String| Err(SessionError::Protocol(why));
        match msg {
            Message::VerifyResult(VerifyResult { lsn, outcome }) => {
                if Some(lsn) != cur.lsn {
                    return bad(format!("VerifyResult for LSN {lsn}, asked {:?}", cur.lsn));
                }
                if cur.header.is_some() {
                    return bad("a second VerifyResult".into());
                }
                if let Ok(h) = &outcome {
                    let max = cur.our_inodes.saturating_add(MAX_EXTRA_REPLICA_INODES);
                    if h.entries > max {
                        return bad(format!(
                            "replica announces {} digest entries; we hold {} inodes",
                            h.entries, cur.our_inodes
                        ));
                    }
                }
                cur.header = Some(outcome);
            }
            Message::VerifyEntries { lsn, entries } => {
                let Some(Ok(h)) = &cur.header else {
                    return bad("VerifyEntries before a successful VerifyResult".into());
                };
                if Some(lsn) != cur.lsn {
                    return bad(format!("VerifyEntries for LSN {lsn}, asked {:?}", cur.lsn));
                }
                let after = cur.theirs.last_key_value().map(|(k, _)| *k);
                if after.is_some_and(|a| entries.first().is_some_and(|e| e.0 <= a)) {
                    return bad("VerifyEntries inodes not ascending across messages".into());
                }
                if cur.theirs.len() as u64 + entries.len() as u64 > h.entries {
                    return bad(format!(
                        "more VerifyEntries entries than the {} announced",
                        h.entries
                    ));
                }
                cur.theirs.extend(entries);
            }
            other => return bad(format!("{} is not a verify message", other.kind())),
        }
        Ok(())
    }

    /// Ends the verify once both digests are in, answering the caller if it
    /// still waits; a caller gone meanwhile cancels our digest at once.
    pub(crate) fn finish_if_done(v: &mut Option<Verifying>) {
        let Some(cur) = v.as_mut() else { return };
        if cur.reply.as_ref().is_some_and(|r| r.is_closed()) {
            // The caller gave up (timeout): stop our digest now; the
            // replica's messages are still taken until they are all in.
            cur.reply = None;
            if let Some(c) = &cur.cancel {
                c.0.store(true, Ordering::Relaxed);
            }
        }
        if matches!(cur.header, Some(Err(_))) {
            // Nothing to compare with: stop ours (its error is not shown).
            if let Some(c) = &cur.cancel {
                c.0.store(true, Ordering::Relaxed);
            }
        }
        let theirs_done = match &cur.header {
            Some(Ok(h)) => cur.theirs.len() as u64 == h.entries,
            Some(Err(_)) => true,
            None => false,
        };
        if !theirs_done || cur.ours.is_some() || cur.snapshotting.is_some() {
            return;
        }
        let Some(cur) = v.take() else { return };
        let (Some(reply), Some(lsn)) = (cur.reply, cur.lsn) else {
            return;
        };
        let elapsed_ms = cur
            .started
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        let answer = match (cur.ours_done, cur.header) {
            (_, Some(Err(e))) => Err(VerifyError::Theirs(e)),
            (Some(Err(e)), _) => Err(VerifyError::Ours(e)),
            (Some(Ok((ours, state))), Some(Ok(h))) => {
                let theirs = Digests {
                    lsn,
                    root: h.root,
                    config: h.config,
                    inodes: cur.theirs,
                    files: h.files,
                    bytes: h.bytes,
                };
                let diff = if h.version != tandem_store::digest::DIGEST_VERSION {
                    Some(format!(
                        "digest versions differ ({} here, {} at the replica)",
                        tandem_store::digest::DIGEST_VERSION,
                        h.version
                    ))
                } else {
                    first_difference(&ours, &theirs, &state)
                };
                tracing::info!(
                    lsn = cur.lsn,
                    matches = diff.is_none(),
                    elapsed_ms,
                    "verify done"
                );
                Ok(VerifyOutcome {
                    lsn,
                    matches: diff.is_none(),
                    ours_root: ours.root,
                    theirs_root: h.root,
                    first_difference: diff,
                    files: ours.files,
                    bytes: ours.bytes,
                    elapsed_ms,
                })
            }
            _ => Err(VerifyError::Ours("digest missing".into())),
        };
        let _ = reply.send(answer);
    }
}

/// The replica's side of one verify: its digest being computed at `lsn`.
pub(crate) struct Answering {
    lsn: Lsn,
    task: JoinHandle<Computed>,
    _cancel: CancelOnDrop,
}

impl Answering {
    /// Takes the replica's snapshot at once: it must stand exactly at `lsn`.
    pub(crate) async fn start(store: &Arc<Store>, lsn: Lsn) -> Result<Answering, SessionError> {
        let snap = take_snapshot(store).await?;
        if snap.lsn() != lsn {
            return Err(SessionError::Protocol(format!(
                "VerifyRequest for LSN {lsn} arrived at LSN {}: not right after the batch ending there",
                snap.lsn()
            )));
        }
        let (task, cancel) = spawn_compute(snap);
        Ok(Answering {
            lsn,
            task,
            _cancel: cancel,
        })
    }

    /// Waits for the digest; the messages that carry it back.
    pub(crate) async fn finished(a: &mut Option<Answering>) -> Vec<Message> {
        let Some(cur) = a.as_mut() else {
            return std::future::pending().await;
        };
        let r = (&mut cur.task).await;
        let lsn = cur.lsn;
        *a = None;
        let digests = match r {
            Ok(Ok((d, _))) => d,
            Ok(Err(e)) => return vec![failed(lsn, e.to_string())],
            Err(e) => return vec![failed(lsn, e.to_string())],
        };
        let entries: Vec<(u64, Hash)> = digests.inodes.into_iter().collect();
        let mut out = vec![Message::VerifyResult(VerifyResult {
            lsn,
            outcome: Ok(VerifyHeader {
                version: tandem_store::digest::DIGEST_VERSION,
                root: digests.root,
                config: digests.config,
                files: digests.files,
                bytes: digests.bytes,
                entries: entries.len() as u64,
            }),
        })];
        out.extend(entries.chunks(MAX_VERIFY_ENTRIES_PER_MESSAGE).map(|c| {
            Message::VerifyEntries {
                lsn,
                entries: c.to_vec(),
            }
        }));
        out
    }
}

fn failed(lsn: Lsn, text: String) -> Message {
    Message::VerifyResult(VerifyResult {
        lsn,
        outcome: Err(crate::wire::clip_text(&text)),
    })
}
