//! The switchover rows of `tandem bench failover`: one pair of sites,
//! `runs` switchovers alternating direction (to the DR site, back, ...),
//! while a client writes in a loop and retries what is answered JUKEBOX
//! or lost with a connection. Each switchover gives its total time, the
//! pause the daemon reports, and the pause the client saw: the longest gap
//! between two of its successful writes around it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nfs3_client::nfs3_types::nfs3::{nfs_fh3, nfsstat3, stable_how};
use tandem_testkit::client::{Client, Mounted};
use tandem_testkit::failover_sites::FailoverSites;
use tandem_testkit::target::Target;
use tandem_testkit::{pattern, within, ClientError};

use crate::failover::FailoverOptions;
use crate::failover_report::MeasureRow;

pub const ROW_TOTAL: &str = "switchover: command to done";
pub const ROW_PAUSE_DAEMON: &str = "switchover: pause (daemon's figure)";
pub const ROW_PAUSE_CLIENT: &str = "switchover: pause seen by a client";
/// The goal for the client-visible pause.
const PAUSE_GOAL_MS: f64 = 1000.0;
/// Size of each of the looping client's writes.
const LOOP_WRITE_BYTES: usize = 4096;
/// How long one connect and write may wait for the reply before the
/// client tries again on a new connection.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(200);
/// Pause before retrying a write answered JUKEBOX or a failed connect.
const RETRY_GAP: Duration = Duration::from_millis(2);
/// The looping client rewrites the same region of its file.
const LOOP_FILE_BYTES: u64 = 1 << 20;

/// The three switchover rows, with one sample per switchover; failures
/// go to `failures`.
pub async fn measure(
    opts: &FailoverOptions,
    dir: PathBuf,
    failures: &mut Vec<String>,
) -> Vec<MeasureRow> {
    let mut total = MeasureRow::new(ROW_TOTAL, "ms");
    let mut daemon = MeasureRow::new(ROW_PAUSE_DAEMON, "ms").with_goal("< 1 s", PAUSE_GOAL_MS);
    let mut client = MeasureRow::new(ROW_PAUSE_CLIENT, "ms").with_goal("< 1 s", PAUSE_GOAL_MS);
    let sites = match start(opts, dir).await {
        Ok(s) => s,
        Err(e) => {
            failures.push(format!("switchover sites: {e:#}"));
            return vec![total, daemon, client];
        }
    };
    for n in 0..opts.runs {
        match one_switchover(opts, &sites, n % 2 == 0).await {
            Ok((took, report_pause, seen)) => {
                total.samples.push(ms(took));
                daemon.samples.push(report_pause as f64 / 1000.0);
                client.samples.push(ms(seen));
            }
            Err(e) => {
                failures.push(format!("switchover {n}: {e:#}"));
                break;
            }
        }
    }
    vec![total, daemon, client]
}

async fn start(opts: &FailoverOptions, dir: PathBuf) -> anyhow::Result<FailoverSites> {
    FailoverSites::start(opts.sites(dir)).await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One switchover with the looping client: (its time, the daemon's pause
/// in µs, the client's longest gap).
async fn one_switchover(
    opts: &FailoverOptions,
    sites: &FailoverSites,
    to_dr: bool,
) -> anyhow::Result<(Duration, u64, Duration)> {
    let target = sites.target.clone();
    let fh = within(opts.timeout, "creating the looping client's file", async {
        let mut m = Mounted::mount(&target, 1).await?;
        let c = m.clients.first_mut().context("no NFS connection")?;
        let fh = c
            .create(&m.root, &format!("loop-{to_dr}.bin"), 0o644)
            .await?;
        anyhow::Ok(fh)
    })
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let writer = tokio::spawn(write_loop(target, fh, stop.clone(), first_tx, opts.timeout));
    // The switchover starts once the client writes.
    within(opts.timeout, "the looping client's first write", async {
        first_rx
            .await
            .context("the looping client stopped before its first write")
    })
    .await?;
    let started = Instant::now();
    let switched = sites.switchover(to_dr).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let gap = writer.await.context("the looping client panicked")?;
    let report = switched?;
    Ok((took, report.pause_micros, gap?))
}

/// Writes `fh` in a loop, each write on a new connection, retrying JUKEBOX
/// and refused connections, until `stop` is set and one more write has
/// succeeded; returns the longest gap between two successful writes.
/// A new connection per write because nfs3_client does not notice a
/// connection the server closed (it waits for the reply until
/// `CALL_TIMEOUT`), where a kernel client reconnects at once: with one
/// long-lived connection the figure would be that timeout.
async fn write_loop(
    target: Target,
    fh: nfs_fh3,
    stop: Arc<AtomicBool>,
    first: tokio::sync::oneshot::Sender<()>,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let data = pattern(LOOP_WRITE_BYTES, 11);
    let mut first = Some(first);
    let mut last_ok: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    let mut offset = 0u64;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if let Some(at) = last_ok {
            if at.elapsed() > timeout {
                bail!("no write succeeded for {timeout:?}");
            }
        }
        let res = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut c = Client::connect(&target).await?;
            let r = c.write(&fh, offset, &data, stable_how::UNSTABLE).await;
            anyhow::Ok(r)
        })
        .await;
        match res {
            Ok(Ok(Ok(_))) => {
                let now = Instant::now();
                if let Some(at) = last_ok {
                    longest = longest.max(now - at);
                }
                last_ok = Some(now);
                offset = (offset + LOOP_WRITE_BYTES as u64) % LOOP_FILE_BYTES;
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
                if stopping {
                    return Ok(longest);
                }
            }
            Ok(Ok(Err(ClientError::Nfs {
                status: nfsstat3::NFS3ERR_JUKEBOX,
                ..
            }))) => tokio::time::sleep(RETRY_GAP).await,
            Ok(Ok(Err(ClientError::Nfs { status, .. }))) => {
                bail!("a write was answered {status:?}")
            }
            // Refused, broken or hung: again, on a new connection.
            _ => tokio::time::sleep(RETRY_GAP).await,
        }
    }
}
