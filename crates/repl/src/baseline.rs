//! The baseline over a connection: the active site's `send_baseline` and
//! the replica's `receive_baseline` (message layouts and order:
//! docs/replication-protocol.md, "Baseline"). The store does the copying
//! (`tandem_store::baseline`); this moves its pieces and reports progress.
//!
//! Order: `BaselineStart` (active) -> `BaselineResume` (replica: where to
//! start; a fresh copy starts at zero, the same baseline after a broken
//! connection where its durable progress says) -> `BaselineState` pieces
//! unless the replica has the state -> `BaselineChunk`s in (inode, offset)
//! order -> `BaselineDone` -> `Ack` at the baseline LSN once the replica is
//! installed. Both functions borrow the stream, so the same connection then
//! carries the streaming session (`session::send` / `session::receive`)
//! from the baseline LSN on.
//!
//! Resuming needs the same `BaselineSnapshot` (LSN and state): the active
//! site keeps it while the replica is incomplete. A new snapshot (after the
//! active site restarted, say) makes the replica discard the old copy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use tandem_store::baseline::{BaselineError, BaselineInstall, BaselineSnapshot};
use tandem_store::{Lsn, Store, StoreError, StoreOptions};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::session::code_of;
use crate::wire::{self, code, Ack, BaselineResume, BaselineStart, Message, WireError};

#[derive(Debug, Clone)]
pub struct BaselineConfig {
    /// Longest time to write one message, or to read one once expected.
    pub message_timeout: Duration,
    /// How long the replica may take to finish (sync the data, write the
    /// checkpoint) before the sender gives up waiting for its Ack.
    pub finish_timeout: Duration,
    /// File bytes per chunk (at most `wire::MAX_BASELINE_CHUNK_BYTES`).
    pub chunk_bytes: usize,
    /// State bytes per piece (at most `wire::MAX_BASELINE_STATE_PIECE_BYTES`).
    pub state_piece_bytes: usize,
    /// File bytes per second the copy may send, at most (`--bandwidth-mbps`).
    pub max_bytes_per_s: Option<u64>,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            message_timeout: Duration::from_secs(30),
            finish_timeout: Duration::from_secs(600),
            chunk_bytes: wire::MAX_BASELINE_CHUNK_BYTES,
            state_piece_bytes: wire::MAX_BASELINE_STATE_PIECE_BYTES,
            max_bytes_per_s: None,
        }
    }
}

/// Progress of one baseline, as either side sees it; `status` and a
/// progress bar derive rate and ETA from it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BaselineStatus {
    pub lsn: Lsn,
    /// File bytes copied or known not to need copying (holes, removed
    /// files), counted in copy order; includes what an earlier attempt did.
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// `done_bytes` when this attempt started (a resumed copy starts above
    /// zero): the rate counts only what this attempt moved.
    pub resumed_from_bytes: u64,
    /// When this attempt started.
    pub started: Option<Instant>,
    pub finished: bool,
}

impl BaselineStatus {
    /// A transfer starting now with `done_bytes` already done (by an
    /// earlier attempt; zero for a fresh one).
    pub(crate) fn starting(lsn: Lsn, total_bytes: u64, done_bytes: u64) -> Self {
        BaselineStatus {
            lsn,
            done_bytes,
            total_bytes,
            resumed_from_bytes: done_bytes,
            started: Some(Instant::now()),
            finished: false,
        }
    }

    /// Bytes per second moved by this attempt so far.
    pub fn rate_bytes_per_sec(&self) -> Option<f64> {
        let secs = self.started?.elapsed().as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        Some(self.done_bytes.saturating_sub(self.resumed_from_bytes) as f64 / secs)
    }

    /// Time left at the current rate; `None` until something moved.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate_bytes_per_sec().filter(|r| *r > 0.0)?;
        let left = self.total_bytes.saturating_sub(self.done_bytes) as f64;
        Duration::try_from_secs_f64(left / rate).ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineSessionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Install(#[from] BaselineError),
    #[error("peer refused the baseline (code {code}): {reason}")]
    Refused { code: u16, reason: String },
    #[error("peer reported an error (code {code}): {text}")]
    Peer { code: u16, text: String },
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("internal task failed: {0}")]
    Task(String),
}

type Result<T> = std::result::Result<T, BaselineSessionError>;

pub(crate) fn publish(progress: Option<&watch::Sender<BaselineStatus>>, status: &BaselineStatus) {
    if let Some(tx) = progress {
        tx.send_replace(*status);
    }
}

/// Tells the peer why before the error ends the session (best effort: the
/// connection may be what failed).
pub(crate) async fn tell<S: AsyncWrite + Unpin>(
    s: &mut S,
    code: u16,
    text: &str,
    timeout: Duration,
) {
    let text = wire::clip_text(text);
    if let Err(e) = wire::write_message(s, &Message::Error { code, text }, timeout).await {
        tracing::debug!(error = %e, "could not tell the peer about the error");
    }
}

/// A protocol breach: told to the peer, then the session's error.
pub(crate) async fn protocol_error<S: AsyncWrite + Unpin>(
    s: &mut S,
    text: String,
    timeout: Duration,
) -> BaselineSessionError {
    tell(s, code::INTERNAL, &text, timeout).await;
    BaselineSessionError::Protocol(text)
}

/// A refused install step: told to the peer, then the session's error.
pub(crate) async fn install_error<S: AsyncWrite + Unpin>(
    s: &mut S,
    e: BaselineError,
    timeout: Duration,
) -> BaselineSessionError {
    tell(s, install_code(&e), &e.to_string(), timeout).await;
    e.into()
}

/// A store error while reading what to send: told to the peer, then the
/// session's error.
pub(crate) async fn store_error<S: AsyncWrite + Unpin>(
    s: &mut S,
    e: StoreError,
    timeout: Duration,
) -> BaselineSessionError {
    tell(s, code_of(&e), &e.to_string(), timeout).await;
    e.into()
}

/// Input the install refused (`what`: "baseline" or "catch-up"): logged,
/// told to the peer, then the session's error.
pub(crate) async fn refuse_input<S: AsyncWrite + Unpin>(
    s: &mut S,
    e: BaselineError,
    what: &str,
    cfg: &BaselineConfig,
) -> BaselineSessionError {
    tracing::warn!(error = %e, "refusing {what} input");
    install_error(s, e, cfg.message_timeout).await
}

/// Sends `state` in pieces of at most `cfg.state_piece_bytes`, each framed
/// by `piece(offset, bytes)` (baseline and catch-up ship it alike).
pub(crate) async fn send_state<S: AsyncWrite + Unpin>(
    stream: &mut S,
    state: &Bytes,
    cfg: &BaselineConfig,
    piece: impl Fn(u64, Bytes) -> Message,
) -> Result<()> {
    let piece_bytes = cfg
        .state_piece_bytes
        .clamp(1, wire::MAX_BASELINE_STATE_PIECE_BYTES);
    let mut offset = 0usize;
    while offset < state.len() {
        let end = offset.saturating_add(piece_bytes).min(state.len());
        let msg = piece(offset as u64, state.slice(offset..end));
        wire::write_message(stream, &msg, cfg.message_timeout).await?;
        offset = end;
    }
    Ok(())
}

/// Sends the transfer's `done` message and waits (up to
/// `cfg.finish_timeout`) for the replica's Ack of `lsn`: it comes once the
/// replica has installed the transfer.
pub(crate) async fn send_done<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    done: &Message,
    lsn: Lsn,
    cfg: &BaselineConfig,
) -> Result<()> {
    wire::write_message(stream, done, cfg.message_timeout).await?;
    match wire::read_message(stream, cfg.finish_timeout).await? {
        Message::Ack(a) if a.applied_lsn == lsn => Ok(()),
        Message::Refuse { code, reason } => Err(BaselineSessionError::Refused { code, reason }),
        Message::Error { code, text } => Err(BaselineSessionError::Peer { code, text }),
        other => {
            let text = format!(
                "expected Ack of LSN {lsn} after {}, got {}",
                done.kind(),
                other.kind()
            );
            Err(protocol_error(stream, text, cfg.message_timeout).await)
        }
    }
}

/// The replica's end of a transfer: once the install finished, progress
/// shows it done and the sender gets the Ack of `lsn`; a failed finish is
/// told to the sender.
pub(crate) async fn ack_install<S: AsyncWrite + Unpin>(
    stream: &mut S,
    finished: std::result::Result<Store, BaselineError>,
    lsn: Lsn,
    status: &mut BaselineStatus,
    progress: Option<&watch::Sender<BaselineStatus>>,
    cfg: &BaselineConfig,
) -> Result<Store> {
    match finished {
        Ok(store) => {
            // Published before the Ack, so whoever sees the sender finish
            // also sees this side finished.
            status.done_bytes = status.total_bytes;
            status.finished = true;
            publish(progress, status);
            let ack = Message::Ack(Ack::through(lsn));
            wire::write_message(stream, &ack, cfg.message_timeout).await?;
            Ok(store)
        }
        Err(e) => Err(install_error(stream, e, cfg.message_timeout).await),
    }
}

/// Sends the baseline `snap` (from `store.baseline_begin()`) over `stream`,
/// resuming where the replica says. Returns the baseline LSN once the
/// replica has installed it; stream frames from there on.
pub async fn send_baseline<S>(
    stream: &mut S,
    store: Arc<Store>,
    snap: Arc<BaselineSnapshot>,
    cfg: &BaselineConfig,
    progress: Option<&watch::Sender<BaselineStatus>>,
) -> Result<Lsn>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Message::BaselineStart(BaselineStart {
        vserver: store.config().name,
        epoch: snap.epoch,
        lsn: snap.lsn,
        state_len: snap.state.len() as u64,
        state_crc: snap.state_crc,
        files: snap.files.len() as u64,
        total_bytes: snap.total_bytes,
    });
    wire::write_message(stream, &start, cfg.message_timeout).await?;
    let resume = match wire::read_message(stream, cfg.message_timeout).await? {
        Message::BaselineResume(r) => r,
        Message::Refuse { code, reason } => {
            return Err(BaselineSessionError::Refused { code, reason })
        }
        Message::Error { code, text } => return Err(BaselineSessionError::Peer { code, text }),
        other => {
            let text = format!("expected BaselineResume, got {}", other.kind());
            return Err(protocol_error(stream, text, cfg.message_timeout).await);
        }
    };
    if resume.lsn != snap.lsn {
        let text = format!(
            "replica answers for baseline LSN {}, not {}",
            resume.lsn, snap.lsn
        );
        return Err(protocol_error(stream, text, cfg.message_timeout).await);
    }

    if !resume.state_received {
        send_state(stream, &snap.state, cfg, |offset, data| {
            Message::BaselineState { offset, data }
        })
        .await?;
    }

    // Done bytes are counted here from the position, not taken from the
    // replica: both derive them from the same file list.
    let first = snap
        .files
        .iter()
        .position(|f| f.ino >= resume.next_ino)
        .unwrap_or(snap.files.len());
    let mut base: u64 = snap.files[..first].iter().map(|f| f.size).sum();
    let mut status = BaselineStatus::starting(snap.lsn, snap.total_bytes, 0);
    let mut bucket = crate::throttle::for_copy(cfg.max_bytes_per_s, cfg.chunk_bytes);
    let chunk = cfg.chunk_bytes.clamp(1, wire::MAX_BASELINE_CHUNK_BYTES);
    for (i, f) in snap.files.iter().enumerate().skip(first) {
        let mut offset = if f.ino == resume.next_ino {
            resume.next_offset.min(f.size)
        } else {
            0
        };
        if i == first {
            status.resumed_from_bytes = base + offset;
            status.done_bytes = base + offset;
            publish(progress, &status);
        }
        while offset < f.size {
            let want = chunk.min(usize::try_from(f.size - offset).unwrap_or(chunk));
            let (s, ino) = (store.clone(), f.ino);
            let read = blocking(move || s.baseline_read(ino, offset, want)).await?;
            let data = match read {
                Ok(d) => d,
                // Removed since the baseline began: its removal is in the
                // journal after the baseline LSN.
                Err(StoreError::NoEnt) => break,
                Err(e) => return Err(store_error(stream, e, cfg.message_timeout).await),
            };
            if data.is_empty() {
                // Shorter now than at the baseline LSN: a truncation after
                // it, which the journal carries.
                break;
            }
            let len = data.len() as u64;
            // All zeros: the replica's file reads as zeros there anyway
            // (it is sized at the end), so holes cost nothing on the wire.
            if data.iter().any(|&b| b != 0) {
                crate::throttle::pace_copy(&mut bucket, data.len()).await;
                let msg = Message::BaselineChunk {
                    ino: f.ino,
                    offset,
                    data,
                };
                wire::write_message(stream, &msg, cfg.message_timeout).await?;
            }
            offset += len;
            status.done_bytes = base + offset;
            publish(progress, &status);
        }
        // Bytes past where a short read stopped are known: zeros or gone.
        base += f.size;
        status.done_bytes = base;
        publish(progress, &status);
    }
    if first == snap.files.len() {
        status.resumed_from_bytes = base;
        status.done_bytes = base;
    }

    let done = Message::BaselineDone { lsn: snap.lsn };
    send_done(stream, &done, snap.lsn, cfg).await?;
    status.finished = true;
    publish(progress, &status);
    tracing::info!(lsn = snap.lsn, bytes = snap.total_bytes, "baseline sent");
    Ok(snap.lsn)
}

/// Receives a baseline of `vserver` into `store_dir` (empty, a fresh
/// replica, or an unfinished baseline, which resumes if it is the same
/// one). Returns the installed replica store at the baseline LSN.
pub async fn receive_baseline<S>(
    stream: &mut S,
    store_dir: &Path,
    vserver: &str,
    opts: StoreOptions,
    cfg: &BaselineConfig,
    progress: Option<&watch::Sender<BaselineStatus>>,
) -> Result<Store>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = match wire::read_message(stream, cfg.message_timeout).await? {
        Message::BaselineStart(s) => s,
        other => {
            let text = format!("expected BaselineStart, got {}", other.kind());
            return Err(protocol_error(stream, text, cfg.message_timeout).await);
        }
    };
    refuse_other_vserver(stream, vserver, &start.vserver, cfg).await?;
    let dir: PathBuf = store_dir.to_path_buf();
    let (lsn, state_len, state_crc) = (start.lsn, start.state_len, start.state_crc);
    let begun = blocking(move || BaselineInstall::begin(&dir, lsn, state_len, state_crc)).await?;
    let mut install = match begun {
        Ok(i) => i,
        Err(e) => {
            tell(stream, code::INTERNAL, &e.to_string(), cfg.message_timeout).await;
            return Err(e.into());
        }
    };
    let p = install.progress();
    if install.resumed() {
        tracing::info!(lsn, done_bytes = p.done_bytes, "resuming baseline");
    }
    let mut status = BaselineStatus::starting(lsn, start.total_bytes, p.done_bytes);
    publish(progress, &status);
    let resume = Message::BaselineResume(BaselineResume {
        lsn,
        state_received: p.state_received,
        next_ino: p.next_ino,
        next_offset: p.next_offset,
        done_bytes: p.done_bytes,
    });
    wire::write_message(stream, &resume, cfg.message_timeout).await?;

    loop {
        let msg = match wire::read_message(stream, cfg.message_timeout).await {
            Ok(m) => m,
            Err(e) => {
                // A broken connection keeps what arrived: record the
                // position so the next attempt resumes from here.
                if let Ok(Err(se)) = blocking(move || install.sync_progress()).await {
                    tracing::warn!(error = %se, "could not record baseline progress");
                }
                return Err(e.into());
            }
        };
        let step = match msg {
            Message::BaselineState { offset, data } => {
                let (i, r) = step(install, move |i| i.write_state(offset, &data)).await?;
                install = i;
                r.and_then(|()| check_totals(&install, &start))
            }
            Message::BaselineChunk { ino, offset, data } => {
                let (i, r) = step(install, move |i| i.write(ino, offset, &data)).await?;
                install = i;
                r
            }
            Message::BaselineDone { lsn: done_lsn } => {
                let o = opts.clone();
                let finished = blocking(move || install.finish(done_lsn, o)).await?;
                return ack_install(stream, finished, lsn, &mut status, progress, cfg).await;
            }
            Message::Heartbeat { .. } => Ok(()),
            Message::Error { code, text } => return Err(BaselineSessionError::Peer { code, text }),
            other => {
                let text = format!("unexpected {} during a baseline", other.kind());
                return Err(protocol_error(stream, text, cfg.message_timeout).await);
            }
        };
        if let Err(e) = step {
            return Err(refuse_input(stream, e, "baseline", cfg).await);
        }
        let p = install.progress();
        if p.state_received && p.done_bytes != status.done_bytes {
            status.done_bytes = p.done_bytes;
            publish(progress, &status);
        }
    }
}

/// Refuses (and tells the peer) a transfer announced for another vserver
/// than the one this connection serves.
pub(crate) async fn refuse_other_vserver<S: AsyncWrite + Unpin>(
    stream: &mut S,
    ours: &str,
    announced: &str,
    cfg: &BaselineConfig,
) -> Result<()> {
    if announced == ours {
        return Ok(());
    }
    let reason = format!("this transfer is for {ours:?}, not {announced:?}");
    let msg = Message::Refuse {
        code: code::UNKNOWN_VSERVER,
        reason: reason.clone(),
    };
    let _ = wire::write_message(stream, &msg, cfg.message_timeout).await;
    Err(BaselineSessionError::Refused {
        code: code::UNKNOWN_VSERVER,
        reason,
    })
}

/// Runs one install step off the async threads, handing the install back.
pub(crate) async fn step<I: Send + 'static, E: Send + 'static>(
    install: I,
    f: impl FnOnce(&mut I) -> std::result::Result<(), E> + Send + 'static,
) -> Result<(I, std::result::Result<(), E>)> {
    blocking(move || {
        let mut install = install;
        let r = f(&mut install);
        (install, r)
    })
    .await
}

/// The announced file count and total must be what the state says: a
/// mismatch means sender and replica disagree about what is copied.
fn check_totals(
    install: &BaselineInstall,
    start: &BaselineStart,
) -> std::result::Result<(), BaselineError> {
    let p = install.progress();
    if p.state_received && p.total_bytes != start.total_bytes {
        return Err(BaselineError::StateCorrupt(format!(
            "the state holds {} file bytes, the sender announced {}",
            p.total_bytes, start.total_bytes
        )));
    }
    Ok(())
}

fn install_code(e: &BaselineError) -> u16 {
    match e {
        BaselineError::Store(s) => code_of(s),
        BaselineError::LsnMismatch { .. } => code::GAP,
        _ => code::BAD_FRAME,
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BaselineSessionError::Task(e.to_string()))
}
