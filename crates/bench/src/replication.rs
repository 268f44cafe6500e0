//! `tandem bench replication`: the replication benchmark, one table from one
//! run. Two Tandem sites in this process (see `replication_sites.rs`),
//! the active one replicating in async mode to the other through a TCP
//! proxy that counts the bytes on the wire; an NFS client
//! (`nfs3_client`, loopback) writes at the active site.
//!
//! Rows: steady lag at paced client rates (`replication_lag.rs`); wire
//! bytes per changed byte for a mixed change set; and catch-up after the
//! replica was down during a change set, against `rsync -a --inplace`
//! over loopback for the same change set between two directories.
//! Nothing here asserts on time: it measures and prints, and judges the
//! issue's goals in the table only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nfs3_client::nfs3_types::nfs3::nfs_fh3;
use tandem_testkit::client::{Client, Mounted};
use tracing::{info, warn};

use crate::replication_changes::{self as changes, ChangeSet};
use crate::replication_lag;
use crate::replication_options::{Rate, ReplOptions};
use crate::replication_report::{ReplReport, ReplRow};
use crate::replication_rsync;
use crate::replication_sites::Sites;
use crate::stats;

/// The goals.
const GOAL_LAG_P99_MS: f64 = 1000.0;
const GOAL_LAG_RATE_MB_S: f64 = 100.0;
const GOAL_WIRE_RATIO: f64 = 1.05;
/// A paced row counts as reaching its rate within this fraction.
const RATE_TOLERANCE: f64 = 0.95;

/// Runs the bench and returns the report; a phase that fails is listed in
/// [`ReplReport::failures`] and the others still run where they can.
/// Blocking: runs on a thread of its own with its own runtimes.
pub fn run_replication(opts: ReplOptions) -> anyhow::Result<ReplReport> {
    std::thread::Builder::new()
        .name("tandem-replbench".into())
        .spawn(move || run_on_this_thread(&opts))
        .context("spawning the bench thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the bench thread panicked"))?
}

/// [`run_replication`] for async callers.
pub async fn run_replication_async(opts: ReplOptions) -> anyhow::Result<ReplReport> {
    tokio::task::spawn_blocking(move || run_replication(opts))
        .await
        .context("the bench task failed")?
}

fn mb_s(bytes: u64, t: Duration) -> Option<f64> {
    let s = t.as_secs_f64();
    (s > 0.0).then(|| bytes as f64 / 1e6 / s)
}

fn run_on_this_thread(opts: &ReplOptions) -> anyhow::Result<ReplReport> {
    opts.validate()?;
    let began = Instant::now();
    let started_at = utc_now();
    let mut temp = None;
    let work: PathBuf = match &opts.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("tandem-replbench-")
                .tempdir_in("/var/tmp")
                .context("creating a work directory under /var/tmp")?;
            let p = t.path().to_path_buf();
            temp = Some(t);
            p
        }
    };
    for sub in ["sites", "rsync"] {
        if work.join(sub).exists() {
            anyhow::bail!(
                "{} already exists; give an empty --dir",
                work.join(sub).display()
            );
        }
    }
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("replbench-client")
        .build()
        .context("building the client runtime")?;
    let mut report = ReplReport::default();
    let mut sites = Sites::start(
        &work.join("sites"),
        opts.active_ip,
        opts.replica_ip,
        opts.converge_timeout,
        None,
    )?;
    let mut mounted = client_rt.block_on(Mounted::mount(sites.target(), opts.writers))?;
    let root = mounted.root.clone();

    let pool = replication_lag::pool(opts.lag_file_bytes, opts.seed);
    for (i, &rate) in opts.rates.iter().enumerate() {
        let name = format!("steady writes, {} target", rate.label());
        info!(row = %name, "measuring");
        match client_rt.block_on(lag_row(&sites, &mut mounted, &root, i, rate, opts, &pool)) {
            Ok(row) => report.rows.push(row),
            Err(e) => report.failures.push(format!("{name}: {e:#}")),
        }
    }

    info!("measuring the mixed change set");
    let first = mounted.clients.first_mut().context("no NFS connection")?;
    match client_rt.block_on(mixed_row(&sites, first, &root, opts)) {
        Ok((row, note)) => {
            report.rows.push(row);
            report.notes.push(note);
        }
        Err(e) => report.failures.push(format!("mixed change set: {e:#}")),
    }

    info!("measuring catch-up");
    let set = catch_up_set(opts);
    let first = mounted.clients.first_mut().context("no NFS connection")?;
    let tandem = catch_up_tandem(&client_rt, &mut sites, first, &root, opts, &set, false);
    let rsync = if opts.rsync {
        Some(catch_up_rsync(&work.join("rsync"), opts, &set))
    } else {
        None
    };
    let changed = set.changed_bytes();
    let rsync_row = match rsync {
        Some(Ok(run)) => Some(ReplRow {
            name: "catch-up: rsync -a --inplace (daemon, loopback)".into(),
            changed_bytes: Some(changed),
            wire_bytes: Some(run.sent + run.received),
            seconds: Some(run.elapsed.as_secs_f64()),
            ..ReplRow::default()
        }),
        Some(Err(e)) => {
            report.failures.push(format!("rsync: {e:#}"));
            None
        }
        None => None,
    };
    match tandem {
        Ok(c) => {
            let rsync_s = rsync_row.as_ref().and_then(|r| r.seconds);
            report.rows.push(ReplRow {
                name: "catch-up: Tandem from journal (session start to converged)".into(),
                changed_bytes: Some(changed),
                wire_bytes: Some(c.wire_bytes),
                seconds: Some(c.session_to_converged.as_secs_f64()),
                goal: Some("faster than rsync".into()),
                verdict: rsync_s.map(|r| {
                    let t = c.session_to_converged.as_secs_f64();
                    if t < r {
                        Ok(())
                    } else {
                        Err(format!("{:.2}x rsync's time", t / r))
                    }
                }),
                ..ReplRow::default()
            });
            report.rows.push(ReplRow {
                name: "catch-up: Tandem, replica restart to converged".into(),
                changed_bytes: Some(changed),
                wire_bytes: Some(c.wire_bytes),
                seconds: Some(c.restart_to_converged.as_secs_f64()),
                ..ReplRow::default()
            });
        }
        Err(e) => report.failures.push(format!("Tandem catch-up: {e:#}")),
    }
    report.rows.extend(rsync_row);

    client_rt.block_on(mounted.unmount());
    sites.stop();
    drop(sites);
    if let Err(e) = std::fs::remove_dir_all(work.join("sites")) {
        warn!(error = %e, "removing the first sites' data");
    }

    // The same change set once more, with a journal limit the change set
    // passes, so the returning replica gets the changed-ranges catch-up.
    let smallest_limit = tandem_control::config::site::MIN_JOURNAL_MAX_BYTES;
    let overflow = if changed < 2 * smallest_limit {
        // Tiny runs (the smoke test): the journal limit cannot be set
        // below the change set, so the journal would serve the catch-up.
        report.notes.push(format!(
            "no change-map catch-up row: the change set ({changed} bytes) is under twice the smallest \
             journal_max_bytes ({smallest_limit} bytes)"
        ));
        None
    } else {
        info!("measuring catch-up from the change map");
        Some(catch_up_overflow(&client_rt, &work, opts, &set))
    };
    match overflow {
        None => {}
        Some(Ok((c, limit))) => {
            let rsync_s = report
                .rows
                .iter()
                .find(|r| r.name.starts_with("catch-up: rsync"))
                .and_then(|r| r.seconds);
            let t = c.session_to_converged.as_secs_f64();
            report.rows.push(ReplRow {
                name: format!(
                    "catch-up: Tandem from change map, journal_max_bytes {} MiB (session start to converged)",
                    limit >> 20
                ),
                changed_bytes: Some(changed),
                wire_bytes: Some(c.wire_bytes),
                seconds: Some(t),
                goal: Some("faster than rsync".into()),
                verdict: rsync_s.map(|r| {
                    if t < r {
                        Ok(())
                    } else {
                        Err(format!("{:.2}x rsync's time", t / r))
                    }
                }),
                ..ReplRow::default()
            });
        }
        Some(Err(e)) => report
            .failures
            .push(format!("Tandem change-map catch-up: {e:#}")),
    }
    drop(client_rt);
    report.header = header(opts, &work, &started_at, &set);
    report.notes.extend(notes(opts));
    report.notes.push(format!(
        "whole run took {:.0} s",
        began.elapsed().as_secs_f64()
    ));
    if opts.keep {
        if let Some(t) = temp.take() {
            let _kept = t.keep();
        }
        info!(dir = %work.display(), "data kept");
    }
    Ok(report)
}

async fn lag_row(
    sites: &Sites,
    mounted: &mut Mounted,
    root: &nfs_fh3,
    i: usize,
    rate: Rate,
    opts: &ReplOptions,
    pool: &Arc<Vec<u8>>,
) -> anyhow::Result<ReplRow> {
    let probe = sites.probe()?;
    let c = mounted.clients.first_mut().context("no NFS connection")?;
    let fh = c.create(root, &format!("lag{i}"), 0o644).await?;
    probe.converged(opts.converge_timeout).await?;
    let wire_before = sites.wire();
    let run = replication_lag::run(&probe, &mut mounted.clients, &fh, rate, opts, pool).await?;
    let wire = sites.wire().since(wire_before).total();
    // Removed so the rows' files do not add up on both sites' disks.
    let c = mounted.clients.first_mut().context("no NFS connection")?;
    c.remove(root, &format!("lag{i}")).await?;
    let client = mb_s(run.written_bytes, run.client_time);
    let p99 = stats::percentile_nearest_rank(&run.write_lag_ms, 99.0);
    let (goal, verdict) = match rate {
        Rate::MegabytesPerSecond(r) if (r - GOAL_LAG_RATE_MB_S).abs() < f64::EPSILON => {
            let reached = client.unwrap_or(0.0) >= r * RATE_TOLERANCE;
            let v = match p99 {
                _ if !reached => Err(format!(
                    "client reached only {:.1} MB/s",
                    client.unwrap_or(0.0)
                )),
                Some(p) if p < GOAL_LAG_P99_MS => Ok(()),
                Some(p) => Err(format!("p99 {p:.0} ms")),
                None => Err("no lag samples".into()),
            };
            (Some("lag p99 < 1 s at 100 MB/s".into()), Some(v))
        }
        _ => (None, None),
    };
    Ok(ReplRow {
        name: format!(
            "steady writes, {} target ({} writes)",
            rate.label(),
            run.write_lag_ms.len()
        ),
        client_mb_s: client,
        replicated_mb_s: mb_s(run.written_bytes, run.replicated_time),
        lag_p50_ms: stats::percentile_nearest_rank(&run.write_lag_ms, 50.0),
        lag_p99_ms: p99,
        lag_max_ms: stats::percentile_nearest_rank(&run.write_lag_ms, 100.0),
        status_lag_p99_ms: stats::percentile_nearest_rank(&run.status_lag_ms, 99.0),
        changed_bytes: Some(run.written_bytes),
        wire_bytes: Some(wire),
        seconds: Some(run.client_time.as_secs_f64()),
        goal,
        verdict,
    })
}

async fn mixed_row(
    sites: &Sites,
    c: &mut Client,
    root: &nfs_fh3,
    opts: &ReplOptions,
) -> anyhow::Result<(ReplRow, String)> {
    let probe = sites.probe()?;
    let dir = c.mkdir(root, "mixed").await?;
    let each = opts.mixed_bytes / opts.mixed_files;
    changes::apply_nfs(
        c,
        &dir,
        &changes::initial_tree(opts.mixed_files, opts.mixed_bytes, opts.seed ^ 1),
    )
    .await?;
    probe.converged(opts.converge_timeout).await?;
    let set = changes::mixed(opts.mixed_files, each, opts.seed ^ 2);
    let before = sites.wire();
    let started = Instant::now();
    changes::apply_nfs(c, &dir, &set).await?;
    let done = probe.converged(opts.converge_timeout).await?;
    let wire = sites.wire().since(before);
    let changed = set.changed_bytes();
    let ratio = wire.total() as f64 / changed.max(1) as f64;
    let row = ReplRow {
        name: "mixed change set, incompressible (write to converged)".into(),
        changed_bytes: Some(changed),
        wire_bytes: Some(wire.total()),
        seconds: Some(done.saturating_duration_since(started).as_secs_f64()),
        goal: Some(format!("wire/changed <= {GOAL_WIRE_RATIO}")),
        verdict: Some(if ratio <= GOAL_WIRE_RATIO {
            Ok(())
        } else {
            Err(format!("{ratio:.3}"))
        }),
        ..ReplRow::default()
    };
    let note = format!(
        "mixed change set: {} files of {} bytes, then {} overwrites of a quarter file, {} new files, \
         {} appends, {} truncates, {} renames, {} removes; changed = data bytes written ({}); \
         wire = both directions through the proxy (active to replica {}, back {})",
        opts.mixed_files,
        each,
        set.count(|c| matches!(c, changes::Change::Overwrite { .. })),
        set.count(|c| matches!(c, changes::Change::Create { .. })),
        set.count(|c| matches!(c, changes::Change::Append { .. })),
        set.count(|c| matches!(c, changes::Change::Truncate { .. })),
        set.count(|c| matches!(c, changes::Change::Rename { .. })),
        set.count(|c| matches!(c, changes::Change::Remove { .. })),
        changed,
        wire.forward,
        wire.backward
    );
    Ok((row, note))
}

fn catch_up_set(opts: &ReplOptions) -> ChangeSet {
    changes::catch_up(
        opts.tree_files,
        opts.tree_bytes / opts.tree_files,
        opts.tree_change_fraction,
        opts.tree_new_files,
        opts.seed ^ 3,
    )
}

struct CatchUp {
    restart_to_converged: Duration,
    session_to_converged: Duration,
    wire_bytes: u64,
}

/// Writes the tree, lets it replicate, stops the replica, applies the
/// change set, restarts the replica and times its return to convergence.
fn catch_up_tandem(
    client_rt: &tokio::runtime::Runtime,
    sites: &mut Sites,
    c: &mut Client,
    root: &nfs_fh3,
    opts: &ReplOptions,
    set: &ChangeSet,
    expect_overflow: bool,
) -> anyhow::Result<CatchUp> {
    let probe = sites.probe()?;
    let tree = changes::initial_tree(opts.tree_files, opts.tree_bytes, opts.seed ^ 4);
    let dir = client_rt.block_on(async {
        let dir = c.mkdir(root, "tree").await?;
        changes::apply_nfs(c, &dir, &tree).await?;
        probe.converged(opts.converge_timeout).await?;
        anyhow::Ok(dir)
    })?;
    sites.stop_replica()?;
    client_rt.block_on(changes::apply_nfs(c, &dir, set))?;
    if expect_overflow {
        // The limit is checked at checkpoints, which follow journal growth.
        let deadline = Instant::now() + opts.converge_timeout;
        loop {
            let state = sites.active_replication_state()?;
            if state == tandem_control::replication::ReplicationState::Overflow {
                break;
            }
            if Instant::now() >= deadline {
                bail!("the active site never entered overflow (state {state})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let before = sites.wire();
    let restarted = sites.restart_replica()?;
    let converged = client_rt.block_on(probe.converged(opts.converge_timeout))?;
    let wire = sites.wire().since(before).total();
    let session = sites
        .last_session()
        .filter(|t| *t >= restarted)
        .unwrap_or(restarted);
    Ok(CatchUp {
        restart_to_converged: converged.saturating_duration_since(restarted),
        session_to_converged: converged.saturating_duration_since(session),
        wire_bytes: wire,
    })
}

/// Fresh sites whose journal limit is a quarter of the change set (at
/// least the 1 MiB minimum), the catch-up measured as above; checks that
/// the active site did enter overflow while the replica was away.
fn catch_up_overflow(
    client_rt: &tokio::runtime::Runtime,
    work: &Path,
    opts: &ReplOptions,
    set: &ChangeSet,
) -> anyhow::Result<(CatchUp, u64)> {
    let limit = (set.changed_bytes() / 4).max(tandem_control::config::site::MIN_JOURNAL_MAX_BYTES);
    let mut sites = Sites::start(
        &work.join("sites-overflow"),
        opts.active_ip,
        opts.replica_ip,
        opts.converge_timeout,
        Some(limit),
    )?;
    let mut mounted = client_rt.block_on(Mounted::mount(sites.target(), 1))?;
    let root = mounted.root.clone();
    let c = mounted.clients.first_mut().context("no NFS connection")?;
    let result = catch_up_tandem(client_rt, &mut sites, c, &root, opts, set, true);
    client_rt.block_on(mounted.unmount());
    sites.stop();
    drop(sites);
    if let Err(e) = std::fs::remove_dir_all(work.join("sites-overflow")) {
        warn!(error = %e, "removing the overflow sites' data");
    }
    Ok((result?, limit))
}

/// The same tree and change set between two local directories.
fn catch_up_rsync(
    work: &Path,
    opts: &ReplOptions,
    set: &ChangeSet,
) -> anyhow::Result<replication_rsync::RsyncRun> {
    let (src, dest) = (work.join("src"), work.join("dest"));
    std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    let tree = changes::initial_tree(opts.tree_files, opts.tree_bytes, opts.seed ^ 4);
    changes::apply_local(&src, &tree)?;
    // rsync's quick check compares whole seconds of mtime: a file changed
    // in the second it was written would look unchanged and be skipped.
    replication_rsync::age_files(&src, Duration::from_secs(3600))?;
    replication_rsync::copy_tree(&src, &dest)?;
    changes::apply_local(&src, set)?;
    let run = replication_rsync::sync(&opts.rsync_binary, work, &src, &dest)?;
    replication_rsync::same_trees(&src, &dest)?;
    if let Err(e) = std::fs::remove_dir_all(&dest).and_then(|()| std::fs::remove_dir_all(&src)) {
        warn!(error = %e, "removing rsync's trees");
    }
    Ok(run)
}

fn header(opts: &ReplOptions, work: &Path, started_at: &str, set: &ChangeSet) -> Vec<String> {
    let mut h = vec![
        format!("Tandem replication benchmark, {started_at}, data under {}", work.display()),
        format!(
            "two sites in one process (active NFS {}, replica {}), async mode, mutual TLS through a counting TCP proxy",
            opts.active_ip, opts.replica_ip
        ),
        format!(
            "steady rows: {} writers, 1 MiB UNSTABLE WRITEs of random data, COMMIT every {} MiB, {} s per rate, \
             wrapping in a {} MiB file; lag p50/p99/max = per WRITE, from its reply until the replica \
             acknowledged its LSN (bounded by the active site's last LSN read right after the reply; \
             acknowledgements sampled every {} ms); status lag_ms = the active site's figure (age of the \
             oldest unacknowledged record) sampled as often while writing",
            opts.writers,
            opts.commit_every_bytes >> 20,
            opts.phase.as_secs_f64(),
            opts.lag_file_bytes >> 20,
            opts.sample_every.as_millis()
        ),
        format!(
            "catch-up rows: tree of {} files, {} MiB; change set {} in-place 64 KiB overwrites + {} new files = {} bytes, \
             written while the replica site was stopped",
            opts.tree_files,
            opts.tree_bytes >> 20,
            set.count(|c| matches!(c, changes::Change::Overwrite { .. })),
            set.count(|c| matches!(c, changes::Change::Create { .. })),
            set.changed_bytes()
        ),
    ];
    if cfg!(debug_assertions) {
        h.push("WARNING: debug build; the numbers mean nothing (build with --release)".into());
    }
    h
}

fn notes(opts: &ReplOptions) -> Vec<String> {
    let mut n = vec![
        "MB = 10^6 bytes; MiB = 2^20 bytes. replicated MB/s = client bytes / (first WRITE to the replica \
         acknowledging the last one)"
            .into(),
        "wire = every byte between the sites' TCP sockets (TLS records, handshakes, acks), both directions".into(),
        "batches are zstd-compressed only when that saves 3% or more, so incompressible data goes \
         uncompressed (the wire/changed rows)"
            .into(),
        "lag_ms counts from a record's creation and the sender ships durable records only; it makes \
         waiting records durable itself at least every 20 ms (max_ship_delay), so lag no longer waits \
         for the client's COMMIT"
            .into(),
        "'from journal': the replica returns while the active site still holds the journal it lacks; \
         'from change map': the change set passes journal_max_bytes, the active site tracks changed \
         ranges and the replica gets them as one catch-up. 'session start' = the replication \
         connection that reached the restarted replica, so the sender's reconnect backoff is \
         excluded; the restart row includes it"
            .into(),
    ];
    if !opts.rsync {
        n.push("rsync row skipped (--no-rsync)".into());
    }
    n
}

/// "YYYY-MM-DD HH:MM:SS UTC" now.
fn utc_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
