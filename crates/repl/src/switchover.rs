//! `tandem switchover` inside a replication session
//! (docs/replication-protocol.md, "Switchover").
//!
//! The active site has demoted its store at LSN L (no frame after L will
//! ever exist at its epoch). Its session ships the frames up to L as
//! usual; once the replica has acknowledged L, it sends
//! `SwitchoverRequest { L, epoch + 1, settings }`. The replica, which
//! applies each batch whole before reading the next message, stands
//! exactly at L then: it hands the request to its daemon, which promotes
//! the store, serves the vserver and starts replicating back; then it
//! answers `SwitchoverDone` and the session ends. A replica that cannot
//! answers `SwitchoverRefused`, having changed nothing, and the session
//! streams on.
//!
//! Whether the request went out decides what the active site may do when
//! something fails: before, it can take its demotion back; after, the
//! replica may have promoted, so it must not. `Stage` records that under a
//! lock the daemon's timeout takes too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tandem_store::Lsn;
use tokio::sync::oneshot;

use crate::wire::SwitchoverRequest;

/// Switchover asks queued for one sender at most (one runs at a time).
pub const MAX_QUEUED_SWITCHOVER_ASKS: usize = 2;
/// Longest the replica's daemon may take to promote and serve before the
/// replica's session gives up waiting (the active site's own timeout is
/// usually shorter).
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StageKind {
    Pending,
    Sent,
    Cancelled,
}

/// Whether the request was (or may have been) written to the replica.
#[derive(Debug)]
pub struct Stage(Mutex<StageKind>);

impl Default for Stage {
    fn default() -> Self {
        Stage(Mutex::new(StageKind::Pending))
    }
}

impl Stage {
    fn with<T>(&self, f: impl FnOnce(&mut StageKind) -> T) -> T {
        f(&mut self.0.lock())
    }

    /// The session's step: true if it may send (and from now on the
    /// request counts as sent), false if the asker gave up first.
    pub(crate) fn begin_send(&self) -> bool {
        self.with(|k| match *k {
            StageKind::Pending => {
                *k = StageKind::Sent;
                true
            }
            _ => false,
        })
    }

    /// The asker's step when it gives up: true if the request was never
    /// sent (and now never will be).
    pub fn cancel(&self) -> bool {
        self.with(|k| match *k {
            StageKind::Pending | StageKind::Cancelled => {
                *k = StageKind::Cancelled;
                true
            }
            StageKind::Sent => false,
        })
    }

    pub fn sent(&self) -> bool {
        self.with(|k| *k == StageKind::Sent)
    }
}

/// What the replica answered, with when each part happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOver {
    pub lsn: Lsn,
    pub epoch: u64,
    /// What the new active site could not serve (empty: everything).
    pub notes: String,
    /// The replica had acknowledged L.
    pub acked_at: Instant,
    /// The request was written.
    pub sent_at: Instant,
    /// `SwitchoverDone` arrived.
    pub done_at: Instant,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SwitchoverError {
    /// Nothing was sent: the replica is untouched.
    #[error("the switchover request was not sent: {0}")]
    NotSent(String),
    /// The replica answered that it did not promote.
    #[error("the replica refused to promote: {0}")]
    Refused(String),
}

pub type SwitchoverReply = oneshot::Sender<Result<HandedOver, SwitchoverError>>;

/// A request to hand the vserver over, for a running sender whose store
/// was demoted at `lsn`.
#[derive(Debug)]
pub struct SwitchoverAsk {
    pub lsn: Lsn,
    /// The epoch the replica is to take (ours + 1).
    pub epoch: u64,
    /// Replication settings for the way back (the daemons' TOML).
    pub settings: String,
    pub stage: Arc<Stage>,
    pub reply: SwitchoverReply,
}

/// The replica's ask to its daemon: promote at `request.lsn`. The reply is
/// the notes for `SwitchoverDone`, or why it did not promote (then nothing
/// changed).
#[derive(Debug)]
pub struct PromoteAsk {
    /// Site id of the active site (the sender of this session).
    pub from_site: String,
    pub request: SwitchoverRequest,
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// The sender's side of one switchover.
pub(crate) struct Switching {
    ask: SwitchoverAsk,
    acked_at: Option<Instant>,
    sent_at: Option<Instant>,
}

impl Switching {
    pub(crate) fn new(ask: SwitchoverAsk) -> Self {
        Switching {
            ask,
            acked_at: None,
            sent_at: None,
        }
    }

    /// The request to write now that the replica acknowledged `applied`,
    /// if it is due; `Err` if the asker gave up (drop this switching).
    pub(crate) fn request_due(
        &mut self,
        vserver: &str,
        applied: Lsn,
    ) -> Option<Result<SwitchoverRequest, ()>> {
        if self.sent_at.is_some() || applied < self.ask.lsn {
            return None;
        }
        self.acked_at.get_or_insert_with(Instant::now);
        if !self.ask.stage.begin_send() {
            return Some(Err(()));
        }
        self.sent_at = Some(Instant::now());
        Some(Ok(SwitchoverRequest {
            vserver: vserver.to_string(),
            lsn: self.ask.lsn,
            epoch: self.ask.epoch,
            settings: self.ask.settings.clone(),
        }))
    }

    /// Whether an answer for (`lsn`) fits: the request went out for it.
    pub(crate) fn answers(&self, lsn: Lsn) -> bool {
        self.sent_at.is_some() && lsn == self.ask.lsn
    }

    pub(crate) fn done(self, epoch: u64, notes: String) -> Result<(), String> {
        if epoch != self.ask.epoch {
            return Err(format!(
                "SwitchoverDone names epoch {epoch}, the request asked for {}",
                self.ask.epoch
            ));
        }
        let now = Instant::now();
        let _ = self.ask.reply.send(Ok(HandedOver {
            lsn: self.ask.lsn,
            epoch,
            notes,
            acked_at: self.acked_at.unwrap_or(now),
            sent_at: self.sent_at.unwrap_or(now),
            done_at: now,
        }));
        Ok(())
    }

    pub(crate) fn refused(self, reason: String) {
        let _ = self.ask.reply.send(Err(SwitchoverError::Refused(reason)));
    }
}

/// Answers an ask the session cannot take (another running, store not
/// demoted at the asked LSN).
pub(crate) fn not_sent(ask: SwitchoverAsk, why: String) {
    let _ = ask.reply.send(Err(SwitchoverError::NotSent(why)));
}

/// The replica's answer to a `SwitchoverRequest`: checks that it stands
/// exactly at the request's LSN and epoch, hands it to the daemon and
/// answers Done (`Ok(true)`: the session ends) or Refused (`Ok(false)`:
/// nothing changed, the session goes on). Heartbeats are answered while
/// the daemon works.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn answer<W: tokio::io::AsyncWrite + Unpin>(
    store: &tandem_store::Store,
    vserver: &str,
    from_site: &str,
    request: SwitchoverRequest,
    promoter: Option<&tokio::sync::mpsc::Sender<PromoteAsk>>,
    verifying: bool,
    rx: &mut tokio::sync::mpsc::Receiver<crate::wire::Result<crate::wire::Message>>,
    wr: &mut W,
    cfg: &crate::session::SessionConfig,
) -> Result<bool, crate::session::SessionError> {
    use crate::session::SessionError;
    use crate::wire::{self, code, Message};

    if request.vserver != vserver {
        let text = format!(
            "switchover for {:?} in a session for {vserver:?}",
            request.vserver
        );
        let _ = crate::session::send_error(wr, code::UNKNOWN_VSERVER, &text, cfg).await;
        return Err(SessionError::Protocol(text));
    }
    let lsn = request.lsn;
    let refusal = match promoter {
        None => Some("this site takes no switchover here".to_string()),
        Some(_) if verifying => Some("a verify is running; retry when it is done".to_string()),
        Some(_) if !store.is_replica() => Some(format!("{vserver} is not a replica here")),
        Some(_) if store.last_lsn() != lsn || store.durable_lsn() < lsn => Some(format!(
            "the replica holds LSN {} (durable {}), not the request's {lsn}",
            store.last_lsn(),
            store.durable_lsn()
        )),
        Some(_) if store.epoch().checked_add(1) != Some(request.epoch) => Some(format!(
            "the replica is at epoch {}; a switchover to epoch {} raises it by more than one",
            store.epoch(),
            request.epoch
        )),
        Some(_) => None,
    };
    let refuse = |reason: String| Message::SwitchoverRefused {
        lsn,
        reason: wire::clip_text(&reason),
    };
    if let Some(why) = refusal {
        tracing::warn!(vserver, lsn, reason = %why, "refusing switchover");
        wire::write_message(wr, &refuse(why), cfg.message_timeout).await?;
        return Ok(false);
    }
    let (reply, mut answer) = oneshot::channel();
    let epoch = request.epoch;
    let ask = PromoteAsk {
        from_site: from_site.to_string(),
        request,
        reply,
    };
    if promoter.is_some_and(|p| p.try_send(ask).is_err()) {
        let why = "the daemon is busy with another switchover".to_string();
        wire::write_message(wr, &refuse(why), cfg.message_timeout).await?;
        return Ok(false);
    }
    let deadline = tokio::time::sleep(PROMOTE_TIMEOUT);
    tokio::pin!(deadline);
    let outcome = loop {
        tokio::select! {
            a = &mut answer => break a,
            m = rx.recv() => match m {
                None => return Err(SessionError::Task("reader stopped".into())),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Heartbeat { .. })) => {
                    let hb = Message::Heartbeat { now_ms: tandem_store::now_unix_ms() };
                    wire::write_message(wr, &hb, cfg.message_timeout).await?;
                }
                Some(Ok(Message::Error { code, text })) => return Err(SessionError::Peer { code, text }),
                Some(Ok(other)) => {
                    return Err(SessionError::Protocol(format!(
                        "unexpected {} while a switchover is being answered",
                        other.kind()
                    )))
                }
            },
            () = &mut deadline => {
                return Err(SessionError::Task(format!(
                    "the daemon did not finish the switchover within {} s",
                    PROMOTE_TIMEOUT.as_secs()
                )))
            }
        }
    };
    match outcome {
        // Whether it promoted is unknown: end without an answer, which the
        // active site takes as "may have happened".
        Err(_) => Err(SessionError::Task(
            "the daemon dropped the switchover without an answer".into(),
        )),
        Ok(Err(why)) => {
            tracing::warn!(vserver, lsn, reason = %why, "switchover refused by the daemon");
            wire::write_message(wr, &refuse(why), cfg.message_timeout).await?;
            Ok(false)
        }
        Ok(Ok(notes)) => {
            let done = Message::SwitchoverDone {
                lsn,
                epoch,
                notes: wire::clip_text(&notes),
            };
            wire::write_message(wr, &done, cfg.message_timeout).await?;
            tracing::warn!(
                vserver,
                lsn,
                epoch,
                "switchover: promoted here, session ends"
            );
            Ok(true)
        }
    }
}
