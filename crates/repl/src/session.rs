//! One replication session over an established connection (the TLS stream
//! in production, an in-memory pipe in tests): the active site's sender and
//! the replica's receiver. Message layouts: docs/replication-protocol.md.
//!
//! The sender ships durable frames from where the replica says it stands,
//! keeps up to `window_batches` batches in flight, sends heartbeats, and
//! raises the store's retention floor as acks arrive (so a checkpoint never
//! deletes what the replica still lacks). The receiver applies each batch
//! whole (`Store::apply_replicated`) and acks it. Either side ends the
//! session at the first problem, with the peer told why when possible;
//! reconnecting (with backoff) is the caller's job, and resumes from the
//! replica's LSN in the next HelloOk.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_store::{now_unix_ms, Lsn, Store, StoreError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, watch};

use crate::switchover::{PromoteAsk, Switching, SwitchoverAsk};
use crate::throttle::TokenBucket;
use crate::verify::{Answering, VerifyAsk, Verifying};
use crate::wire::{self, code, Ack, Batch, Hello, HelloOk, Message, WireError};

/// Envelope and batch header bytes left out of a batch's frame budget.
const BATCH_OVERHEAD_BYTES: usize = 1024;
/// Smallest frame budget per batch under a bandwidth limit.
const MIN_THROTTLED_BATCH_BYTES: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// This site's id (certificate fingerprint), sent in Hello.
    pub site_id: String,
    /// Longest time to read or write one message once it has started.
    pub message_timeout: Duration,
    /// The sender sends a heartbeat this often; the receiver answers each.
    pub heartbeat_interval: Duration,
    /// Silence from the peer for this long means the link is dead.
    pub idle_timeout: Duration,
    /// Batches sent but not yet acknowledged, at most.
    pub window_batches: usize,
    /// Frame bytes per batch, at most (one frame always fits).
    pub max_batch_bytes: usize,
    /// Send batches as BatchZstd when that saves bytes (`--compress`).
    pub compress: bool,
    /// Wire bytes per second the sender's batches may use, at most
    /// (`--bandwidth-mbps`); `None` is no limit.
    pub max_bytes_per_s: Option<u64>,
    /// The sender's running totals, shared with whoever reports them.
    pub counters: Arc<SendCounters>,
    /// Records appended but not yet durable are made durable after at most
    /// this long, so they can be shipped (`None`: only when a client
    /// waits, e.g. COMMIT). Without it, a stream of UNSTABLE writes stays
    /// at the active site until the client's COMMIT or the journal's
    /// 256 MiB unsynced limit, which is the async RPO.
    pub max_ship_delay: Option<Duration>,
}

/// A sender's totals since they were created (they outlive sessions).
#[derive(Debug, Default)]
pub struct SendCounters {
    /// Batch messages written, envelope included, compressed or not.
    pub sent_wire_bytes: AtomicU64,
    /// Journal frame bytes in those batches (before compression).
    pub sent_journal_bytes: AtomicU64,
    /// Journal frame bytes the replica acknowledged.
    pub acked_journal_bytes: AtomicU64,
}

impl SendCounters {
    /// (sent wire bytes, sent journal bytes, acked journal bytes).
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.sent_wire_bytes.load(Ordering::Relaxed),
            self.sent_journal_bytes.load(Ordering::Relaxed),
            self.acked_journal_bytes.load(Ordering::Relaxed),
        )
    }
}

impl SessionConfig {
    pub fn new(site_id: impl Into<String>) -> Self {
        SessionConfig {
            site_id: site_id.into(),
            message_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            window_batches: 4,
            max_batch_bytes: 4 << 20,
            compress: true,
            max_bytes_per_s: None,
            counters: Arc::default(),
            max_ship_delay: Some(Duration::from_millis(DEFAULT_MAX_SHIP_DELAY_MS)),
        }
    }
}

/// One journal sync per this many ms at most, and only while records wait:
/// a few dozen fdatasyncs a second bound the lag of UNSTABLE writes.
pub const DEFAULT_MAX_SHIP_DELAY_MS: u64 = 20;

/// Makes appended records durable at least every `every`, so the sender
/// (which ships durable frames only) is never held up by a client that
/// has not committed yet. Ends with the session (AbortOnDrop).
fn spawn_ship_nudger(store: Arc<Store>, every: Duration) -> AbortOnDrop<()> {
    AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let last = store.last_lsn();
            if last > store.durable_lsn() && store.wait_durable(last).await.is_err() {
                // The journal failed; the session sees it on its own.
                return;
            }
        }
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("peer refused the session (code {code}): {reason}")]
    Refused { code: u16, reason: String },
    #[error("peer reported an error (code {code}): {text}")]
    Peer { code: u16, text: String },
    #[error("fenced: our epoch is {ours}, the peer's is {theirs}")]
    Fenced { ours: u64, theirs: u64 },
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Aborts the task when dropped, so a session that ends (or is dropped)
/// leaves no reader behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the peer's messages on their own task, `idle` at most for each,
/// into a channel of about `window * 2` (ending after the first error).
fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(
    mut rd: R,
    idle: Duration,
    window: usize,
) -> (AbortOnDrop<()>, mpsc::Receiver<wire::Result<Message>>) {
    let (tx, rx) = mpsc::channel(window.saturating_mul(2).max(4));
    let task = tokio::spawn(async move {
        loop {
            let m = wire::read_message(&mut rd, idle).await;
            let end = m.is_err();
            if tx.send(m).await.is_err() || end {
                return;
            }
        }
    });
    (AbortOnDrop(task), rx)
}

/// The wire code for a store error, so the peer learns what went wrong.
pub fn code_of(e: &StoreError) -> u16 {
    match e {
        StoreError::Fenced { .. } => code::FENCED,
        StoreError::Replication(_) | StoreError::Corrupt(_) => code::BAD_FRAME,
        StoreError::NotRetained { .. } => code::NOT_RETAINED,
        StoreError::DiskFull(_) => code::NO_SPACE,
        _ => code::INTERNAL,
    }
}

/// What a sending session takes besides the store and the connection;
/// `Default` is none of it.
#[derive(Default)]
pub struct SendOptions<'a> {
    /// Receives each LSN the replica acknowledges as applied.
    pub acked: Option<watch::Sender<Lsn>>,
    /// Verify asks (`tandem verify`), kept by the caller across sessions;
    /// one runs at a time, others are answered `Busy`.
    pub verify: Option<&'a mut mpsc::Receiver<VerifyAsk>>,
    /// Switchover asks (`tandem switchover`, crate::switchover). After the
    /// replica answered `SwitchoverDone` the session neither sends nor
    /// returns: the vserver is active at the peer now, and a reconnect
    /// would be fenced; the caller stops it.
    pub switchover: Option<&'a mut mpsc::Receiver<SwitchoverAsk>>,
}

impl SendOptions<'_> {
    /// Only `acked`.
    pub fn acked(tx: watch::Sender<Lsn>) -> Self {
        SendOptions {
            acked: Some(tx),
            ..SendOptions::default()
        }
    }
}

/// Runs the active site's side until an error ends it (or the future is
/// dropped): the handshake, then the shipping loop.
pub async fn send<S>(
    store: Arc<Store>,
    conn: S,
    cfg: &SessionConfig,
    opts: SendOptions<'_>,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let SendOptions {
        acked,
        mut verify,
        mut switchover,
    } = opts;
    let (mut rd, mut wr) = tokio::io::split(conn);
    let replica_lsn = handshake(&store, &mut rd, &mut wr, cfg).await?;
    store.set_retention_floor(replica_lsn);
    if let Some(tx) = &acked {
        tx.send_replace(replica_lsn);
    }
    // Peer messages arrive on their own task, so acks are taken while
    // batches are being sent.
    let (_reader, mut rx) = spawn_reader(rd, cfg.idle_timeout, cfg.window_batches);
    let _nudger = cfg
        .max_ship_delay
        .map(|every| spawn_ship_nudger(store.clone(), every));
    let mut ship = Shipping::new(store.clone(), cfg, replica_lsn, acked);
    let mut heartbeat = tokio::time::interval(cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ship.fill_window(&mut wr).await?;
        if ship.send_due_request(&mut wr).await? {
            continue;
        }
        tokio::select! {
            m = rx.recv() => {
                let m = match m {
                    None => return Err(SessionError::Task("reader stopped".into())),
                    Some(m) => m?,
                };
                if ship.on_message(m)? == Handled::SwitchedOver {
                    return std::future::pending().await;
                }
            }
            r = store.wait_durable_past(ship.sent), if ship.window_open() => {
                r?;
            }
            _ = heartbeat.tick() => {
                let hb = Message::Heartbeat { now_ms: now_unix_ms() };
                wire::write_message(&mut wr, &hb, cfg.message_timeout).await?;
                Verifying::finish_if_done(&mut ship.verifying);
            }
            ask = recv_ask(&mut switchover) => match ask {
                None => switchover = None,
                Some(ask) => ship.take_switchover(ask),
            },
            ask = recv_ask(&mut verify) => match ask {
                None => verify = None,
                Some(ask) => ship.take_verify(ask),
            },
            () = Verifying::ours_progress(&mut ship.verifying), if Verifying::ours_running(&ship.verifying) => {
                Verifying::finish_if_done(&mut ship.verifying);
            }
        }
    }
}

/// Hello, and the replica's HelloOk checked against this store: its LSN,
/// from which shipping starts. A higher epoch there fences us; an LSN past
/// ours is divergence. Either is told to the replica before returning.
async fn handshake<R, W>(
    store: &Store,
    rd: &mut R,
    wr: &mut W,
    cfg: &SessionConfig,
) -> Result<Lsn, SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello = Message::Hello(Hello {
        protocol_version: wire::PROTOCOL_VERSION,
        site_id: cfg.site_id.clone(),
        vserver: store.config().name,
        epoch: store.epoch(),
        last_lsn: store.durable_lsn(),
    });
    wire::write_message(wr, &hello, cfg.message_timeout).await?;
    let ok = match wire::read_message(rd, cfg.message_timeout).await? {
        Message::HelloOk(ok) => ok,
        Message::Refuse { code, reason } => return Err(SessionError::Refused { code, reason }),
        other => {
            return Err(SessionError::Protocol(format!(
                "expected HelloOk, got {}",
                other.kind()
            )))
        }
    };
    let ours = store.epoch();
    if ok.epoch > ours {
        // Another site was promoted: this one must stop serving writes
        // ("One writer per epoch"); the caller acts on the error.
        let text = format!("epoch {ours} is below the replica's ({})", ok.epoch);
        let _ = send_error(wr, code::FENCED, &text, cfg).await;
        return Err(SessionError::Fenced {
            ours,
            theirs: ok.epoch,
        });
    }
    if ok.last_lsn > store.durable_lsn() {
        let text = format!(
            "replica holds LSN {}, past our durable {}: diverged",
            ok.last_lsn,
            store.durable_lsn()
        );
        let _ = send_error(wr, code::GAP, &text, cfg).await;
        return Err(SessionError::Protocol(text));
    }
    Ok(ok.last_lsn)
}

/// What a peer message did to the session.
#[derive(Debug, PartialEq, Eq)]
enum Handled {
    Continue,
    /// The replica promoted: the session sends nothing more.
    SwitchedOver,
}

/// The sending loop's state: the window of batches in flight, the
/// bandwidth bucket, and the verify or switchover under way.
struct Shipping<'a> {
    store: Arc<Store>,
    vserver: String,
    cfg: &'a SessionConfig,
    acked: Option<watch::Sender<Lsn>>,
    /// Frame bytes per batch, at most.
    max_bytes: usize,
    window: usize,
    /// Highest LSN the replica acknowledged as applied.
    applied: Lsn,
    /// Highest LSN sent.
    sent: Lsn,
    /// Each batch in flight: its last LSN and its journal bytes.
    in_flight: VecDeque<(Lsn, u64)>,
    bucket: Option<TokenBucket>,
    verifying: Option<Verifying>,
    switching: Option<Switching>,
}

impl<'a> Shipping<'a> {
    fn new(
        store: Arc<Store>,
        cfg: &'a SessionConfig,
        replica_lsn: Lsn,
        acked: Option<watch::Sender<Lsn>>,
    ) -> Self {
        let mut max_bytes = cfg
            .max_batch_bytes
            .min(wire::MAX_MESSAGE_BYTES - BATCH_OVERHEAD_BYTES);
        if let Some(rate) = cfg.max_bytes_per_s {
            // Batches of at most about a second's worth keep each wait for
            // the bucket short (one frame always fits, whatever its size).
            let second = usize::try_from(rate).unwrap_or(usize::MAX);
            max_bytes = max_bytes.min(second.max(MIN_THROTTLED_BATCH_BYTES));
        }
        let bucket = cfg.max_bytes_per_s.map(|rate| {
            TokenBucket::new(
                rate,
                (max_bytes + BATCH_OVERHEAD_BYTES) as u64,
                Instant::now(),
            )
        });
        Shipping {
            vserver: store.config().name,
            store,
            cfg,
            acked,
            max_bytes,
            window: cfg.window_batches.max(1),
            applied: replica_lsn,
            sent: replica_lsn,
            in_flight: VecDeque::new(),
            bucket,
            verifying: None,
            switching: None,
        }
    }

    fn window_open(&self) -> bool {
        self.in_flight.len() < self.window
    }

    /// Sends batches of durable frames while the window has room and
    /// frames wait (up to a verify's cut, if one runs).
    async fn fill_window<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> Result<(), SessionError> {
        while self.window_open() {
            // A verify cuts the stream at its LSN until its request is sent.
            let cut = Verifying::cut(&self.verifying);
            if cut == Some(self.sent) {
                break;
            }
            let (s, after, max_bytes) = (self.store.clone(), self.sent, self.max_bytes);
            let mut frames = tokio::task::spawn_blocking(move || s.read_frames(after, max_bytes))
                .await
                .map_err(|e| SessionError::Task(e.to_string()))??;
            if let Some(cut) = cut {
                frames.retain(|f| f.lsn <= cut);
            }
            let Some(last) = frames.last().map(|f| f.lsn) else {
                break;
            };
            let journal_bytes: u64 = frames.iter().map(|f| f.bytes.len() as u64).sum();
            let batch = Batch {
                vserver: self.vserver.clone(),
                epoch: self.store.epoch(),
                frames,
            };
            let bytes = wire::encode_batch(batch, self.cfg.compress)?;
            if let Some(b) = self.bucket.as_mut() {
                let wait = b.take(bytes.len() as u64, Instant::now());
                pace(wr, wait, self.cfg).await?;
            }
            wire::write_bytes(wr, &bytes, self.cfg.message_timeout).await?;
            let c = &self.cfg.counters;
            c.sent_wire_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            c.sent_journal_bytes
                .fetch_add(journal_bytes, Ordering::Relaxed);
            self.sent = last;
            self.in_flight.push_back((last, journal_bytes));
        }
        Ok(())
    }

    /// Sends a verify's or a switchover's request once its LSN is reached;
    /// true if one went out.
    async fn send_due_request<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
    ) -> Result<bool, SessionError> {
        let timeout = self.cfg.message_timeout;
        if let Some(request) = Verifying::request_due(&mut self.verifying, self.sent) {
            wire::write_message(wr, &request, timeout).await?;
            return Ok(true);
        }
        match self
            .switching
            .as_mut()
            .and_then(|s| s.request_due(&self.vserver, self.applied))
        {
            None => Ok(false),
            // The asker gave up before the request went out.
            Some(Err(())) => {
                self.switching = None;
                Ok(false)
            }
            Some(Ok(request)) => {
                let msg = Message::SwitchoverRequest(request);
                wire::write_message(wr, &msg, timeout).await?;
                Ok(true)
            }
        }
    }

    /// One message from the replica.
    fn on_message(&mut self, msg: Message) -> Result<Handled, SessionError> {
        match msg {
            Message::Ack(a) => self.on_ack(a)?,
            Message::Heartbeat { .. } => {}
            Message::Error { code, text } => return Err(SessionError::Peer { code, text }),
            m @ (Message::VerifyResult(_) | Message::VerifyEntries { .. }) => {
                Verifying::on_message(&mut self.verifying, m)?;
                Verifying::finish_if_done(&mut self.verifying);
            }
            Message::SwitchoverDone { lsn, epoch, notes } => match self.switching.take() {
                Some(s) if s.answers(lsn) => {
                    s.done(epoch, notes).map_err(SessionError::Protocol)?;
                    return Ok(Handled::SwitchedOver);
                }
                _ => {
                    return Err(SessionError::Protocol(format!(
                        "SwitchoverDone for LSN {lsn}, which no request of ours named"
                    )))
                }
            },
            Message::SwitchoverRefused { lsn, reason } => match self.switching.take() {
                Some(s) if s.answers(lsn) => s.refused(reason),
                _ => {
                    return Err(SessionError::Protocol(format!(
                        "SwitchoverRefused for LSN {lsn}, which no request of ours named"
                    )))
                }
            },
            other => {
                return Err(SessionError::Protocol(format!(
                    "unexpected {} from the replica",
                    other.kind()
                )))
            }
        }
        Ok(Handled::Continue)
    }

    /// An ack closes the batches it covers and raises the retention floor.
    fn on_ack(&mut self, a: Ack) -> Result<(), SessionError> {
        if a.applied_lsn > self.sent || a.applied_lsn < self.applied {
            return Err(SessionError::Protocol(format!(
                "ack of LSN {} outside {}..={}",
                a.applied_lsn, self.applied, self.sent
            )));
        }
        self.applied = a.applied_lsn;
        while let Some(&(l, bytes)) = self.in_flight.front() {
            if l > self.applied {
                break;
            }
            self.in_flight.pop_front();
            self.cfg
                .counters
                .acked_journal_bytes
                .fetch_add(bytes, Ordering::Relaxed);
        }
        self.store.set_retention_floor(self.applied);
        if let Some(tx) = &self.acked {
            tx.send_replace(self.applied);
        }
        Ok(())
    }

    fn take_switchover(&mut self, ask: SwitchoverAsk) {
        let store = &self.store;
        if self.switching.is_some() || self.verifying.is_some() {
            crate::switchover::not_sent(
                ask,
                "a verify or another switchover is running in this session".into(),
            );
        } else if !store.is_replica() || store.last_lsn() != ask.lsn {
            let why = format!(
                "the store is not demoted at LSN {} (it stands at {}, replica: {})",
                ask.lsn,
                store.last_lsn(),
                store.is_replica()
            );
            crate::switchover::not_sent(ask, why);
        } else {
            self.switching = Some(Switching::new(ask));
        }
    }

    fn take_verify(&mut self, ask: VerifyAsk) {
        if self.verifying.is_some() || self.switching.is_some() {
            let _ = ask.reply.send(Err(crate::verify::VerifyError::Busy));
        } else if ask.reply.is_closed() {
            // A caller that gave up while the ask was queued (between
            // sessions) gets nothing computed.
        } else {
            self.verifying = Some(Verifying::start(&self.store, self.sent, ask.reply));
        }
    }
}

/// The next ask (verify, switchover); never, once there is no channel.
async fn recv_ask<T>(rx: &mut Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits `wait` for the bandwidth limit, sending heartbeats meanwhile so
/// the replica does not take a long wait (a large frame on a slow limit)
/// for a dead link.
async fn pace<W: AsyncWrite + Unpin>(
    wr: &mut W,
    mut wait: Duration,
    cfg: &SessionConfig,
) -> Result<(), WireError> {
    while !wait.is_zero() {
        let step = wait.min(cfg.heartbeat_interval);
        tokio::time::sleep(step).await;
        wait -= step;
        if !wait.is_zero() {
            let hb = Message::Heartbeat {
                now_ms: now_unix_ms(),
            };
            wire::write_message(wr, &hb, cfg.message_timeout).await?;
        }
    }
    Ok(())
}

pub(crate) async fn send_error<W: AsyncWrite + Unpin>(
    wr: &mut W,
    code: u16,
    text: &str,
    cfg: &SessionConfig,
) -> Result<(), WireError> {
    let msg = Message::Error {
        code,
        text: wire::clip_text(text),
    };
    wire::write_message(wr, &msg, cfg.message_timeout).await?;
    wr.shutdown().await.map_err(WireError::Io)
}

async fn refuse<S: AsyncWrite>(
    wr: &mut WriteHalf<S>,
    code: u16,
    reason: String,
    cfg: &SessionConfig,
) -> SessionError {
    let msg = Message::Refuse {
        code,
        reason: wire::clip_text(&reason),
    };
    if let Err(e) = wire::write_message(wr, &msg, cfg.message_timeout).await {
        tracing::debug!(error = %e, "could not send refusal");
    }
    SessionError::Refused { code, reason }
}

/// Runs the replica's side for `vserver` until the sender closes the
/// connection (`Ok`) or an error ends it.
pub async fn receive<S>(
    store: Arc<Store>,
    vserver: &str,
    conn: S,
    cfg: &SessionConfig,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    receive_switchable(store, vserver, conn, cfg, None).await
}

/// `receive`, also answering a `SwitchoverRequest` by handing it to
/// `promoter` (the daemon); without one, requests are refused. Returns
/// `Ok` once the store was promoted and `SwitchoverDone` sent.
pub async fn receive_switchable<S>(
    store: Arc<Store>,
    vserver: &str,
    conn: S,
    cfg: &SessionConfig,
    promoter: Option<mpsc::Sender<PromoteAsk>>,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(conn);
    let hello = match wire::read_message(&mut rd, cfg.message_timeout).await? {
        Message::Hello(h) => h,
        other => {
            let why = format!("expected Hello, got {}", other.kind());
            return Err(refuse(&mut wr, code::INTERNAL, why, cfg).await);
        }
    };
    let ours = store.epoch();
    let refusal = if hello.protocol_version != wire::PROTOCOL_VERSION {
        Some((
            code::VERSION,
            format!(
                "protocol version {} not spoken here (this site speaks {})",
                hello.protocol_version,
                wire::PROTOCOL_VERSION
            ),
        ))
    } else if hello.vserver != vserver {
        Some((
            code::UNKNOWN_VSERVER,
            format!(
                "this session replicates {vserver:?}, not {:?}",
                hello.vserver
            ),
        ))
    } else if !store.is_replica() {
        Some((
            code::INTERNAL,
            format!("{vserver:?} is active here, not a replica"),
        ))
    } else if hello.epoch < ours {
        Some((
            code::FENCED,
            format!("epoch {} is below ours ({ours})", hello.epoch),
        ))
    } else if hello.last_lsn < store.last_lsn() {
        Some((
            code::GAP,
            format!(
                "sender holds LSN {}, behind ours ({}): diverged",
                hello.last_lsn,
                store.last_lsn()
            ),
        ))
    } else {
        None
    };
    if let Some((code, reason)) = refusal {
        tracing::warn!(site = %hello.site_id, vserver = %hello.vserver, code, %reason, "refusing replication session");
        return Err(refuse(&mut wr, code, reason, cfg).await);
    }
    let ok = Message::HelloOk(HelloOk {
        protocol_version: wire::PROTOCOL_VERSION,
        epoch: ours,
        last_lsn: store.last_lsn(),
    });
    wire::write_message(&mut wr, &ok, cfg.message_timeout).await?;
    // Messages arrive on their own task, so a verify digest finishing can
    // be answered between them (a read cut half-way would lose the stream).
    let (_reader, mut rx) = spawn_reader(rd, cfg.idle_timeout, 2);
    let mut answering: Option<Answering> = None;
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m {
                None => return Err(SessionError::Task("reader stopped".into())),
                Some(Err(WireError::Closed)) => return Ok(()),
                Some(other) => other?,
            },
            answer = Answering::finished(&mut answering) => {
                for m in &answer {
                    wire::write_message(&mut wr, m, cfg.message_timeout).await?;
                }
                continue;
            }
        };
        match msg {
            Message::Batch(b) | Message::BatchZstd(b) => {
                if b.vserver != vserver {
                    let text = format!("batch for {:?} in a session for {vserver:?}", b.vserver);
                    let _ = send_error(&mut wr, code::UNKNOWN_VSERVER, &text, cfg).await;
                    return Err(SessionError::Protocol(text));
                }
                let ours = store.epoch();
                if b.epoch < ours {
                    let text = format!("batch epoch {} is below ours ({ours})", b.epoch);
                    let _ = send_error(&mut wr, code::FENCED, &text, cfg).await;
                    return Err(SessionError::Fenced {
                        ours,
                        theirs: b.epoch,
                    });
                }
                let s = store.clone();
                let applied = tokio::task::spawn_blocking(move || s.apply_replicated(&b.frames))
                    .await
                    .map_err(|e| SessionError::Task(e.to_string()))?;
                match applied {
                    Ok(lsn) => {
                        let ack = Message::Ack(Ack::through(lsn));
                        wire::write_message(&mut wr, &ack, cfg.message_timeout).await?;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refusing replicated batch");
                        let _ = send_error(&mut wr, code_of(&e), &e.to_string(), cfg).await;
                        return Err(e.into());
                    }
                }
            }
            Message::Heartbeat { .. } => {
                let hb = Message::Heartbeat {
                    now_ms: now_unix_ms(),
                };
                wire::write_message(&mut wr, &hb, cfg.message_timeout).await?;
            }
            Message::Error { code, text } => return Err(SessionError::Peer { code, text }),
            Message::SwitchoverRequest(request) => {
                let promoted = crate::switchover::answer(
                    &store,
                    vserver,
                    &hello.site_id,
                    request,
                    promoter.as_ref(),
                    answering.is_some(),
                    &mut rx,
                    &mut wr,
                    cfg,
                )
                .await?;
                if promoted {
                    return Ok(());
                }
            }
            Message::VerifyRequest { lsn } => {
                let started = match answering {
                    Some(_) => Err(SessionError::Protocol(
                        "VerifyRequest while a verify is running".into(),
                    )),
                    None => Answering::start(&store, lsn).await,
                };
                match started {
                    Ok(a) => answering = Some(a),
                    Err(e) => {
                        let _ = send_error(&mut wr, code::INTERNAL, &e.to_string(), cfg).await;
                        return Err(e);
                    }
                }
            }
            other => {
                let text = format!("unexpected {} from the sender", other.kind());
                let _ = send_error(&mut wr, code::INTERNAL, &text, cfg).await;
                return Err(SessionError::Protocol(text));
            }
        }
    }
}
