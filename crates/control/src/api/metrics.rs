//! Prometheus metrics on `/metrics`: the figures of `tandem status`,
//! encoded by `prometheus-client` (OpenMetrics text), served on the address
//! set in site.toml (`[metrics] listen`), off by default.
//!
//! The HTTP side is a few lines over tokio rather than a web framework
//! (the crate has no server): one GET path, small bounded requests, and
//! nothing else to serve.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::Handler;
use crate::replication::ReplicationState;
use crate::vserver::status::StatusReport;

/// Longest request head accepted (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A scrape must send its request within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once; more wait for a slot.
pub const MAX_CONNECTIONS: usize = 16;
/// What `prometheus-client`'s text encoder writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A gauge of whole numbers (LSNs, counts, bytes).
type Whole = Gauge<u64, AtomicU64>;
/// A gauge of fractions (seconds).
type Fraction = Gauge<f64, AtomicU64>;

// Label values are written as they are (the encoder does not escape them):
// they are names checked by `config::names` ([A-Za-z0-9_.-]), site ids
// (hex) and replication modes, none of which holds a quote, a backslash or
// a newline.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VserverLabels {
    vserver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicationLabels {
    vserver: String,
    peer: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpaceStateLabels {
    vserver: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    vserver: String,
    peer: String,
    mode: String,
    state: String,
}

/// Registers a family and hands it back for filling in.
fn family<L, M>(registry: &mut Registry, name: &str, help: &str) -> Family<L, M>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    M: Default
        + prometheus_client::encoding::EncodeMetric
        + prometheus_client::metrics::TypedMetric,
    M: std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, M>::default();
    // The encoder ends each help text with a full stop of its own.
    registry.register(name, help.trim_end_matches('.'), f.clone());
    f
}

/// Renders a status report as Prometheus metrics (OpenMetrics text, as
/// `prometheus-client` encodes it). A registry is built per scrape: the
/// figures are a snapshot of `tandem status`, not counters kept here.
pub fn render(report: &StatusReport) -> String {
    let mut registry = Registry::default();
    let site = &report.site;
    let site_labels = SiteLabels {
        site: site.name.clone(),
    };
    // Counters get `_total` appended by the encoder.
    family::<_, Counter>(
        &mut registry,
        "tandem_refused_peer_connections",
        "Peer connections whose mutual-TLS handshake was refused.",
    )
    .get_or_create(&site_labels)
    .inc_by(site.refused_peer_connections);
    family::<_, Whole>(&mut registry, "tandem_peers", "Paired sites.")
        .get_or_create(&site_labels)
        .set(site.peers as u64);
    let last: Family<VserverLabels, Whole> = family(
        &mut registry,
        "tandem_vserver_last_lsn",
        "Highest journal LSN assigned (active) or applied (replica).",
    );
    let durable: Family<VserverLabels, Whole> = family(
        &mut registry,
        "tandem_vserver_durable_lsn",
        "Highest journal LSN on stable storage.",
    );
    let up: Family<VserverLabels, Whole> = family(
        &mut registry,
        "tandem_vserver_up",
        "1 if the vserver is served from this site (active or replica), 0 if failed.",
    );
    let lag: Family<ReplicationLabels, Whole> = family(
        &mut registry,
        "tandem_replication_lag_records",
        "Journal records the replica has not acknowledged.",
    );
    let lag_bytes: Family<ReplicationLabels, Whole> = family(
        &mut registry,
        "tandem_replication_lag_bytes",
        "Journal bytes the replica has not acknowledged.",
    );
    let lag_seconds: Family<ReplicationLabels, Fraction> = family(
        &mut registry,
        "tandem_replication_lag_seconds",
        "Age of the oldest record the replica has not acknowledged (the RPO in async mode).",
    );
    let replica_lsn: Family<ReplicationLabels, Whole> = family(
        &mut registry,
        "tandem_replication_replica_lsn",
        "Highest LSN the replica acknowledged (active site) or applied (replica site).",
    );
    let streaming: Family<ReplicationLabels, Whole> = family(
        &mut registry,
        "tandem_replication_streaming",
        "1 while the sender streams to the replica.",
    );
    let degraded: Family<ReplicationLabels, Whole> = family(
        &mut registry,
        "tandem_replication_degraded",
        "1 while commit-sync/sync replies go out without the replica's ack.",
    );
    let degraded_total: Family<ReplicationLabels, Counter> = family(
        &mut registry,
        "tandem_replication_degraded_replies",
        "Replies sent without the replica's ack since the vserver opened.",
    );
    let fig = FigureFamilies::new(&mut registry);
    let space = SpaceFamilies::new(&mut registry);
    for vs in &report.vservers {
        if let Some(s) = &vs.space {
            space.push(&vs.name, s);
        }
        let labels = VserverLabels {
            vserver: vs.name.clone(),
        };
        last.get_or_create(&labels).set(vs.last_lsn);
        durable.get_or_create(&labels).set(vs.durable_lsn);
        let is_up = !matches!(vs.state, crate::vserver::status::VserverState::Failed);
        up.get_or_create(&labels).set(u64::from(is_up));
        if let Some(r) = &vs.replication {
            let peer = r.to.as_deref().or(r.from.as_deref()).unwrap_or("");
            let rl = ReplicationLabels {
                vserver: vs.name.clone(),
                peer: peer.to_string(),
                mode: r.mode.to_string(),
            };
            lag.get_or_create(&rl).set(r.lag_records);
            lag_bytes.get_or_create(&rl).set(r.lag_bytes);
            lag_seconds.get_or_create(&rl).set(r.lag_ms as f64 / 1000.0);
            replica_lsn.get_or_create(&rl).set(r.replica_lsn);
            streaming
                .get_or_create(&rl)
                .set(u64::from(r.state == ReplicationState::Streaming));
            degraded.get_or_create(&rl).set(u64::from(r.degraded));
            degraded_total.get_or_create(&rl).inc_by(r.degraded_replies);
            if r.to.is_some() {
                fig.push(&rl, r);
            }
        }
    }
    encoded(&registry)
}

fn encoded(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; an encoder error would leave a
    // partial text, which a scraper rejects as a whole.
    if let Err(e) = encode(&mut out, registry) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}

/// The families of `ReplicationFigures` (active site only).
struct FigureFamilies {
    sent_wire: Family<ReplicationLabels, Counter>,
    sent_journal: Family<ReplicationLabels, Counter>,
    acked_journal: Family<ReplicationLabels, Counter>,
    wire_rate: Family<ReplicationLabels, Whole>,
    acked_rate: Family<ReplicationLabels, Whole>,
    rpo: Family<ReplicationLabels, Fraction>,
    state: Family<StateLabels, Whole>,
    baseline_rate: Family<ReplicationLabels, Whole>,
    baseline_eta: Family<ReplicationLabels, Whole>,
    overflow_changed: Family<ReplicationLabels, Whole>,
    catchup_sent: Family<ReplicationLabels, Whole>,
}

/// States a sender can be in, one `tandem_replication_state` series each.
const STATES: [ReplicationState; 10] = [
    ReplicationState::Connecting,
    ReplicationState::Baseline,
    ReplicationState::Streaming,
    ReplicationState::Behind,
    ReplicationState::Disconnected,
    ReplicationState::NeedsBaseline,
    ReplicationState::Refused,
    ReplicationState::Overflow,
    ReplicationState::CatchUp,
    ReplicationState::Stalled,
];

impl FigureFamilies {
    fn new(r: &mut Registry) -> Self {
        FigureFamilies {
            sent_wire: family(
                r,
                "tandem_replication_sent_wire_bytes",
                "Batch bytes sent on the wire (after compression).",
            ),
            sent_journal: family(
                r,
                "tandem_replication_sent_journal_bytes",
                "Journal bytes sent (before compression).",
            ),
            acked_journal: family(
                r,
                "tandem_replication_acked_journal_bytes",
                "Journal bytes the replica acknowledged.",
            ),
            wire_rate: family(
                r,
                "tandem_replication_wire_throughput_bytes_per_second",
                "Wire bytes sent per second over the last ~10 s.",
            ),
            acked_rate: family(
                r,
                "tandem_replication_throughput_bytes_per_second",
                "Journal bytes acknowledged by the replica per second over the last ~10 s.",
            ),
            rpo: family(
                r,
                "tandem_replication_estimated_rpo_seconds",
                "What a sudden loss of this site would lose now (0 in commit-sync/sync unless degraded).",
            ),
            state: family(
                r,
                "tandem_replication_state",
                "1 for the sender's current state, 0 for the others.",
            ),
            baseline_rate: family(
                r,
                "tandem_replication_baseline_rate_bytes_per_second",
                "Rate of the running baseline.",
            ),
            baseline_eta: family(
                r,
                "tandem_replication_baseline_eta_seconds",
                "Time the running baseline needs at its rate.",
            ),
            overflow_changed: family(
                r,
                "tandem_replication_overflow_changed_bytes",
                "In journal overflow: bytes of changed ranges a catch-up would send now (0 otherwise).",
            ),
            catchup_sent: family(
                r,
                "tandem_replication_catchup_sent_bytes",
                "File data bytes the last catch-up sent (zero ranges cost none).",
            ),
        }
    }

    fn push(&self, l: &ReplicationLabels, r: &crate::replication::ReplicationStatus) {
        let f = &r.figures;
        self.sent_wire.get_or_create(l).inc_by(f.sent_wire_bytes);
        self.sent_journal
            .get_or_create(l)
            .inc_by(f.sent_journal_bytes);
        self.acked_journal
            .get_or_create(l)
            .inc_by(f.acked_journal_bytes);
        self.wire_rate.get_or_create(l).set(f.wire_bytes_per_second);
        self.acked_rate
            .get_or_create(l)
            .set(f.acked_journal_bytes_per_second);
        let rpo_ms = f.estimated_rpo_ms.unwrap_or(r.lag_ms);
        self.rpo.get_or_create(l).set(rpo_ms as f64 / 1000.0);
        for st in STATES {
            let labels = StateLabels {
                vserver: l.vserver.clone(),
                peer: l.peer.clone(),
                mode: l.mode.clone(),
                state: st.to_string(),
            };
            self.state
                .get_or_create(&labels)
                .set(u64::from(r.state == st));
        }
        if let Some(rate) = f.baseline_bytes_per_second {
            self.baseline_rate.get_or_create(l).set(rate);
        }
        if let Some(eta) = f.baseline_eta_s {
            self.baseline_eta.get_or_create(l).set(eta);
        }
        let o = &r.overflow;
        self.overflow_changed
            .get_or_create(l)
            .set(o.overflow_changed_bytes.unwrap_or(0));
        if let Some(sent) = o.catchup_sent_bytes {
            self.catchup_sent.get_or_create(l).set(sent);
        }
    }
}

/// Serves scrapes until `stopped` is cancelled.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, stopped: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let handler = handler.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &*handler).await {
                        tracing::debug!(%peer, error = %e, "metrics scrape failed");
                    }
                    drop(slot);
                });
            }
            () = stopped.cancelled() => return,
        }
    }
}

async fn answer<H: Handler>(mut stream: TcpStream, handler: &H) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        )
    } else if path != "/metrics" {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    } else {
        match handler.status().await {
            Ok(report) => ("200 OK", CONTENT_TYPE, render(&report)),
            Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line ending the request head, within the limit.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() >= MAX_REQUEST_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head over the limit",
            ));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The families of a vserver's `SpaceStatus`.
struct SpaceFamilies {
    free: Family<VserverLabels, Whole>,
    total: Family<VserverLabels, Whole>,
    reserve: Family<VserverLabels, Whole>,
    state: Family<SpaceStateLabels, Whole>,
}

impl SpaceFamilies {
    fn new(r: &mut Registry) -> Self {
        SpaceFamilies {
            free: family(
                r,
                "tandem_vserver_space_free_bytes",
                "Disk bytes free for the store; writes are refused once only the reserve is left.",
            ),
            total: family(
                r,
                "tandem_vserver_space_total_bytes",
                "Size of the file system holding the store.",
            ),
            reserve: family(
                r,
                "tandem_vserver_space_reserve_bytes",
                "Disk bytes kept for removals and truncations (store.space_reserve_bytes).",
            ),
            state: family(
                r,
                "tandem_vserver_space_state",
                "1 for the store's space state (ok, low: a warning, full: writes refused), 0 for the others.",
            ),
        }
    }

    fn push(&self, vserver: &str, s: &crate::vserver::status::SpaceStatus) {
        let labels = VserverLabels {
            vserver: vserver.to_string(),
        };
        self.free.get_or_create(&labels).set(s.free_bytes);
        self.total.get_or_create(&labels).set(s.total_bytes);
        self.reserve.get_or_create(&labels).set(s.reserve_bytes);
        for st in tandem_store::space::SpaceState::ALL {
            let labels = SpaceStateLabels {
                vserver: vserver.to_string(),
                state: st.to_string(),
            };
            self.state
                .get_or_create(&labels)
                .set(u64::from(st == s.state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_figures_and_state_are_exported() {
        let s: crate::vserver::status::SpaceStatus = serde_json::from_value(serde_json::json!({
            "state": "full",
            "total_bytes": 67108864,
            "free_bytes": 9000000,
            "reserve_bytes": 8388608,
            "low_percent": 10,
        }))
        .expect("a space status");
        let mut registry = Registry::default();
        SpaceFamilies::new(&mut registry).push("vs", &s);
        let text = encoded(&registry);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has(r#"tandem_vserver_space_free_bytes{vserver="vs"} 9000000"#),
            "{text}"
        );
        assert!(
            has(r#"tandem_vserver_space_total_bytes{vserver="vs"} 67108864"#),
            "{text}"
        );
        assert!(
            has(r#"tandem_vserver_space_reserve_bytes{vserver="vs"} 8388608"#),
            "{text}"
        );
        assert!(
            has(r#"tandem_vserver_space_state{vserver="vs",state="full"} 1"#),
            "{text}"
        );
        assert!(
            has(r#"tandem_vserver_space_state{vserver="vs",state="low"} 0"#),
            "{text}"
        );
        assert!(
            has(r#"tandem_vserver_space_state{vserver="vs",state="ok"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn overflow_and_catch_up_figures_are_exported() {
        let r: crate::replication::ReplicationStatus = serde_json::from_value(serde_json::json!({
            "mode": "async",
            "state": "overflow",
            "replica_lsn": 5,
            "lag_records": 7,
            "overflow_since_lsn": 5,
            "overflow_changed_bytes": 1234,
            "catchup_sent_bytes": 99,
        }))
        .expect("a status");
        let mut registry = Registry::default();
        let f = FigureFamilies::new(&mut registry);
        let labels = ReplicationLabels {
            vserver: "vs".into(),
            peer: "site-b".into(),
            mode: "async".into(),
        };
        f.push(&labels, &r);
        let text = encoded(&registry);
        let has = |line: &str| text.lines().any(|l| l == line);
        let vs = r#"vserver="vs",peer="site-b",mode="async""#;
        assert!(
            has(&format!(
                "tandem_replication_overflow_changed_bytes{{{vs}}} 1234"
            )),
            "{text}"
        );
        assert!(
            has(&format!("tandem_replication_catchup_sent_bytes{{{vs}}} 99")),
            "{text}"
        );
        assert!(
            has("# TYPE tandem_replication_sent_wire_bytes counter"),
            "{text}"
        );
        assert!(
            has(&format!(
                "tandem_replication_sent_wire_bytes_total{{{vs}}} 0"
            )),
            "{text}"
        );
        let state = |st: &str, v: u8| {
            has(&format!(
                "tandem_replication_state{{{vs},state=\"{st}\"}} {v}"
            ))
        };
        assert!(state("overflow", 1), "{text}");
        assert!(state("catch-up", 0), "{text}");
        assert!(state("streaming", 0), "{text}");
    }
}
