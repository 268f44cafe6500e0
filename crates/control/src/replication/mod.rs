//! Replication as the daemon runs it: the site's replication settings
//! (`replication.toml`), one sender task per replicated vserver at the
//! active site, and the status both sides report.
//!
//! The wire session itself (Hello, batches, acks, fencing) is
//! `tandem_repl::session`; this module only connects, reconnects with
//! backoff, and keeps the figures `tandem status` shows.
//!
//! Before the session's Hello, the sender opens the same TLS connection
//! with the preface request `Replicate` (`tandem_repl::peer`), answered
//! with where the replica stands, or a refusal. It names the vserver (so
//! the replica site can open or create its replica store before the
//! session starts) and carries the replica address, for which Hello has no
//! field. Then `Transfer` says what follows: the session, or first a
//! catch-up (journal overflow) or a baseline (an empty replica whose
//! records this journal no longer holds; `tandem_repl::baseline`).

pub mod link;
pub mod options;
pub mod state;
pub mod verify;

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tandem_repl::baseline::{self, BaselineConfig};
use tandem_repl::peer::{Answer, Connection, Request};
use tandem_repl::session::{self, SendCounters, SessionConfig, SessionError};
use tandem_repl::switchover::SwitchoverAsk;
use tandem_repl::tls;
use tandem_repl::wire::{code, ReplicaAt, TransferKind};
use tandem_store::baseline::BaselineSnapshot;
use tandem_store::replica_sync::DEFAULT_SYNC_TIMEOUT_MS;
use tandem_store::{AddressSpec, Lsn, Store, StoreError, SyncMode, SyncPolicy};
use tokio::sync::{watch, Notify};

use crate::config::peers::Peer;
use crate::config::site::SitePaths;
use crate::error::{ControlError, Result};
use link::PeerTls;
pub use options::{Compress, Mode, OnLoss};
pub use state::ReplicationState;

/// replication.toml holds a few short entries per vserver.
pub const MAX_REPLICATION_TOML_BYTES: u64 = 256 * 1024;
/// First wait after a failed session; doubled after each failure.
pub const BACKOFF_MIN_MS: u64 = 100;
/// Longest wait between attempts (also the wait while a baseline is needed
/// or the peer refuses: retrying faster would not change the answer).
pub const BACKOFF_MAX_MS: u64 = 5_000;
/// A session that streamed at least this long resets the backoff.
pub const STABLE_SESSION_MS: u64 = 5_000;
/// How long each exchange of the Replicate preface may take, sent to
/// answered.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest error text kept in status.
const MAX_ERROR_CHARS: usize = 512;

/// Longest `sync_timeout_ms` accepted: past this a client has long given
/// up on the reply, so a larger figure is a mistake.
pub const MAX_SYNC_TIMEOUT_MS: u64 = 600_000;
/// `--max-lag-ms` range: an hour is already far past any RPO worth
/// throttling writers for.
pub const MAX_MAX_LAG_MS: u64 = 3_600_000;
/// `--bandwidth-mbps` range (100 Gbit/s is more than any link we run on).
pub const MAX_BANDWIDTH_MBPS: u32 = 100_000;
/// A streaming replica whose lag exceeds this (when no `--max-lag-ms` is
/// set) shows as "behind".
pub const DEFAULT_BEHIND_MS: u64 = 5_000;
/// Throughput is measured over this window, sampled every second.
pub const THROUGHPUT_WINDOW_S: usize = 10;

/// The active site's settings for one replicated vserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outgoing {
    /// Peer name (peers.toml).
    pub to: String,
    pub mode: Mode,
    /// "IP/PREFIX[@INTERFACE]" the replica site serves the copy on, read-only.
    #[serde(
        default,
        with = "crate::config::address_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub replica_address: Option<AddressSpec>,
    /// commit-sync and sync: how long a reply waits for the replica's ack
    /// before `on_replica_loss` applies (default DEFAULT_SYNC_TIMEOUT_MS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_timeout_ms: Option<u64>,
    /// commit-sync and sync: degrade (default) or block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_replica_loss: Option<OnLoss>,
    /// async: the age of the oldest unacknowledged record above which
    /// change replies wait for the replica (throttling writers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_ms: Option<u64>,
    /// Sender's wire bandwidth limit, megabits per second; none: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<u32>,
    /// zstd (default) or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
}

impl Outgoing {
    /// Settings to `to` in `mode` with every option at its default.
    pub fn new(to: impl Into<String>, mode: Mode) -> Self {
        Outgoing {
            to: to.into(),
            mode,
            replica_address: None,
            sync_timeout_ms: None,
            on_replica_loss: None,
            max_lag_ms: None,
            bandwidth_mbps: None,
            compress: None,
        }
    }

    /// The store's policy for these settings, once every option is
    /// within its range and means something in the mode.
    pub fn policy(&self) -> Result<SyncPolicy> {
        let mode = SyncMode::from(self.mode);
        let on_replica_loss = self.on_replica_loss.unwrap_or_default().into();
        let sync_timeout_ms = self.sync_timeout_ms.unwrap_or(DEFAULT_SYNC_TIMEOUT_MS);
        if sync_timeout_ms == 0 || sync_timeout_ms > MAX_SYNC_TIMEOUT_MS {
            return Err(ControlError::invalid(
                "sync timeout",
                format!("{sync_timeout_ms} ms is not within 1..={MAX_SYNC_TIMEOUT_MS} ms"),
            ));
        }
        self.check_options(mode)?;
        Ok(SyncPolicy {
            mode,
            sync_timeout_ms,
            on_replica_loss,
            max_lag_ms: self.max_lag_ms,
        })
    }

    /// The options that are not the mode's own: each within its range and
    /// only where it means something.
    fn check_options(&self, mode: SyncMode) -> Result<()> {
        let waits_in_async = self.max_lag_ms.is_some();
        if mode == SyncMode::Async
            && !waits_in_async
            && (self.sync_timeout_ms.is_some() || self.on_replica_loss.is_some())
        {
            return Err(ControlError::invalid(
                "replication mode",
                "--sync-timeout-ms and --on-replica-loss apply to commit-sync and sync only \
                 (or to async with --max-lag-ms)"
                    .to_string(),
            ));
        }
        if let Some(ms) = self.max_lag_ms {
            if mode != SyncMode::Async {
                return Err(ControlError::invalid(
                    "max lag",
                    "--max-lag-ms applies to async mode only (commit-sync and sync wait for \
                     the replica already)"
                        .to_string(),
                ));
            }
            if ms == 0 || ms > MAX_MAX_LAG_MS {
                return Err(ControlError::invalid(
                    "max lag",
                    format!("{ms} ms is not within 1..={MAX_MAX_LAG_MS} ms"),
                ));
            }
        }
        if let Some(mbps) = self.bandwidth_mbps {
            if mbps == 0 || mbps > MAX_BANDWIDTH_MBPS {
                return Err(ControlError::invalid(
                    "bandwidth",
                    format!("{mbps} Mbit/s is not within 1..={MAX_BANDWIDTH_MBPS}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether batches go zstd-compressed (the default).
    pub fn compresses(&self) -> bool {
        self.compress.unwrap_or_default() == Compress::Zstd
    }
}

/// The replica site's settings for one replica vserver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incoming {
    /// Site id of the site that sends it.
    pub from: String,
    #[serde(
        default,
        with = "crate::config::address_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub replica_address: Option<AddressSpec>,
}

/// replication.toml: what this site sends and what it keeps for others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub outgoing: BTreeMap<String, Outgoing>,
    #[serde(default)]
    pub incoming: BTreeMap<String, Incoming>,
}

/// Reads replication.toml; a missing file is no replication.
pub fn load(paths: &SitePaths) -> Result<Settings> {
    let path = paths.root.join("replication.toml");
    let bad = |reason: String| ControlError::SiteConfig {
        path: path.clone(),
        reason,
    };
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => return Err(ControlError::io(&path, e)),
    };
    if meta.len() > MAX_REPLICATION_TOML_BYTES {
        return Err(bad(format!(
            "larger than {MAX_REPLICATION_TOML_BYTES} bytes"
        )));
    }
    let text = fs::read_to_string(&path).map_err(|e| ControlError::io(&path, e))?;
    toml::from_str(&text).map_err(|e| bad(e.to_string()))
}

/// Writes replication.toml atomically (temporary file, fsync, rename,
/// directory fsync): a crash leaves the old settings or the new ones.
pub fn save(paths: &SitePaths, settings: &Settings) -> Result<()> {
    let path = paths.root.join("replication.toml");
    crate::config::toml_file::write_atomically(
        &path,
        "# Replication settings, written by the daemon (`tandem replicate`). See docs/operating.md.\n",
        settings,
    )
}

/// Replication as `tandem status` shows it under a vserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Peer the vserver is sent to (active site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Site id it comes from (replica site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub mode: Mode,
    pub state: ReplicationState,
    /// Highest LSN the replica acknowledged as applied (active site), or
    /// applied here (replica site).
    pub replica_lsn: Lsn,
    /// Records the replica lacks: last LSN here minus `replica_lsn`.
    pub lag_records: u64,
    /// Journal bytes the replica lacks (active site).
    #[serde(default)]
    pub lag_bytes: u64,
    /// Age of the oldest record the replica lacks, in ms: what a sudden
    /// loss of this site would lose now, in async mode (active site).
    #[serde(default)]
    pub lag_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the current session started streaming, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since_unix_ms: Option<u64>,
    #[serde(
        default,
        with = "crate::config::address_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub replica_address: Option<AddressSpec>,
    /// The last baseline's file bytes copied and to copy (active site),
    /// once one has started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_done_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_total_bytes: Option<u64>,
    /// commit-sync and sync (active site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_replica_loss: Option<OnLoss>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_timeout_ms: Option<u64>,
    /// The alert: replies currently go out without the replica's ack
    /// (commit-sync or sync degraded to async until the replica catches up).
    #[serde(default)]
    pub degraded: bool,
    /// Replies sent without the replica's ack since the vserver opened.
    #[serde(default)]
    pub degraded_replies: u64,
    /// `tandem replicate`'s options and the throughput figures.
    #[serde(flatten)]
    pub figures: ReplicationFigures,
    /// Journal overflow and catch-up (active site; docs/operating.md).
    #[serde(flatten)]
    pub overflow: OverflowFigures,
}

/// The replicate options in force and the sender's throughput (active
/// site; all zero or absent at a replica site).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationFigures {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_ms: Option<u64>,
    /// What a sudden loss of this site would lose now, in ms: the lag in
    /// async mode (or commit-sync/sync while degraded), 0 in commit-sync and
    /// sync otherwise (every reply that told a client its data was stable
    /// waited for the replica). UNSTABLE writes not yet committed are not
    /// counted in any mode: NFS clients resend them after a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rpo_ms: Option<u64>,
    /// Batch messages sent, bytes on the wire (after compression).
    #[serde(default)]
    pub sent_wire_bytes: u64,
    /// Journal bytes in those batches (before compression).
    #[serde(default)]
    pub sent_journal_bytes: u64,
    /// Journal bytes the replica acknowledged.
    #[serde(default)]
    pub acked_journal_bytes: u64,
    /// Over the last ~10 s: wire bytes sent per second.
    #[serde(default)]
    pub wire_bytes_per_second: u64,
    /// Over the last ~10 s: journal bytes acknowledged per second.
    #[serde(default)]
    pub acked_journal_bytes_per_second: u64,
    /// While a baseline runs: its rate and the time left at that rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_bytes_per_second: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_eta_s: Option<u64>,
}

/// The overflow part of `ReplicationStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverflowFigures {
    /// The replica LSN changes are tracked from while the store is in
    /// journal overflow (the replica gets a catch-up when it returns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_since_lsn: Option<Lsn>,
    /// Bytes a catch-up would send now (changed ranges, current sizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_changed_bytes: Option<u64>,
    /// Why the change map was lost: the replica then needs a baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_map_lost: Option<String>,
    /// The last catch-up: range bytes done and to do, and the file data
    /// bytes it sent (zero ranges cost none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catchup_done_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catchup_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catchup_sent_bytes: Option<u64>,
}

/// The sender's live figures, shared with status.
#[derive(Debug, Clone)]
pub struct SenderState {
    pub state: ReplicationState,
    pub replica_lsn: Lsn,
    /// Progress of the last baseline sent (file bytes copied, of total).
    pub baseline_done_bytes: Option<u64>,
    pub baseline_total_bytes: Option<u64>,
    pub last_error: Option<String>,
    pub connected_since_unix_ms: Option<u64>,
    /// The running baseline's progress watch, for its rate and ETA.
    pub baseline: Option<baseline::BaselineStatus>,
    pub counters: Arc<SendCounters>,
    /// The last catch-up (see `ReplicationStatus`).
    pub catchup: CatchupFigures,
}

/// Progress of the last catch-up sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchupFigures {
    pub done_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub sent_bytes: Option<u64>,
}

/// One throughput sample: when, sent wire bytes, acked journal bytes.
type Sample = (Instant, u64, u64);

/// Samples the sender's counters once a second, keeping the last window.
async fn sample_throughput(counters: Arc<SendCounters>, samples: Arc<Mutex<VecDeque<Sample>>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (wire, _, acked) = counters.read();
        let mut g = samples.lock();
        g.push_back((Instant::now(), wire, acked));
        while g.len() > THROUGHPUT_WINDOW_S + 1 {
            g.pop_front();
        }
    }
}

/// (wire bytes/s, acked journal bytes/s) between the oldest and newest
/// samples.
fn throughput(samples: &VecDeque<Sample>) -> (u64, u64) {
    let (Some(a), Some(b)) = (samples.front(), samples.back()) else {
        return (0, 0);
    };
    let secs = b.0.saturating_duration_since(a.0).as_secs_f64();
    if secs <= 0.0 {
        return (0, 0);
    }
    let per_s = |x: u64, y: u64| (y.saturating_sub(x) as f64 / secs) as u64;
    (per_s(a.1, b.1), per_s(a.2, b.2))
}

/// The state `tandem status` shows: streaming turns behind when the lag
/// is over max_lag_ms (or DEFAULT_BEHIND_MS without one).
fn shown_state(state: ReplicationState, lag_ms: u64, max_lag_ms: Option<u64>) -> ReplicationState {
    if state == ReplicationState::Streaming && lag_ms > max_lag_ms.unwrap_or(DEFAULT_BEHIND_MS) {
        ReplicationState::Behind
    } else {
        state
    }
}

/// Baseline and catch-up settings from the vserver's options: the
/// bandwidth limit applies to the bulk copies too.
fn copy_config(settings: &Outgoing) -> BaselineConfig {
    BaselineConfig {
        max_bytes_per_s: settings
            .bandwidth_mbps
            .map(tandem_repl::throttle::mbps_to_bytes_per_s),
        ..BaselineConfig::default()
    }
}

/// The session settings for one attempt from the vserver's options.
fn session_config(
    own_id: String,
    settings: &Outgoing,
    shared: &Mutex<SenderState>,
) -> SessionConfig {
    let mut cfg = SessionConfig::new(own_id);
    cfg.compress = settings.compresses();
    cfg.max_bytes_per_s = settings
        .bandwidth_mbps
        .map(tandem_repl::throttle::mbps_to_bytes_per_s);
    cfg.counters = shared.lock().counters.clone();
    cfg
}

/// One replicated vserver's sender: its task and its status.
pub struct Sender {
    pub settings: Outgoing,
    store: Arc<Store>,
    shared: Arc<Mutex<SenderState>>,
    task: tokio::task::JoinHandle<()>,
    /// Verify asks for the running session (`tandem verify`).
    verify: tokio::sync::mpsc::Sender<tandem_repl::verify::VerifyAsk>,
    /// Switchover asks for the running session (`tandem switchover`).
    switchover: tokio::sync::mpsc::Sender<SwitchoverAsk>,
    samples: Arc<Mutex<VecDeque<Sample>>>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Sender {
    pub fn verifier(&self) -> crate::replication::verify::Verifier {
        crate::replication::verify::Verifier {
            asks: self.verify.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Where `tandem switchover` hands its ask to the running session.
    pub fn switchover_asks(&self) -> tokio::sync::mpsc::Sender<SwitchoverAsk> {
        self.switchover.clone()
    }

    pub fn status(&self, store: &Store) -> ReplicationStatus {
        let s = self.shared.lock().clone();
        let synchronous = self.settings.mode.is_synchronous();
        let policy = store.sync_policy();
        let (degraded, degraded_replies) = store.replication_degraded();
        let lag = store.lag_behind(s.replica_lsn);
        let overflow = store.overflow_status();
        // While the replica is away and changes are tracked for it.
        let away = !matches!(
            s.state,
            ReplicationState::Streaming | ReplicationState::Baseline | ReplicationState::CatchUp
        );
        let state = match &overflow {
            Some(o) if away && o.map_lost.is_none() => ReplicationState::Overflow,
            _ => s.state,
        };
        let figures = self.figures(&s, lag.oldest_unacked_ms, degraded);
        ReplicationStatus {
            to: Some(self.settings.to.clone()),
            from: None,
            mode: self.settings.mode,
            state: shown_state(state, lag.oldest_unacked_ms, self.settings.max_lag_ms),
            replica_lsn: s.replica_lsn,
            lag_records: lag.records,
            lag_bytes: lag.bytes,
            lag_ms: lag.oldest_unacked_ms,
            last_error: s.last_error,
            connected_since_unix_ms: s.connected_since_unix_ms,
            replica_address: self.settings.replica_address.clone(),
            baseline_done_bytes: s.baseline_done_bytes,
            baseline_total_bytes: s.baseline_total_bytes,
            on_replica_loss: synchronous.then(|| policy.on_replica_loss.into()),
            sync_timeout_ms: synchronous.then_some(policy.sync_timeout_ms),
            degraded,
            degraded_replies,
            overflow: OverflowFigures {
                overflow_since_lsn: overflow
                    .as_ref()
                    .filter(|o| o.map_lost.is_none())
                    .map(|o| o.since_lsn),
                overflow_changed_bytes: overflow.as_ref().map(|o| o.changed_bytes),
                overflow_map_lost: overflow.and_then(|o| o.map_lost),
                catchup_done_bytes: s.catchup.done_bytes,
                catchup_total_bytes: s.catchup.total_bytes,
                catchup_sent_bytes: s.catchup.sent_bytes,
            },
            figures,
        }
    }

    fn figures(&self, s: &SenderState, lag_ms: u64, degraded: bool) -> ReplicationFigures {
        let (sent_wire_bytes, sent_journal_bytes, acked_journal_bytes) = s.counters.read();
        let (wire_bytes_per_second, acked_journal_bytes_per_second) =
            throughput(&self.samples.lock());
        let baseline = s
            .baseline
            .filter(|b| s.state == ReplicationState::Baseline && !b.finished);
        let synchronous = self.settings.mode.is_synchronous();
        ReplicationFigures {
            compress: Some(self.settings.compress.unwrap_or_default()),
            bandwidth_mbps: self.settings.bandwidth_mbps,
            max_lag_ms: self.settings.max_lag_ms,
            estimated_rpo_ms: Some(if synchronous && !degraded { 0 } else { lag_ms }),
            sent_wire_bytes,
            sent_journal_bytes,
            acked_journal_bytes,
            wire_bytes_per_second,
            acked_journal_bytes_per_second,
            baseline_bytes_per_second: baseline
                .and_then(|b| b.rate_bytes_per_sec())
                .map(|r| r as u64),
            baseline_eta_s: baseline.and_then(|b| b.eta()).map(|d| d.as_secs()),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Ends the task; the session's connection closes with it. Replies no
    /// longer wait for a replica nothing sends to.
    pub async fn stop(self) {
        self.store.set_replication_mode(SyncPolicy::default());
        self.task.abort();
        self.sampler.abort();
        // A JoinError here is the abort itself.
        let _ = self.task.await;
        let _ = self.sampler.await;
    }
}

/// The asks a sender's sessions take: verifies and switchovers.
type Asks = (
    tokio::sync::mpsc::Receiver<tandem_repl::verify::VerifyAsk>,
    tokio::sync::mpsc::Receiver<SwitchoverAsk>,
);

/// Where the sender finds its peer each attempt (the list may change).
pub type PeerLookup = Arc<dyn Fn(&str) -> Option<Peer> + Send + Sync>;

/// Starts the sender for `vserver`, and makes the store's replies wait by
/// its mode (checked by the caller: `Outgoing::policy`).
pub fn start_sender(
    vserver: String,
    store: Arc<Store>,
    settings: Outgoing,
    policy: SyncPolicy,
    tls: PeerTls,
    peers: PeerLookup,
    fenced: Arc<Notify>,
) -> Sender {
    store.set_replication_mode(policy);
    store.keep_journal_for_replica();
    let counters = Arc::new(SendCounters::default());
    let shared = Arc::new(Mutex::new(SenderState {
        state: ReplicationState::Connecting,
        replica_lsn: 0,
        baseline_done_bytes: None,
        baseline_total_bytes: None,
        last_error: None,
        connected_since_unix_ms: None,
        baseline: None,
        counters: counters.clone(),
        catchup: CatchupFigures::default(),
    }));
    let (verify, verify_rx) = crate::replication::verify::channel();
    let (switchover, switchover_rx) =
        tokio::sync::mpsc::channel(tandem_repl::switchover::MAX_QUEUED_SWITCHOVER_ASKS);
    let samples = Arc::new(Mutex::new(VecDeque::new()));
    let sampler = tokio::spawn(sample_throughput(counters, samples.clone()));
    let task = tokio::spawn(run_sender(
        vserver,
        store.clone(),
        settings.clone(),
        tls,
        peers,
        shared.clone(),
        (verify_rx, switchover_rx),
        fenced,
    ));
    Sender {
        settings,
        store,
        shared,
        task,
        verify,
        switchover,
        samples,
        sampler,
    }
}

/// Up to a quarter of `ms` added, from the clock's nanoseconds: enough to
/// keep many senders from retrying in step, without a random generator.
fn jittered(ms: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    let extra = nanos % (ms / 4 + 1);
    Duration::from_millis(ms + extra)
}

fn short(text: String) -> String {
    if text.chars().count() <= MAX_ERROR_CHARS {
        text
    } else {
        text.chars().take(MAX_ERROR_CHARS).collect()
    }
}

fn update(shared: &Mutex<SenderState>, f: impl FnOnce(&mut SenderState)) {
    f(&mut shared.lock());
}

/// A replica that refused a batch for lack of room closes the session
/// right after its answer, so the next attempts often end on a broken
/// pipe before that answer is read. Until the replica takes a batch, such
/// endings still show `stalled` with the replica's reason.
#[derive(Default)]
struct Stall {
    /// The replica's LSN when it said it was full, and what it said.
    since: Option<(Lsn, String)>,
}

impl Stall {
    fn seen(
        &mut self,
        state: ReplicationState,
        error: String,
        replica_lsn: Lsn,
    ) -> (ReplicationState, String) {
        if state == ReplicationState::Stalled {
            self.since = Some((replica_lsn, error.clone()));
            return (state, error);
        }
        match &self.since {
            Some((lsn, why)) if *lsn == replica_lsn && state == ReplicationState::Disconnected => (
                ReplicationState::Stalled,
                format!("{why}; since then: {error}"),
            ),
            _ => {
                self.since = None;
                (state, error)
            }
        }
    }
}

/// What one attempt ended with, and how the next should wait.
enum Outcome {
    /// Retry with the growing backoff.
    Retry {
        state: ReplicationState,
        error: String,
    },
    /// Retry only slowly: the same answer is likely for a while.
    Slow {
        state: ReplicationState,
        error: String,
    },
}

/// `fenced` is notified when an attempt leaves the store fenced: the
/// daemon then stops serving the vserver and releases its addresses
/// (fence_watch.rs), since a peer holds them at a higher epoch.
#[allow(clippy::too_many_arguments)]
async fn run_sender(
    vserver: String,
    store: Arc<Store>,
    settings: Outgoing,
    tls: PeerTls,
    peers: PeerLookup,
    shared: Arc<Mutex<SenderState>>,
    mut asks: Asks,
    fenced: Arc<Notify>,
) {
    let mut backoff_ms = BACKOFF_MIN_MS;
    // Kept across attempts so a broken baseline resumes (the replica
    // resumes only the same snapshot); dropped once one is installed.
    let mut snapshot: Option<Arc<BaselineSnapshot>> = None;
    let mut stall = Stall::default();
    loop {
        update(&shared, |s| {
            s.state = ReplicationState::Connecting;
            s.connected_since_unix_ms = None;
        });
        let started = Instant::now();
        let outcome = attempt(
            &vserver,
            &store,
            &settings,
            &tls,
            &peers,
            &shared,
            &mut snapshot,
            &mut asks,
        )
        .await;
        if store.fenced_by().is_some() {
            fenced.notify_one();
        }
        // Asks still queued were for the session that just ended: dropping
        // them answers their callers now, not at their timeout.
        while asks.0.try_recv().is_ok() {}
        while asks.1.try_recv().is_ok() {}
        let streamed_long = started.elapsed() >= Duration::from_millis(STABLE_SESSION_MS);
        if streamed_long {
            backoff_ms = BACKOFF_MIN_MS;
        }
        let (state, error, wait_ms) = match outcome {
            Outcome::Retry { state, error } => (state, error, backoff_ms),
            Outcome::Slow { state, error } => (state, error, BACKOFF_MAX_MS),
        };
        let (state, error) = stall.seen(state, error, shared.lock().replica_lsn);
        tracing::warn!(vserver = %vserver, to = %settings.to, %state, error = %error, retry_in_ms = wait_ms, "replication session ended");
        update(&shared, |s| {
            s.state = state;
            s.last_error = Some(short(error));
            s.connected_since_unix_ms = None;
        });
        tokio::time::sleep(jittered(wait_ms)).await;
        backoff_ms = (backoff_ms.saturating_mul(2)).min(BACKOFF_MAX_MS);
    }
}

/// What one attempt needs and what outlives it (the baseline snapshot,
/// the asks).
struct Attempt<'a> {
    vserver: &'a str,
    store: &'a Arc<Store>,
    settings: &'a Outgoing,
    peer_tls: &'a PeerTls,
    shared: &'a Arc<Mutex<SenderState>>,
}

/// The connection during its preface, before the session takes it.
type PeerConn = Connection<Box<dyn PeerStream>>;

/// A TLS stream to a peer, boxed so the phases below share one type.
trait PeerStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> PeerStream for T {}

/// One attempt: connect, the Replicate preface, a catch-up or a baseline
/// if the replica needs one, then the streaming session until it ends.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    vserver: &str,
    store: &Arc<Store>,
    settings: &Outgoing,
    peer_tls: &PeerTls,
    peers: &PeerLookup,
    shared: &Arc<Mutex<SenderState>>,
    snapshot: &mut Option<Arc<BaselineSnapshot>>,
    asks: &mut Asks,
) -> Outcome {
    let a = Attempt {
        vserver,
        store,
        settings,
        peer_tls,
        shared,
    };
    let run = async {
        let peer = a.peer(peers)?;
        let mut conn = a.connect(&peer).await?;
        let replica = a.preface(&peer, &mut conn).await?;
        a.bring_up_to_date(&peer, &mut conn, replica, snapshot)
            .await?;
        Ok::<_, Outcome>(a.stream(&peer, conn.into_inner(), asks).await)
    };
    match run.await {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

impl Attempt<'_> {
    /// The peer to send to, unless this store must not send at all.
    fn peer(&self, peers: &PeerLookup) -> std::result::Result<Peer, Outcome> {
        if self.store.is_replica() {
            // Demoted by a switchover: the vserver is active at the peer
            // now, and connecting would only get this store fenced.
            return Err(Outcome::Slow {
                state: ReplicationState::SwitchedOver,
                error: format!("{} is a replica here now (switched over)", self.vserver),
            });
        }
        peers(&self.settings.to).ok_or_else(|| Outcome::Slow {
            state: ReplicationState::Disconnected,
            error: format!(
                "peer {} is not paired (see `tandem peer list`)",
                self.settings.to
            ),
        })
    }

    async fn connect(&self, peer: &Peer) -> std::result::Result<PeerConn, Outcome> {
        match link::dial(peer, self.peer_tls).await {
            Ok(s) => Ok(Connection::new(Box::new(s), PREFACE_TIMEOUT)),
            // This site's own identity is unusable: retrying soon will not help.
            Err(e @ ControlError::Identity(_)) => Err(Outcome::Slow {
                state: ReplicationState::Disconnected,
                error: e.to_string(),
            }),
            Err(e) => Err(disconnected(e.to_string())),
        }
    }

    /// Replicate: where the replica stands, or why the attempt ends (a
    /// peer where the vserver is active at a higher epoch fences us).
    async fn preface(
        &self,
        peer: &Peer,
        conn: &mut PeerConn,
    ) -> std::result::Result<ReplicaAt, Outcome> {
        let (vserver, store) = (self.vserver, self.store);
        let request = Request::Replicate {
            vserver: vserver.to_string(),
            replica_address: self
                .settings
                .replica_address
                .as_ref()
                .map(ToString::to_string),
        };
        let answer = conn.request(request).await.map_err(|e| {
            let error = match e.io().and_then(tls::alert_of) {
                Some(alert) => format!(
                    "peer {} refused this site (id {}) with TLS alert {alert}; is this site paired there?",
                    peer.name, self.peer_tls.own_id
                ),
                None => format!("peer {}: the Replicate preface: {e}", peer.name),
            };
            disconnected(error)
        })?;
        match answer {
            Answer::Replicate(at) => Ok(at),
            Answer::ActiveHere { epoch: theirs, .. } if theirs > store.epoch() => {
                // The peer was promoted (failover): this site must take no
                // more writes for the vserver ("One writer per epoch").
                if let Err(e) = store.fence(theirs) {
                    tracing::error!(vserver, error = %e, "could not fence the store");
                }
                Err(Outcome::Slow {
                    state: ReplicationState::Fenced,
                    error: format!(
                        "peer {} holds {vserver} active at epoch {theirs}, above ours; this store is fenced",
                        peer.name
                    ),
                })
            }
            // The replica still runs the previous session (it ends at its
            // idle timeout): worth retrying soon.
            Answer::Refused { code: c, reason } if c == code::BUSY => {
                Err(disconnected(format!("peer {}: BUSY: {reason}", peer.name)))
            }
            Answer::ActiveHere { reason, .. } | Answer::Refused { reason, .. } => {
                Err(Outcome::Slow {
                    state: ReplicationState::Refused,
                    error: format!(
                        "peer {} refused to replicate {vserver}: {reason}",
                        peer.name
                    ),
                })
            }
            other => Err(disconnected(format!(
                "peer {}: unexpected answer to Replicate: {other:?}",
                peer.name
            ))),
        }
    }

    /// Streams from the replica's LSN if the journal still holds what
    /// follows it; else a catch-up (journal overflow) or a baseline (an
    /// empty replica). Tells the replica which with `Transfer`.
    async fn bring_up_to_date(
        &self,
        peer: &Peer,
        conn: &mut PeerConn,
        replica: ReplicaAt,
        snapshot: &mut Option<Arc<BaselineSnapshot>>,
    ) -> std::result::Result<(), Outcome> {
        let oldest = self
            .store
            .oldest_retained_lsn()
            .map_err(|e| disconnected(format!("reading the journal: {e}")))?;
        let behind_journal = replica.lsn.saturating_add(1) < oldest;
        if behind_journal && !replica.unfinished_baseline {
            let cfg = copy_config(self.settings);
            if catch_up(self, peer, conn, replica.lsn, &cfg).await? {
                return Ok(());
            }
        }
        if replica.unfinished_baseline || behind_journal {
            return self.baseline(peer, conn, replica, oldest, snapshot).await;
        }
        announce(conn, peer, TransferKind::Stream).await
    }

    /// A baseline into an empty replica, resuming the kept snapshot.
    async fn baseline(
        &self,
        peer: &Peer,
        conn: &mut PeerConn,
        replica: ReplicaAt,
        oldest: Lsn,
        snapshot: &mut Option<Arc<BaselineSnapshot>>,
    ) -> std::result::Result<(), Outcome> {
        let (vserver, store, shared) = (self.vserver, self.store, self.shared);
        if replica.lsn != 0 {
            return Err(Outcome::Slow {
                state: ReplicationState::NeedsBaseline,
                error: format!(
                    "the replica at {} holds LSN {}, but this journal starts at LSN {oldest}; \
                     a baseline needs an empty replica (remove {vserver} there)",
                    peer.name, replica.lsn
                ),
            });
        }
        update(shared, |s| s.state = ReplicationState::Baseline);
        let snap = match snapshot.clone() {
            Some(s) => s,
            None => {
                let st = store.clone();
                let s = match tokio::task::spawn_blocking(move || st.baseline_begin()).await {
                    Ok(Ok(s)) => Arc::new(s),
                    Ok(Err(e)) => return Err(disconnected(format!("starting a baseline: {e}"))),
                    Err(e) => return Err(disconnected(format!("starting a baseline: {e}"))),
                };
                *snapshot = Some(s.clone());
                s
            }
        };
        tracing::info!(vserver, to = %peer.name, lsn = snap.lsn, bytes = snap.total_bytes, "sending baseline");
        announce(conn, peer, TransferKind::Baseline).await?;
        let cfg = copy_config(self.settings);
        let (ptx, prx) = watch::channel(baseline::BaselineStatus::default());
        let sending =
            baseline::send_baseline(conn.get_mut(), store.clone(), snap, &cfg, Some(&ptx));
        let result = watch_progress(sending, prx, shared, |s, p| {
            s.baseline_done_bytes = Some(p.done_bytes);
            s.baseline_total_bytes = Some(p.total_bytes);
            s.baseline = Some(p);
        })
        .await;
        let lsn = result.map_err(|e| disconnected(format!("baseline to {}: {e}", peer.name)))?;
        *snapshot = None;
        store.set_replica_acked(lsn);
        update(shared, |s| s.replica_lsn = lsn);
        tracing::info!(vserver, to = %peer.name, lsn, "baseline installed at the replica");
        Ok(())
    }

    /// The streaming session, with the figures kept as acks arrive.
    async fn stream(&self, peer: &Peer, stream: Box<dyn PeerStream>, asks: &mut Asks) -> Outcome {
        let (vserver, store, shared) = (self.vserver, self.store, self.shared);
        let (tx, mut rx) = watch::channel::<Lsn>(0);
        let cfg = session_config(self.peer_tls.own_id.clone(), self.settings, shared);
        let opts = session::SendOptions {
            acked: Some(tx),
            verify: Some(&mut asks.0),
            switchover: Some(&mut asks.1),
        };
        let session = session::send(store.clone(), stream, &cfg, opts);
        tokio::pin!(session);
        let mut streaming = false;
        let result = loop {
            tokio::select! {
                r = &mut session => break r,
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The sender half lives in the session; it ends with it.
                        continue;
                    }
                    let lsn = *rx.borrow_and_update();
                    self.on_acked(peer, lsn, !streaming);
                    streaming = true;
                }
            }
        };
        if let Err(SessionError::Fenced { theirs, .. }) = &result {
            // "One writer per epoch": another site was promoted; stop taking writes here
            // at once (NFS answers ROFS until the daemon stops serving it).
            if let Err(e) = store.fence(*theirs) {
                tracing::error!(vserver, error = %e, "could not fence the store");
            }
        }
        classify(result, peer)
    }

    /// The replica acknowledged `lsn`; `first` of this session.
    fn on_acked(&self, peer: &Peer, lsn: Lsn, first: bool) {
        let (vserver, store) = (self.vserver, self.store);
        // Replies waiting in commit-sync or sync mode go on from here.
        store.set_replica_acked(lsn);
        update(self.shared, |s| {
            s.replica_lsn = lsn;
            if first {
                s.state = ReplicationState::Streaming;
                s.last_error = None;
                s.connected_since_unix_ms = Some(tandem_store::now_unix_ms());
            }
        });
        if !first {
            return;
        }
        tracing::info!(vserver, to = %peer.name, replica_lsn = lsn, "replication streaming");
        if store.in_overflow() {
            // Streaming from the kept journal: the change map is no
            // longer needed.
            let st = store.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = st.catchup_finished(lsn) {
                    tracing::error!(error = %e, "could not leave journal overflow");
                }
            });
        }
    }
}

/// Sends a catch-up if the store is in journal overflow covering the
/// replica at `replica_lsn` (`Transfer(Catchup)`, then `tandem_repl::catchup`).
/// `Ok(false)`: no catch-up possible (a baseline question follows);
/// `Ok(true)`: the replica is at the catch-up LSN, stream from there.
async fn catch_up(
    a: &Attempt<'_>,
    peer: &Peer,
    conn: &mut PeerConn,
    replica_lsn: Lsn,
    cfg: &BaselineConfig,
) -> std::result::Result<bool, Outcome> {
    let (vserver, store, shared) = (a.vserver, a.store, a.shared);
    let st = store.clone();
    let snap = match tokio::task::spawn_blocking(move || st.catchup_begin(replica_lsn)).await {
        Ok(Ok(s)) => Arc::new(s),
        Ok(Err(StoreError::CatchupUnavailable(why))) => {
            tracing::info!(vserver, replica_lsn, %why, "no catch-up for the replica");
            return Ok(false);
        }
        Ok(Err(e)) => return Err(disconnected(format!("starting a catch-up: {e}"))),
        Err(e) => return Err(disconnected(format!("starting a catch-up: {e}"))),
    };
    update(shared, |s| {
        s.state = ReplicationState::CatchUp;
        s.catchup = CatchupFigures {
            done_bytes: Some(0),
            total_bytes: Some(snap.total_bytes),
            sent_bytes: None,
        };
    });
    tracing::info!(vserver, to = %peer.name, replica_lsn, lsn = snap.lsn, bytes = snap.total_bytes, "sending catch-up");
    announce(conn, peer, TransferKind::Catchup).await?;
    let (ptx, prx) = watch::channel(baseline::BaselineStatus::default());
    let sending =
        tandem_repl::catchup::send_catchup(conn.get_mut(), store.clone(), snap, cfg, Some(&ptx));
    let result = watch_progress(sending, prx, shared, |s, p| {
        s.catchup.done_bytes = Some(p.done_bytes)
    })
    .await;
    let sent = result.map_err(|e| disconnected(format!("catch-up to {}: {e}", peer.name)))?;
    let st = store.clone();
    let lsn = sent.lsn;
    match tokio::task::spawn_blocking(move || st.catchup_finished(lsn)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(vserver, error = %e, "could not leave journal overflow"),
        Err(e) => tracing::error!(vserver, error = %e, "could not leave journal overflow"),
    }
    store.set_replica_acked(sent.lsn);
    update(shared, |s| {
        s.replica_lsn = sent.lsn;
        s.catchup.done_bytes = s.catchup.total_bytes;
        s.catchup.sent_bytes = Some(sent.data_bytes);
    });
    tracing::info!(vserver, to = %peer.name, lsn = sent.lsn, data_bytes = sent.data_bytes, "catch-up installed at the replica");
    Ok(true)
}

/// Tells the replica which transfer follows.
async fn announce(
    conn: &mut PeerConn,
    peer: &Peer,
    kind: TransferKind,
) -> std::result::Result<(), Outcome> {
    conn.send(Request::Transfer(kind))
        .await
        .map_err(|e| disconnected(format!("peer {}: {e}", peer.name)))
}

/// Runs a transfer (baseline or catch-up), handing each progress update to
/// `apply` on the shared state while it runs.
async fn watch_progress<T>(
    transfer: impl std::future::Future<Output = T>,
    mut progress: watch::Receiver<baseline::BaselineStatus>,
    shared: &Arc<Mutex<SenderState>>,
    apply: impl Fn(&mut SenderState, baseline::BaselineStatus),
) -> T {
    tokio::pin!(transfer);
    loop {
        tokio::select! {
            r = &mut transfer => return r,
            changed = progress.changed() => {
                if changed.is_err() {
                    continue;
                }
                let p = *progress.borrow_and_update();
                update(shared, |s| apply(s, p));
            }
        }
    }
}

fn disconnected(error: String) -> Outcome {
    Outcome::Retry {
        state: ReplicationState::Disconnected,
        error,
    }
}

fn classify(result: std::result::Result<(), SessionError>, peer: &Peer) -> Outcome {
    let e = match result {
        Ok(()) => {
            return Outcome::Retry {
                state: ReplicationState::Disconnected,
                error: format!("peer {} closed the session", peer.name),
            }
        }
        Err(e) => e,
    };
    match &e {
        SessionError::Store(StoreError::NotRetained { .. }) => Outcome::Slow {
            state: ReplicationState::NeedsBaseline,
            error: format!(
                "{e}: the replica needs records this site's journal no longer holds, \
                 and holds records itself, so no baseline can be sent into it \
                 (remove the replica at the peer to take a new baseline)"
            ),
        },
        SessionError::Refused { code: c, .. } | SessionError::Peer { code: c, .. }
            if *c == code::NOT_RETAINED =>
        {
            Outcome::Slow {
                state: ReplicationState::NeedsBaseline,
                error: e.to_string(),
            }
        }
        // The replica's disk is full: worth trying again, not a refusal
        // of this site; the replica says so in its own status and log.
        SessionError::Peer { code: c, .. } if *c == code::NO_SPACE => Outcome::Retry {
            state: ReplicationState::Stalled,
            error: format!("the replica at {} has no room on its disk: {e}", peer.name),
        },
        SessionError::Refused { code: c, .. } if *c == code::BUSY => Outcome::Retry {
            state: ReplicationState::Disconnected,
            error: e.to_string(),
        },
        SessionError::Refused { .. } | SessionError::Fenced { .. } => Outcome::Slow {
            state: ReplicationState::Refused,
            error: e.to_string(),
        },
        _ => Outcome::Retry {
            state: ReplicationState::Disconnected,
            error: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_outlives_broken_pipes_until_the_replica_moves() {
        use ReplicationState::*;
        let mut stall = Stall::default();
        let (st, _) = stall.seen(Stalled, "no room".into(), 61);
        assert_eq!(st, Stalled);
        let (st, error) = stall.seen(Disconnected, "Broken pipe".into(), 61);
        assert_eq!(st, Stalled);
        assert!(
            error.starts_with("no room; since then: Broken pipe"),
            "{error}"
        );
        // The replica took a batch: what ends the next attempt is news.
        let (st, error) = stall.seen(Disconnected, "Broken pipe".into(), 70);
        assert_eq!((st, error.as_str()), (Disconnected, "Broken pipe"));
        let (st, _) = stall.seen(Disconnected, "reset".into(), 70);
        assert_eq!(st, Disconnected);
    }

    #[test]
    fn a_full_replica_stalls_replication_and_is_retried() {
        let peer = Peer {
            name: "dr".into(),
            addr: "127.0.0.1:1".into(),
            id: "ab".into(),
        };
        let full = Err(SessionError::Peer {
            code: code::NO_SPACE,
            text: "no room on the disk: the change needs 5 bytes".into(),
        });
        match classify(full, &peer) {
            Outcome::Retry { state, error } => {
                assert_eq!(state, ReplicationState::Stalled);
                assert!(error.contains("the replica at dr has no room"), "{error}");
            }
            Outcome::Slow { .. } => panic!("a full replica is retried with the usual backoff"),
        }
    }

    #[test]
    fn settings_round_trip_and_bad_file() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = SitePaths::new(tmp.path());
        assert_eq!(load(&paths).unwrap(), Settings::default());
        let mut s = Settings::default();
        s.outgoing.insert(
            "vs".into(),
            Outgoing {
                to: "beta".into(),
                mode: Mode::CommitSync,
                replica_address: Some(crate::config::names::parse_address("127.0.0.9/32").unwrap()),
                sync_timeout_ms: Some(700),
                on_replica_loss: Some(OnLoss::Block),
                max_lag_ms: None,
                bandwidth_mbps: Some(100),
                compress: Some(Compress::None),
            },
        );
        s.incoming.insert(
            "other".into(),
            Incoming {
                from: "ab".into(),
                replica_address: None,
            },
        );
        save(&paths, &s).unwrap();
        assert_eq!(load(&paths).unwrap(), s);
        let p = s.outgoing["vs"].policy().unwrap();
        assert_eq!(p.mode, SyncMode::CommitSync);
        assert_eq!(p.sync_timeout_ms, 700);
        assert_eq!(p.on_replica_loss, tandem_store::OnReplicaLoss::Block);
        let mut bad = s.outgoing["vs"].clone();
        bad.sync_timeout_ms = Some(0);
        assert!(bad.policy().is_err());
        for (text, needle) in [
            ("[outgoing.vs]\nto = 1\n", "replication.toml"),
            (
                "[outgoing.vs]\nto = \"b\"\nmode = \"eventually\"\n",
                "replication mode \"eventually\" is not one of async, commit-sync, sync",
            ),
            (
                "[outgoing.vs]\nto = \"b\"\nmode = \"sync\"\non_replica_loss = \"shrug\"\n",
                "on-replica-loss \"shrug\" is not one of degrade, block",
            ),
            (
                "[outgoing.vs]\nto = \"b\"\nmode = \"async\"\ncompress = \"lz4\"\n",
                "compress \"lz4\" is not one of zstd, none",
            ),
            (
                "[outgoing.vs]\nto = \"b\"\nmode = \"async\"\nreplica_address = \"1.2.3\"\n",
                "invalid address",
            ),
            (
                "[incoming.vs]\nfrom = \"ab\"\nreplica_address = \"0.0.0.0/0\"\n",
                "invalid address",
            ),
        ] {
            fs::write(tmp.path().join("replication.toml"), text).unwrap();
            let e = load(&paths).unwrap_err().to_string();
            assert!(e.contains("replication.toml"), "{e}");
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    /// A replication.toml as the daemon wrote it before these settings were
    /// typed: read to the same settings, and written back byte for byte.
    #[test]
    fn an_older_file_reads_and_writes_back_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = SitePaths::new(tmp.path());
        let old = "# Replication settings, written by the daemon (`tandem replicate`). See docs/operating.md.\n\
            [outgoing.a]\n\
            to = \"beta\"\n\
            mode = \"commit-sync\"\n\
            replica_address = \"10.1.2.3/24@eth0\"\n\
            sync_timeout_ms = 700\n\
            on_replica_loss = \"block\"\n\
            compress = \"none\"\n\
            \n\
            [outgoing.b]\n\
            to = \"beta\"\n\
            mode = \"async\"\n\
            max_lag_ms = 100\n\
            bandwidth_mbps = 10\n\
            compress = \"zstd\"\n\
            \n\
            [outgoing.c]\n\
            to = \"gamma\"\n\
            mode = \"sync\"\n\
            on_replica_loss = \"degrade\"\n\
            \n\
            [incoming.d]\n\
            from = \"ab12\"\n\
            replica_address = \"127.0.0.9/32\"\n";
        fs::write(tmp.path().join("replication.toml"), old).unwrap();
        let s = load(&paths).unwrap();
        let a = &s.outgoing["a"];
        assert_eq!(a.mode, Mode::CommitSync);
        assert_eq!(a.on_replica_loss, Some(OnLoss::Block));
        assert_eq!(a.compress, Some(Compress::None));
        let address = a.replica_address.as_ref().unwrap();
        assert_eq!(address.interface.as_deref(), Some("eth0"));
        assert_eq!(address.prefix, 24);
        assert_eq!(s.outgoing["b"].compress, Some(Compress::Zstd));
        assert_eq!(s.outgoing["c"].on_replica_loss, Some(OnLoss::Degrade));
        assert_eq!(
            s.incoming["d"]
                .replica_address
                .as_ref()
                .map(ToString::to_string),
            Some("127.0.0.9/32".to_string())
        );
        save(&paths, &s).unwrap();
        let back = fs::read_to_string(tmp.path().join("replication.toml")).unwrap();
        assert_eq!(back, old);
    }

    fn outgoing(mode: Mode) -> Outgoing {
        Outgoing {
            to: "beta".into(),
            mode,
            replica_address: None,
            sync_timeout_ms: None,
            on_replica_loss: None,
            max_lag_ms: None,
            bandwidth_mbps: None,
            compress: None,
        }
    }

    #[test]
    fn replicate_options_are_checked() {
        let ok = Outgoing {
            max_lag_ms: Some(MAX_MAX_LAG_MS),
            bandwidth_mbps: Some(MAX_BANDWIDTH_MBPS),
            compress: Some(Compress::None),
            on_replica_loss: Some(OnLoss::Block),
            ..outgoing(Mode::Async)
        };
        let p = ok.policy().unwrap();
        assert_eq!(p.max_lag_ms, Some(MAX_MAX_LAG_MS));
        assert!(!ok.compresses());
        assert!(outgoing(Mode::Async).compresses());
        for bad in [
            Outgoing {
                max_lag_ms: Some(0),
                ..ok.clone()
            },
            Outgoing {
                max_lag_ms: Some(MAX_MAX_LAG_MS + 1),
                ..ok.clone()
            },
            Outgoing {
                bandwidth_mbps: Some(0),
                ..ok.clone()
            },
            Outgoing {
                bandwidth_mbps: Some(MAX_BANDWIDTH_MBPS + 1),
                ..ok.clone()
            },
            Outgoing {
                max_lag_ms: None,
                ..ok.clone()
            },
            Outgoing {
                max_lag_ms: Some(10),
                ..outgoing(Mode::Sync)
            },
        ] {
            assert!(bad.policy().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn behind_and_throughput() {
        use ReplicationState::{Baseline, Behind, Streaming};
        assert_eq!(shown_state(Streaming, DEFAULT_BEHIND_MS, None), Streaming);
        assert_eq!(shown_state(Streaming, DEFAULT_BEHIND_MS + 1, None), Behind);
        assert_eq!(shown_state(Streaming, 11, Some(10)), Behind);
        assert_eq!(shown_state(Baseline, 1_000_000, Some(10)), Baseline);
        let t0 = Instant::now();
        let mut samples = VecDeque::new();
        assert_eq!(throughput(&samples), (0, 0));
        samples.push_back((t0, 1_000, 500));
        assert_eq!(throughput(&samples), (0, 0));
        samples.push_back((t0 + Duration::from_secs(2), 5_000, 2_500));
        assert_eq!(throughput(&samples), (2_000, 1_000));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for ms in [0, 1, 100, 5_000] {
            let d = jittered(ms).as_millis() as u64;
            assert!(d >= ms && d <= ms + ms / 4, "{ms} -> {d}");
        }
    }
}
