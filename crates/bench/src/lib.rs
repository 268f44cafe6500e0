//! `tandem bench`: the same NFSv3 client workload against Tandem and
//! against NFS-Ganesha on the same machine and disk, reported as one table
//! of rates and Tandem/Ganesha ratios.
//!
//! The workload (see `workload.rs`) is driven by the `nfs3_client` crate
//! over TCP on loopback with `in_flight` connections, one call outstanding
//! on each. Both servers run at once; each row is measured `repeats` times
//! per server, alternating which server goes first, and the median is
//! reported (every sample is printed too). Tandem's NFS service runs in
//! this process on a runtime of its own; Ganesha is a separate process
//! (see `ganesha.rs`). Nothing here asserts on time: rates are measured and
//! reported, never judged.
//!
//! Run it in a release build, as root (Ganesha needs root):
//! `cargo run --release -p tandem-bench --example bench -- [--quick]`, or
//! `tandem bench` from a binary built with `--features bench`.
//!
//! `tandem bench replication` ([`run_replication`]) is the replication
//! benchmark: lag, wire bytes and catch-up against rsync (see
//! `replication.rs`). `tandem bench failover` ([`run_failover`]) times
//! failovers between two `tandem daemon` processes (see `failover.rs`).

mod error;
pub mod failover;
mod failover_report;
mod failover_resync;
mod failover_switch;
mod ganesha;
mod options;
mod replication;
mod replication_changes;
mod replication_lag;
mod replication_options;
mod replication_proxy;
mod replication_report;
mod replication_rsync;
mod replication_sites;
mod report;
mod rpcbind_stub;
mod stats;
mod tandem_server;
mod workload;

use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};

pub use error::BenchError;
pub use failover::{run_failover, FailoverOptions};
pub use failover_report::{FailoverBenchReport, MeasureRow};
pub use ganesha::config_text as ganesha_config_text;
pub use options::{BenchOptions, ServerKind, MAX_IN_FLIGHT, MAX_IO_BYTES};
pub use replication::{run_replication, run_replication_async};
pub use replication_options::{Rate, ReplOptions};
pub use replication_report::{ReplReport, ReplRow};
pub use report::{BenchReport, ReportRow};

use ganesha::{GaneshaOptions, GaneshaServer};
use tandem_server::TandemServer;
use tandem_testkit::target::Target;
use workload::{Row, Session, ROWS};

/// Runs the bench and returns the report. A server that fails to start or
/// to complete the workload does not stop the others: its error is in
/// [`BenchReport::failures`] (check [`BenchReport::is_complete`]).
/// Blocking; safe to call from any thread, even one driving an async
/// runtime (the work happens on a thread of its own with its own runtimes),
/// but async callers should prefer [`run_async`].
pub fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    std::thread::Builder::new()
        .name("tandem-bench".into())
        .spawn(move || run_on_this_thread(&opts))
        .context("spawning the bench thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the bench thread panicked"))?
}

/// [`run`] for async callers: does not block the caller's runtime.
pub async fn run_async(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    tokio::task::spawn_blocking(move || run(opts))
        .await
        .context("the bench task failed")?
}

/// The parent directory of both servers' data: the one asked for, or a
/// fresh temporary directory under /var/tmp (a disk, unlike /tmp on some
/// systems), removed on drop.
enum WorkDir {
    Given(PathBuf),
    Temp(tempfile::TempDir),
}

impl WorkDir {
    fn path(&self) -> &Path {
        match self {
            WorkDir::Given(p) => p,
            WorkDir::Temp(t) => t.path(),
        }
    }
}

fn run_on_this_thread(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    opts.validate()?;
    let workdir = match &opts.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            WorkDir::Given(d.clone())
        }
        None => WorkDir::Temp(
            tempfile::Builder::new()
                .prefix("tandem-bench-")
                .tempdir_in("/var/tmp")
                .context("creating a work directory under /var/tmp")?,
        ),
    };
    let mut dirs = Vec::new();
    for kind in &opts.servers {
        let dir = workdir.path().join(kind.name().to_ascii_lowercase());
        if dir.exists() {
            anyhow::bail!(
                "{} already exists; give an empty --dir or remove it",
                dir.display()
            );
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        dirs.push(dir);
    }
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()
        .context("building the client runtime")?;

    let mut failures = Vec::new();
    let mut tandem: Option<TandemServer> = None;
    let mut ganesha: Option<GaneshaServer> = None;
    let mut targets: Vec<(ServerKind, Target)> = Vec::new();
    for (&kind, dir) in opts.servers.iter().zip(&dirs) {
        info!(server = %kind, dir = %dir.display(), "starting");
        match kind {
            ServerKind::Tandem => match TandemServer::start(
                &dir.join("store"),
                opts.tandem_address,
                opts.tandem_nfs_port,
                opts.tandem_mount_port,
            ) {
                Ok(s) => {
                    targets.push((kind, s.target().clone()));
                    tandem = Some(s);
                }
                Err(e) => failures.push(format!("{kind}: {e:#}")),
            },
            ServerKind::Ganesha => {
                let gopts = GaneshaOptions {
                    binary: opts.ganesha_binary.clone(),
                    address: opts.ganesha_address,
                    nfs_port: opts.ganesha_nfs_port,
                    mount_port: opts.ganesha_mount_port,
                    start_timeout: opts.ganesha_start_timeout,
                };
                match client_rt.block_on(GaneshaServer::start(dir, &gopts)) {
                    Ok(s) => {
                        targets.push((kind, s.target().clone()));
                        ganesha = Some(s);
                    }
                    Err(e) => failures.push(format!("{kind}: {e:#}")),
                }
            }
        }
    }

    let measured = client_rt.block_on(measure(&targets, opts, &mut failures));

    if let Some(mut g) = ganesha {
        if measured.failed.contains(&ServerKind::Ganesha) {
            failures.push(format!("Ganesha's log: {}", g.log().display()));
        }
        client_rt.block_on(async move { g.stop().await });
    }
    if let Some(mut t) = tandem {
        t.stop();
    }
    drop(client_rt);
    if !opts.keep {
        for dir in &dirs {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                warn!(dir = %dir.display(), error = %e, "removing a server's data");
            }
        }
    }
    let report = build_report(opts, workdir.path(), measured, failures);
    if opts.keep {
        if let WorkDir::Temp(t) = workdir {
            let kept = t.keep();
            info!(dir = %kept.display(), "data kept");
        }
    }
    Ok(report)
}

/// What the measuring loop hands back: samples per (server, row) and the
/// servers' notes.
struct Measured {
    samples: Vec<(ServerKind, Row, Vec<f64>)>,
    notes: Vec<String>,
    failed: Vec<ServerKind>,
}

/// Opens a session on every started server, then for each row runs every
/// server `repeats` times, alternating their order, with a sync(2) before
/// each timed run. A server that fails is dropped from the rest of the run.
async fn measure(
    targets: &[(ServerKind, Target)],
    opts: &BenchOptions,
    failures: &mut Vec<String>,
) -> Measured {
    let mut sessions: Vec<Option<(ServerKind, Session)>> = Vec::new();
    let mut failed = Vec::new();
    for (kind, target) in targets {
        match Session::open(target, opts).await {
            Ok(s) => sessions.push(Some((*kind, s))),
            Err(e) => {
                failures.push(format!("{kind}: set-up failed: {e:#}"));
                failed.push(*kind);
            }
        }
    }
    let mut samples: Vec<(ServerKind, Row, Vec<f64>)> = Vec::new();
    for &row in &ROWS {
        // Write rows get one untimed warm-up run per server first.
        let warmup = u32::from(opts.warmup && matches!(row, Row::SeqWrite | Row::RandomWrite));
        for rep in 0..opts.repeats + warmup {
            let mut order: Vec<usize> = (0..sessions.len()).collect();
            if rep % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let Some((kind, session)) = sessions[i].as_mut() else {
                    continue;
                };
                let kind = *kind;
                let result = async {
                    session.prepare(row).await?;
                    if let Err(e) = tokio::task::spawn_blocking(sync_disks).await {
                        warn!(error = %e, "sync before a run");
                    }
                    session.run_row(row, rep, opts).await
                }
                .await;
                match result {
                    Ok(_) if rep < warmup => {}
                    Ok(rate) => {
                        match samples.iter_mut().find(|(k, r, _)| *k == kind && *r == row) {
                            Some((_, _, v)) => v.push(rate),
                            None => samples.push((kind, row, vec![rate])),
                        }
                    }
                    Err(e) => {
                        failures.push(format!("{kind}: {}: {e:#}", row.label(opts)));
                        failed.push(kind);
                        if let Some((_, s)) = sessions[i].take() {
                            drop(s.close(opts).await);
                        }
                    }
                }
            }
        }
    }
    let mut notes = Vec::new();
    for (_, s) in sessions.into_iter().flatten() {
        notes.extend(s.close(opts).await);
    }
    Measured {
        samples,
        notes,
        failed,
    }
}

fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn build_report(
    opts: &BenchOptions,
    dir: &Path,
    measured: Measured,
    failures: Vec<String>,
) -> BenchReport {
    let mut servers = opts.servers.clone();
    servers.sort();
    let order: Vec<String> = opts.servers.iter().map(|k| k.name().to_string()).collect();
    let mut header = vec![
        "Tandem NFSv3 benchmark (nfs3_client over TCP loopback, same machine, same disk)".into(),
        format!("data under {}", dir.display()),
        format!(
            "{} requests in flight (one per connection), AUTH_SYS root, no root squash",
            opts.in_flight
        ),
        servers
            .iter()
            .map(|k| match k {
                ServerKind::Tandem => format!(
                    "Tandem: in-process NFS service on its own runtime, address {}",
                    opts.tandem_address
                ),
                ServerKind::Ganesha => format!(
                    "Ganesha: separate ganesha.nfsd process (FSAL VFS, {}), address {}",
                    opts.ganesha_binary.display(),
                    opts.ganesha_address
                ),
            })
            .collect::<Vec<_>>()
            .join("; "),
        format!(
            "each rate is the median of {} run(s) per server; servers alternate within a row ({}, then reversed); sync(2) before each run",
            opts.repeats,
            order.join(", ")
        ),
        format!(
            "write rows: a new file per run, the previous one removed first{}",
            if opts.warmup {
                "; one untimed warm-up run per server"
            } else {
                ""
            }
        ),
    ];
    if cfg!(debug_assertions) {
        header.push(
            "WARNING: debug build; Tandem's server code is unoptimised, so its numbers mean nothing (build with --release)"
                .into(),
        );
    }
    let rows = ROWS
        .iter()
        .map(|&row| {
            let samples: Vec<(ServerKind, Vec<f64>)> = servers
                .iter()
                .filter_map(|s| {
                    measured
                        .samples
                        .iter()
                        .find(|(k, r, _)| k == s && *r == row)
                        .map(|(k, _, v)| (*k, v.clone()))
                })
                .collect();
            let values: Vec<(ServerKind, f64)> = samples
                .iter()
                .filter_map(|(k, v)| Some((*k, stats::median_midpoint(v)?)))
                .collect();
            let get = |k: ServerKind| values.iter().find(|(s, _)| *s == k).map(|(_, v)| *v);
            let ratio = match (get(ServerKind::Tandem), get(ServerKind::Ganesha)) {
                (Some(t), Some(g)) if g > 0.0 => Some(t / g),
                _ => None,
            };
            ReportRow {
                workload: row.label(opts),
                unit: row.unit(),
                values,
                samples,
                ratio,
            }
        })
        .collect();
    BenchReport {
        header,
        servers,
        rows,
        notes: measured.notes,
        failures,
    }
}
