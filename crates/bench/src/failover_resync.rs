//! The resync rows of `tandem bench failover`: fresh sites replicating
//! asynchronously; the active site is cut off from the DR site, a client
//! overwrites half of an existing file and writes a new file there (a
//! known amount of divergent bytes), the active site stops, the DR site
//! fails over and writes nothing, the first site comes back diverged and
//! `tandem resync` makes it a replica. The rows compare the file data it
//! fetched with the divergent bytes: the peer changed nothing, so
//! everything fetched is there to rewind the divergent writes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tandem_control::api::proto::mib;
use tandem_control::vserver::status::VserverState;
use tandem_testkit::client::Mounted;
use tandem_testkit::failover_sites::{FailoverSites, Replication};
use tandem_testkit::transfer::write_chunks;
use tandem_testkit::{pattern, within};

use crate::failover::FailoverOptions;
use crate::failover_report::MeasureRow;

pub const ROW_DIVERGENT: &str = "resync: divergent bytes";
pub const ROW_FETCHED: &str = "resync: fetched bytes";
pub const ROW_RATIO: &str = "resync: fetched / divergent";
pub const ROW_TIME: &str = "resync: command to done";
/// The goal: a resync fetches at most 1.1 x the divergent bytes.
const RATIO_GOAL: f64 = 1.1;

/// What one resync measured.
struct Run {
    divergent_bytes: u64,
    fetched_bytes: u64,
    took: Duration,
}

/// The resync rows, one sample per run (fresh sites each, under `dir`).
pub async fn measure(
    opts: &FailoverOptions,
    dir: &std::path::Path,
    failures: &mut Vec<String>,
) -> Vec<MeasureRow> {
    let mut divergent = MeasureRow::new(ROW_DIVERGENT, "MiB");
    let mut fetched = MeasureRow::new(ROW_FETCHED, "MiB");
    let mut ratio = MeasureRow::new(ROW_RATIO, "x").with_goal("<= 1.1 x", RATIO_GOAL);
    let mut time = MeasureRow::new(ROW_TIME, "ms");
    for n in 0..opts.runs {
        let run_dir = dir.join(format!("resync-{n}"));
        match one_run(opts, run_dir.clone()).await {
            Ok(r) => {
                divergent.samples.push(mib(r.divergent_bytes));
                fetched.samples.push(mib(r.fetched_bytes));
                ratio
                    .samples
                    .push(r.fetched_bytes as f64 / r.divergent_bytes.max(1) as f64);
                time.samples.push(r.took.as_secs_f64() * 1000.0);
            }
            Err(e) => failures.push(format!("resync {n}: {e:#}")),
        }
        if !opts.keep {
            if let Err(e) = std::fs::remove_dir_all(&run_dir) {
                tracing::warn!(dir = %run_dir.display(), error = %e, "cannot remove a run's sites");
            }
        }
    }
    vec![divergent, fetched, ratio, time]
}

async fn one_run(opts: &FailoverOptions, dir: PathBuf) -> anyhow::Result<Run> {
    let mut sites = FailoverSites::start_with(opts.sites(dir), Replication::Async).await?;
    let target = sites.target.clone();
    let len = usize::try_from(opts.write_bytes)?;
    let half = len / 2;
    let shared = pattern(len, 21);
    within(opts.timeout, "writing the shared file", async {
        let mut m = Mounted::mount(&target, 1).await?;
        let c = m.clients.first_mut().context("no NFS connection")?;
        let fh = c.create(&m.root, "shared.bin", 0o644).await?;
        write_chunks(c, &fh, 0, &shared).await?;
        c.commit(&fh).await?;
        anyhow::Ok(())
    })
    .await?;
    sites.wait_converged().await?;

    let paired = sites.cut_off_active().await?;
    // Divergent: the first half of the shared file rewritten, and a new
    // file as large as the other half.
    let over = pattern(half, 22);
    let new = pattern(len - half, 23);
    within(opts.timeout, "writing at the cut-off site", async {
        let mut m = Mounted::mount(&target, 1).await?;
        let c = m.clients.first_mut().context("no NFS connection")?;
        let fh = c.lookup(&m.root, "shared.bin").await?;
        write_chunks(c, &fh, 0, &over).await?;
        c.commit(&fh).await?;
        let fh = c.create(&m.root, "new.bin", 0o644).await?;
        write_chunks(c, &fh, 0, &new).await?;
        c.commit(&fh).await?;
        anyhow::Ok(())
    })
    .await?;
    sites.stop_active()?;
    sites.failover().await?;
    sites.restart_active(Some(&paired)).await?;
    sites.wait_state(false, VserverState::Diverged).await?;
    let started = Instant::now();
    let report = sites.resync_active().await?;
    let took = started.elapsed();
    sites.stop();
    Ok(Run {
        divergent_bytes: report.divergent_bytes,
        fetched_bytes: report.fetched_bytes,
        took,
    })
}
