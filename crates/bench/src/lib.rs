//! `tandem bench`: the same NFSv3 client workload against Tandem and
//! against NFS-Ganesha on the same machine and disk, one server after the
//! other, reported as one table of rates and Tandem/Ganesha ratios.
//!
//! The workload (see `workload.rs`) is driven by the `nfs3_client` crate
//! over TCP on loopback with `in_flight` connections, one call outstanding
//! on each. Tandem's NFS service runs in this process on a runtime of its
//! own; Ganesha is a separate process (see `ganesha.rs`). Nothing here
//! asserts on time: rates are measured and reported, never judged.

mod client;
mod error;
mod ganesha;
mod options;
mod report;
mod rpcbind_stub;
mod tandem_server;
mod target;
mod workload;

use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};

pub use error::BenchError;
pub use ganesha::config_text as ganesha_config_text;
pub use options::{BenchOptions, ServerKind, MAX_IN_FLIGHT, MAX_IO_BYTES};
pub use report::{BenchReport, ReportRow};

use ganesha::{GaneshaOptions, GaneshaServer};
use tandem_server::TandemServer;
use workload::{human_bytes, ServerRun, ROWS};

/// Runs the bench and returns the report. A server that fails to start or
/// to complete the workload does not stop the others: its error is in
/// [`BenchReport::failures`] (check [`BenchReport::is_complete`]). Blocking; safe to call from any
/// thread, including from inside an async runtime (the work happens on a
/// thread of its own with its own runtimes).
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
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()
        .context("building the client runtime")?;

    let mut runs: Vec<(ServerKind, ServerRun)> = Vec::new();
    let mut failures = Vec::new();
    for &kind in &opts.servers {
        let dir = workdir.path().join(kind.name().to_ascii_lowercase());
        if dir.exists() {
            anyhow::bail!(
                "{} already exists; give an empty --dir or remove it",
                dir.display()
            );
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        info!(server = %kind, dir = %dir.display(), "starting");
        let result = match kind {
            ServerKind::Ganesha => run_ganesha(&client_rt, &dir, opts),
            ServerKind::Tandem => run_tandem(&client_rt, &dir, opts),
        };
        if !opts.keep {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), error = %e, "removing a server's data");
            }
        }
        // Let the previous server's dirty pages reach the disk before the
        // next one starts, so it does not pay for them.
        sync_disks();
        match result {
            Ok(r) => runs.push((kind, r)),
            Err(e) => {
                warn!(server = %kind, error = %format!("{e:#}"), "run failed");
                failures.push(format!("{kind}: {e:#}"));
            }
        }
    }
    drop(client_rt);
    let report = build_report(opts, workdir.path(), &runs, failures);
    if opts.keep {
        if let WorkDir::Temp(t) = workdir {
            let kept = t.keep();
            info!(dir = %kept.display(), "data kept");
        }
    }
    Ok(report)
}

fn run_ganesha(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    opts: &BenchOptions,
) -> anyhow::Result<ServerRun> {
    let gopts = GaneshaOptions {
        binary: opts.ganesha_binary.clone(),
        address: opts.ganesha_address,
        nfs_port: opts.ganesha_nfs_port,
        mount_port: opts.ganesha_mount_port,
        start_timeout: opts.ganesha_start_timeout,
    };
    rt.block_on(async {
        let mut server = GaneshaServer::start(dir, &gopts).await?;
        let result = workload::run(server.target(), opts).await;
        server.stop().await;
        result.map_err(|e| e.context(format!("Ganesha's log: {}", server.log().display())))
    })
}

fn run_tandem(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    opts: &BenchOptions,
) -> anyhow::Result<ServerRun> {
    let mut server = TandemServer::start(
        &dir.join("store"),
        opts.tandem_address,
        opts.tandem_nfs_port,
        opts.tandem_mount_port,
    )?;
    let target = server.target().clone();
    let result = rt.block_on(workload::run(&target, opts));
    server.stop();
    result
}

fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn build_report(
    opts: &BenchOptions,
    dir: &Path,
    runs: &[(ServerKind, ServerRun)],
    failures: Vec<String>,
) -> BenchReport {
    let mut servers = opts.servers.clone();
    servers.sort();
    let order: Vec<String> = opts.servers.iter().map(|k| k.name().to_string()).collect();
    let mut header = vec![
        "Tandem NFSv3 benchmark (nfs3_client over TCP loopback, same machine, same disk)".into(),
        format!(
            "data under {}; servers run one after the other: {}",
            dir.display(),
            order.join(", ")
        ),
        format!(
            "{} requests in flight (one per connection), AUTH_SYS root, no root squash",
            opts.in_flight
        ),
        format!(
            "Tandem: in-process NFS service on its own runtime, address {}; \
             Ganesha: separate ganesha.nfsd process (FSAL VFS), address {}",
            opts.tandem_address, opts.ganesha_address
        ),
        format!(
            "sizes: sequential {}, random {} x {}, {} files, {} READDIRPLUS entries",
            human_bytes(opts.seq_bytes),
            opts.random_writes,
            human_bytes(u64::from(opts.random_io_bytes)),
            opts.meta_files,
            opts.readdir_entries
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
            let values: Vec<(ServerKind, f64)> = servers
                .iter()
                .filter_map(|s| {
                    let run = &runs.iter().find(|(k, _)| k == s)?.1;
                    let v = run.rates.iter().find(|(r, _)| *r == row)?.1;
                    Some((*s, v))
                })
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
                ratio,
            }
        })
        .collect();
    let notes = runs
        .iter()
        .flat_map(|(_, r)| r.notes.iter().cloned())
        .collect();
    BenchReport {
        header,
        servers,
        rows,
        notes,
        failures,
    }
}
