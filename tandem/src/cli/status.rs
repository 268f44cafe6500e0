//! `tandem status [VS] [--json]`

use std::path::Path;
use std::process::ExitCode;

use tandem_control::api::client;
use tandem_control::api::proto::{mib, Reply, Request};
use tandem_control::config::names::validate_name;
use tandem_control::replication::ReplicationFigures;
use tandem_control::vserver::status::{SpaceStatus, StatusReport, VserverStatus};
use tandem_store::space::SpaceState;

use super::output::{clients, describe_endpoint, table, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show only this vserver.
    vserver: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub async fn run(data: &Path, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(vs) = &args.vserver {
        validate_name("vserver name", vs)?;
    }
    let reply = client::call(
        data,
        &Request::Status {
            vserver: args.vserver.clone(),
        },
    )
    .await?;
    let Reply::Status(report) = reply else {
        return Err(unexpected(&reply));
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say_raw!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(report: &StatusReport) -> String {
    let s = &report.site;
    let mut out = format!(
        "site {}  (id {})\n  listen {}  data {}  daemon pid {}\n",
        s.name, s.id, s.listen, s.data_dir, s.daemon_pid
    );
    if report.vservers.is_empty() {
        out.push_str(
            "\nno vservers (create one with `tandem vserver create NAME --address IP/PREFIX`)\n",
        );
        return out;
    }
    let rows: Vec<Vec<String>> = report
        .vservers
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.state.to_string(),
                v.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                v.filesystems.len().to_string(),
                v.users.len().to_string(),
                format!("{}/{}", v.durable_lsn, v.last_lsn),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &[
            "VSERVER",
            "STATE",
            "ADDRESSES",
            "FS",
            "USERS",
            "LSN (durable/last)",
        ],
        &rows,
    ));
    out.push('\n');
    for v in &report.vservers {
        out.push_str(&render_vserver(v));
    }
    out
}

fn render_vserver(v: &VserverStatus) -> String {
    let mut out = format!("\nvserver {}\n", v.name);
    if let Some(e) = &v.error {
        out.push_str(&format!("  error: {e}\n"));
    }
    for e in &v.endpoints {
        out.push_str(&format!("  serving {}\n", describe_endpoint(e)));
    }
    for f in &v.bind_failures {
        out.push_str(&format!("  NOT serving {}: {}\n", f.address, f.error));
    }
    if let Some(s) = &v.space {
        out.push_str(&render_space(s));
    }
    if let Some(r) = &v.replication {
        match (&r.to, &r.from) {
            (Some(to), _) => out.push_str(&format!(
                "  replication to {to} ({}): {}, replica at LSN {}, {} records / {} bytes / {} ms behind\n",
                r.mode, r.state, r.replica_lsn, r.lag_records, r.lag_bytes, r.lag_ms
            )),
            (None, from) => out.push_str(&format!(
                "  replica of site {}: {}, applied LSN {}\n",
                from.as_deref().unwrap_or("(not yet connected)"),
                r.state,
                r.replica_lsn
            )),
        }
        if r.degraded {
            out.push_str(&format!(
                "  ALERT: replica acks are late; replying without them (degraded to async) \
                 until it catches up ({} replies so far)\n",
                r.degraded_replies
            ));
        }
        if let (Some(done), Some(total)) = (r.baseline_done_bytes, r.baseline_total_bytes) {
            out.push_str(&format!(
                "  baseline: {:.1} of {:.1} MiB copied\n",
                mib(done),
                mib(total)
            ));
        }
        if r.to.is_some() {
            out.push_str(&render_figures(&r.figures));
        }
        if let Some(a) = &r.replica_address {
            out.push_str(&format!("  replica address {a}\n"));
        }
        if let Some(e) = &r.last_error {
            out.push_str(&format!("  replication error: {e}\n"));
        }
    }
    if !v.filesystems.is_empty() {
        let rows: Vec<Vec<String>> = v
            .filesystems
            .iter()
            .map(|fs| {
                vec![
                    fs.name.clone(),
                    fs.fsid.to_string(),
                    fs.export.clone(),
                    if fs.read_only { "ro" } else { "rw" }.to_string(),
                    if fs.root_squash { "yes" } else { "no" }.to_string(),
                    format!("{}:{}", fs.anon_uid, fs.anon_gid),
                    clients(fs),
                ]
            })
            .collect();
        out.push_str(&indent(&table(
            &[
                "FS",
                "FSID",
                "EXPORT",
                "ACCESS",
                "ROOT SQUASH",
                "ANON",
                "CLIENTS",
            ],
            &rows,
        )));
    }
    if !v.users.is_empty() {
        let rows: Vec<Vec<String>> = v
            .users
            .iter()
            .map(|u| {
                vec![
                    u.name.clone(),
                    u.uid.to_string(),
                    u.gid.to_string(),
                    u.groups
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        out.push_str(&indent(&table(&["USER", "UID", "GID", "GROUPS"], &rows)));
    }
    out
}

/// The disk line, with what an operator does about a full one.
fn render_space(s: &SpaceStatus) -> String {
    if let Some(e) = &s.error {
        return format!("  space: unknown ({e})\n");
    }
    let mut out = format!(
        "  space: {}, {:.1} MiB free of {:.1} MiB ({:.1} MiB kept for removals)\n",
        s.state,
        mib(s.free_bytes),
        mib(s.total_bytes),
        mib(s.reserve_bytes)
    );
    match s.state {
        SpaceState::Ok => {}
        SpaceState::Low => out.push_str(&format!(
            "  WARNING: under {}% free above the reserve; writes will be refused when only the reserve is left\n",
            s.low_percent
        )),
        SpaceState::Full => out.push_str(
            "  ALERT: disk full: writes and creations get NFS3ERR_NOSPC; remove or truncate files, or grow the file system\n",
        ),
    }
    if let Some(why) = &s.stalled {
        out.push_str(&format!(
            "  data files waiting for room (served from memory meanwhile): {why}\n"
        ));
    }
    out
}

/// The sender's options and throughput (active site).
fn render_figures(f: &ReplicationFigures) -> String {
    let mut out = String::new();
    if let (Some(rate), Some(eta)) = (f.baseline_bytes_per_second, f.baseline_eta_s) {
        out.push_str(&format!(
            "  baseline rate {:.1} MiB/s, about {eta} s left\n",
            mib(rate)
        ));
    }
    out.push_str(&format!(
        "  estimated RPO {} ms; throughput {:.2} MiB/s acked, {:.2} MiB/s on the wire \
         ({:.1} MiB sent on the wire for {:.1} MiB of journal)\n",
        f.estimated_rpo_ms.unwrap_or(0),
        mib(f.acked_journal_bytes_per_second),
        mib(f.wire_bytes_per_second),
        mib(f.sent_wire_bytes),
        mib(f.sent_journal_bytes),
    ));
    out.push_str(&format!(
        "  compress {}, bandwidth {}, max lag {}\n",
        f.compress.unwrap_or_default(),
        f.bandwidth_mbps
            .map_or("unlimited".to_string(), |m| format!("{m} Mbit/s")),
        f.max_lag_ms
            .map_or("none".to_string(), |m| format!("{m} ms")),
    ));
    out
}

fn indent(block: &str) -> String {
    block.lines().map(|l| format!("  {l}\n")).collect()
}
