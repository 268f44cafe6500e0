//! Prometheus metrics on `/metrics`: the figures of `tandem status`, in
//! the text exposition format (version 0.0.4), served on the address set
//! in site.toml (`[metrics] listen`), off by default.
//!
//! The HTTP side is a few lines over tokio rather than a web framework:
//! one GET path, small bounded requests, and nothing else to serve.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

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

/// One metric family and its samples (labels, value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, f64)>,
}

fn family(name: &'static str, kind: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind,
        help,
        samples: Vec::new(),
    }
}

/// Renders a status report as Prometheus metrics: each family's HELP and
/// TYPE lines, then its samples, as one group (the format requires it).
pub fn render(report: &StatusReport) -> String {
    let site = &report.site;
    let site_label = format!("site=\"{}\"", esc(&site.name));
    let mut refused = family(
        "tandem_refused_peer_connections_total",
        "counter",
        "Peer connections whose mutual-TLS handshake was refused.",
    );
    refused
        .samples
        .push((site_label.clone(), site.refused_peer_connections as f64));
    let mut peers = family("tandem_peers", "gauge", "Paired sites.");
    peers.samples.push((site_label, site.peers as f64));
    let mut last = family(
        "tandem_vserver_last_lsn",
        "gauge",
        "Highest journal LSN assigned (active) or applied (replica).",
    );
    let mut durable = family(
        "tandem_vserver_durable_lsn",
        "gauge",
        "Highest journal LSN on stable storage.",
    );
    let mut up = family(
        "tandem_vserver_up",
        "gauge",
        "1 if the vserver is served from this site (active or replica), 0 if failed.",
    );
    let mut lag = family(
        "tandem_replication_lag_records",
        "gauge",
        "Journal records the replica has not acknowledged.",
    );
    let mut lag_bytes = family(
        "tandem_replication_lag_bytes",
        "gauge",
        "Journal bytes the replica has not acknowledged.",
    );
    let mut lag_seconds = family(
        "tandem_replication_lag_seconds",
        "gauge",
        "Age of the oldest record the replica has not acknowledged (the RPO in async mode).",
    );
    let mut replica_lsn = family(
        "tandem_replication_replica_lsn",
        "gauge",
        "Highest LSN the replica acknowledged (active site) or applied (replica site).",
    );
    let mut streaming = family(
        "tandem_replication_streaming",
        "gauge",
        "1 while the sender streams to the replica.",
    );
    let mut degraded = family(
        "tandem_replication_degraded",
        "gauge",
        "1 while commit-sync/sync replies go out without the replica's ack.",
    );
    let mut degraded_total = family(
        "tandem_replication_degraded_replies_total",
        "counter",
        "Replies sent without the replica's ack since the vserver opened.",
    );
    let mut fig = FigureFamilies::new();
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    for vs in &report.vservers {
        let labels = format!("vserver=\"{}\"", esc(&vs.name));
        last.samples.push((labels.clone(), vs.last_lsn as f64));
        durable
            .samples
            .push((labels.clone(), vs.durable_lsn as f64));
        let is_up = !matches!(vs.state, crate::vserver::status::VserverState::Failed);
        up.samples.push((labels.clone(), flag(is_up)));
        if let Some(r) = &vs.replication {
            let peer = r.to.as_deref().or(r.from.as_deref()).unwrap_or("");
            let rl = format!("{labels},peer=\"{}\",mode=\"{}\"", esc(peer), r.mode);
            lag.samples.push((rl.clone(), r.lag_records as f64));
            lag_bytes.samples.push((rl.clone(), r.lag_bytes as f64));
            lag_seconds
                .samples
                .push((rl.clone(), r.lag_ms as f64 / 1000.0));
            replica_lsn.samples.push((rl.clone(), r.replica_lsn as f64));
            streaming
                .samples
                .push((rl.clone(), flag(r.state == ReplicationState::Streaming)));
            degraded.samples.push((rl.clone(), flag(r.degraded)));
            if r.to.is_some() {
                fig.push(&rl, r);
            }
            degraded_total.samples.push((rl, r.degraded_replies as f64));
        }
    }
    let mut out = String::new();
    for f in [
        refused,
        peers,
        last,
        durable,
        up,
        lag,
        lag_bytes,
        lag_seconds,
        replica_lsn,
        streaming,
        degraded,
        degraded_total,
    ]
    .into_iter()
    .chain(fig.into_families())
    {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value) in f.samples {
            let _ = writeln!(out, "{}{{{labels}}} {value}", f.name);
        }
    }
    out
}

/// The families of `ReplicationFigures` (active site only).
struct FigureFamilies {
    sent_wire: Family,
    sent_journal: Family,
    acked_journal: Family,
    wire_rate: Family,
    acked_rate: Family,
    rpo: Family,
    state: Family,
    baseline_rate: Family,
    baseline_eta: Family,
    overflow_changed: Family,
    catchup_sent: Family,
}

/// States a sender can be in, one `tandem_replication_state` series each.
const STATES: [ReplicationState; 9] = [
    ReplicationState::Connecting,
    ReplicationState::Baseline,
    ReplicationState::Streaming,
    ReplicationState::Behind,
    ReplicationState::Disconnected,
    ReplicationState::NeedsBaseline,
    ReplicationState::Refused,
    ReplicationState::Overflow,
    ReplicationState::CatchUp,
];

impl FigureFamilies {
    fn new() -> Self {
        FigureFamilies {
            sent_wire: family(
                "tandem_replication_sent_wire_bytes_total",
                "counter",
                "Batch bytes sent on the wire (after compression).",
            ),
            sent_journal: family(
                "tandem_replication_sent_journal_bytes_total",
                "counter",
                "Journal bytes sent (before compression).",
            ),
            acked_journal: family(
                "tandem_replication_acked_journal_bytes_total",
                "counter",
                "Journal bytes the replica acknowledged.",
            ),
            wire_rate: family(
                "tandem_replication_wire_throughput_bytes_per_second",
                "gauge",
                "Wire bytes sent per second over the last ~10 s.",
            ),
            acked_rate: family(
                "tandem_replication_throughput_bytes_per_second",
                "gauge",
                "Journal bytes acknowledged by the replica per second over the last ~10 s.",
            ),
            rpo: family(
                "tandem_replication_estimated_rpo_seconds",
                "gauge",
                "What a sudden loss of this site would lose now (0 in commit-sync/sync unless degraded).",
            ),
            state: family(
                "tandem_replication_state",
                "gauge",
                "1 for the sender's current state, 0 for the others.",
            ),
            baseline_rate: family(
                "tandem_replication_baseline_rate_bytes_per_second",
                "gauge",
                "Rate of the running baseline.",
            ),
            baseline_eta: family(
                "tandem_replication_baseline_eta_seconds",
                "gauge",
                "Time the running baseline needs at its rate.",
            ),
            overflow_changed: family(
                "tandem_replication_overflow_changed_bytes",
                "gauge",
                "In journal overflow: bytes of changed ranges a catch-up would send now (0 otherwise).",
            ),
            catchup_sent: family(
                "tandem_replication_catchup_sent_bytes",
                "gauge",
                "File data bytes the last catch-up sent (zero ranges cost none).",
            ),
        }
    }

    fn push(&mut self, labels: &str, r: &crate::replication::ReplicationStatus) {
        let f = &r.figures;
        let l = || labels.to_string();
        self.sent_wire.samples.push((l(), f.sent_wire_bytes as f64));
        self.sent_journal
            .samples
            .push((l(), f.sent_journal_bytes as f64));
        self.acked_journal
            .samples
            .push((l(), f.acked_journal_bytes as f64));
        self.wire_rate
            .samples
            .push((l(), f.wire_bytes_per_second as f64));
        self.acked_rate
            .samples
            .push((l(), f.acked_journal_bytes_per_second as f64));
        let rpo_ms = f.estimated_rpo_ms.unwrap_or(r.lag_ms);
        self.rpo.samples.push((l(), rpo_ms as f64 / 1000.0));
        for st in STATES {
            let on = if r.state == st { 1.0 } else { 0.0 };
            self.state
                .samples
                .push((format!("{labels},state=\"{st}\""), on));
        }
        if let Some(rate) = f.baseline_bytes_per_second {
            self.baseline_rate.samples.push((l(), rate as f64));
        }
        if let Some(eta) = f.baseline_eta_s {
            self.baseline_eta.samples.push((l(), eta as f64));
        }
        let o = &r.overflow;
        self.overflow_changed
            .samples
            .push((l(), o.overflow_changed_bytes.unwrap_or(0) as f64));
        if let Some(sent) = o.catchup_sent_bytes {
            self.catchup_sent.samples.push((l(), sent as f64));
        }
    }

    fn into_families(self) -> [Family; 11] {
        [
            self.sent_wire,
            self.sent_journal,
            self.acked_journal,
            self.wire_rate,
            self.acked_rate,
            self.rpo,
            self.state,
            self.baseline_rate,
            self.baseline_eta,
            self.overflow_changed,
            self.catchup_sent,
        ]
    }
}

/// Label values escape backslash, quote and newline.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
            Ok(report) => ("200 OK", "text/plain; version=0.0.4", render(&report)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut f = FigureFamilies::new();
        f.push("vserver=\"vs\"", &r);
        let families = f.into_families();
        let value = |name: &str, labels: &str| {
            families
                .iter()
                .find(|f| f.name == name)
                .and_then(|f| f.samples.iter().find(|(l, _)| l == labels))
                .map(|(_, v)| *v)
        };
        let vs = "vserver=\"vs\"";
        assert_eq!(
            value("tandem_replication_overflow_changed_bytes", vs),
            Some(1234.0)
        );
        assert_eq!(
            value("tandem_replication_catchup_sent_bytes", vs),
            Some(99.0)
        );
        let state = |st: &str| value("tandem_replication_state", &format!("{vs},state=\"{st}\""));
        assert_eq!(state("overflow"), Some(1.0));
        assert_eq!(state("catch-up"), Some(0.0));
        assert_eq!(state("streaming"), Some(0.0));
    }
}
