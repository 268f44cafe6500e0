//! The steady-lag rows: writers send 1 MiB UNSTABLE WRITEs on a fixed
//! schedule (write k is due at start + k x 1 MiB / rate; a late writer
//! sends at once, so a rate the server cannot take shows up as a lower
//! client rate) with a COMMIT every `commit_every_bytes`, while a sampler
//! reads the active site's status every `sample_every`.
//!
//! Two lags come out. Per write: after each WRITE reply the writer reads
//! the active site's last LSN (an upper bound of that write's LSN, which
//! the reply does not carry), and the write's lag is the time from the
//! reply until the first sample whose acknowledged LSN reached it: an
//! upper bound, at the sampler's resolution. And the status figure
//! `lag_ms` (age of the oldest record the replica has not acknowledged),
//! sampled while the writers ran.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nfs3_client::nfs3_types::nfs3::{nfs_fh3, stable_how};
use parking_lot::Mutex;
use tandem_testkit::client::Client;
use tokio::task::JoinSet;

use crate::replication_options::{Rate, ReplOptions, WRITE_BYTES};
use crate::replication_sites::Probe;
use tandem_store::Lsn;

/// What one steady-lag row measured.
#[derive(Debug, Clone)]
pub struct LagRun {
    pub written_bytes: u64,
    /// First WRITE sent to last reply, but at least the phase: a paced
    /// run's last WRITE is due one interval before the phase ends.
    pub client_time: Duration,
    /// First WRITE sent to the replica acknowledging everything.
    pub replicated_time: Duration,
    /// Per-write lag in ms (reply to acknowledged), sorted.
    pub write_lag_ms: Vec<f64>,
    /// Status lag_ms samples taken while the writers ran, sorted.
    pub status_lag_ms: Vec<f64>,
}

/// One status sample: when, the acknowledged LSN, lag_ms.
type Seen = (Instant, Lsn, u64);

/// Each write's lag: from its reply to the first sample at or after it
/// whose acknowledged LSN reached the write's bound (or `end` if none
/// did). `samples` are in time order, their LSNs never decrease.
fn write_lags(writes: &[(Instant, Lsn)], samples: &[Seen], end: Instant) -> Vec<f64> {
    let mut lags: Vec<f64> = writes
        .iter()
        .map(|&(at, lsn)| {
            let from = samples.partition_point(|s| s.0 < at);
            let rest = &samples[from..];
            let hit = rest.partition_point(|s| s.1 < lsn);
            let acked = rest.get(hit).map_or(end, |s| s.0);
            acked.saturating_duration_since(at).as_secs_f64() * 1000.0
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    lags
}

/// Incompressible data, generated once: WRITE k sends slice k mod n.
pub fn pool(bytes: u64, seed: u64) -> Arc<Vec<u8>> {
    let len = usize::try_from(bytes.clamp(WRITE_BYTES as u64, 64 << 20)).unwrap_or(WRITE_BYTES);
    Arc::new(tandem_testkit::pattern(len - len % WRITE_BYTES, seed))
}

struct Plan {
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
    /// None: as fast as the writers go until the deadline.
    interval: Option<Duration>,
    /// Writes due in a paced run.
    total: u64,
    file_writes: u64,
    writes_per_commit: u64,
    next: AtomicU64,
    /// Each write's reply time and LSN bound.
    replies: Mutex<Vec<(Instant, Lsn)>>,
}

/// Runs one row with `clients` (taken and given back) writing into `fh`.
pub async fn run(
    probe: &Probe,
    clients: &mut Vec<Client>,
    fh: &nfs_fh3,
    rate: Rate,
    opts: &ReplOptions,
    pool: &Arc<Vec<u8>>,
) -> anyhow::Result<LagRun> {
    let interval = match rate {
        Rate::MegabytesPerSecond(r) => {
            Some(Duration::from_secs_f64(WRITE_BYTES as f64 / (r * 1e6)))
        }
        Rate::Max => None,
    };
    let total = match interval {
        Some(i) => (opts.phase.as_secs_f64() / i.as_secs_f64()).ceil().max(1.0) as u64,
        None => u64::MAX,
    };
    let start = tokio::time::Instant::now();
    let plan = Arc::new(Plan {
        start,
        deadline: start + opts.phase,
        interval,
        total,
        file_writes: (opts.lag_file_bytes / WRITE_BYTES as u64).max(1),
        writes_per_commit: (opts.commit_every_bytes / WRITE_BYTES as u64).max(1),
        next: AtomicU64::new(0),
        replies: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (probe, stop, every) = (probe.clone(), stop.clone(), opts.sample_every);
        tokio::spawn(async move {
            let mut seen: Vec<Seen> = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let s = probe.sample().await?;
                seen.push((Instant::now(), s.replica_lsn, s.lag_ms));
            }
            anyhow::Ok(seen)
        })
    };
    let mut writers = JoinSet::new();
    for mut c in clients.drain(..) {
        let (plan, pool, fh, probe) = (plan.clone(), pool.clone(), fh.clone(), probe.clone());
        writers.spawn(async move {
            let r = write_loop(&mut c, &plan, &pool, &fh, &probe).await;
            (c, r)
        });
    }
    let mut written = 0u64;
    let mut first_err = None;
    while let Some(joined) = writers.join_next().await {
        let (c, r) = joined.context("a writer task failed")?;
        clients.push(c);
        match r {
            Ok(n) => written += n,
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let client_time = start.elapsed().max(opts.phase);
    let writers_end = Instant::now();
    // The sampler runs on until the replica has caught up, so the last
    // writes' acknowledgements are seen too.
    let finish = async {
        if let Some(e) = first_err {
            return Err(e);
        }
        if let Some(c) = clients.first_mut() {
            c.commit(fh).await?;
        }
        probe.converged(opts.converge_timeout).await
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let seen = sampler.await.context("the sampler task failed")??;
    let converged = finish?;
    let replicated_time = converged.saturating_duration_since(start.into_std());
    let replies = std::mem::take(&mut *plan.replies.lock());
    let mut status_lag_ms: Vec<f64> = seen
        .iter()
        .filter(|s| s.0 <= writers_end)
        .map(|s| s.2 as f64)
        .collect();
    status_lag_ms.sort_by(f64::total_cmp);
    Ok(LagRun {
        written_bytes: written,
        client_time,
        replicated_time,
        write_lag_ms: write_lags(&replies, &seen, converged),
        status_lag_ms,
    })
}

/// One writer: takes write indexes until the plan is done; returns the
/// bytes it wrote.
async fn write_loop(
    c: &mut Client,
    plan: &Plan,
    pool: &[u8],
    fh: &nfs_fh3,
    probe: &Probe,
) -> anyhow::Result<u64> {
    let slices = (pool.len() / WRITE_BYTES).max(1) as u64;
    let mut written = 0u64;
    loop {
        let k = plan.next.fetch_add(1, Ordering::Relaxed);
        match plan.interval {
            Some(i) => {
                if k >= plan.total {
                    return Ok(written);
                }
                let due = plan.start + i.mul_f64(k as f64);
                tokio::time::sleep_until(due).await;
            }
            None => {
                if tokio::time::Instant::now() >= plan.deadline {
                    return Ok(written);
                }
            }
        }
        let offset = (k % plan.file_writes) * WRITE_BYTES as u64;
        let at = ((k % slices) as usize) * WRITE_BYTES;
        let data = pool.get(at..at + WRITE_BYTES).context("pool slice")?;
        c.write_all(fh, offset, data, stable_how::UNSTABLE).await?;
        let replied = Instant::now();
        let bound = probe.sample().await?.last_lsn;
        plan.replies.lock().push((replied, bound));
        written += WRITE_BYTES as u64;
        if (k + 1).is_multiple_of(plan.writes_per_commit) {
            c.commit(fh).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write_lags;
    use std::time::{Duration, Instant};

    #[test]
    fn write_lag_is_reply_to_first_sample_past_its_lsn() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Acked LSN 0 until 20 ms, 5 at 30 ms, 9 at 40 ms.
        let samples = [
            (ms(10), 0, 0),
            (ms(20), 0, 0),
            (ms(30), 5, 0),
            (ms(40), 9, 0),
        ];
        // A write at 15 ms bounded by LSN 5: 15 ms. One at 35 ms by LSN 9:
        // 5 ms. One bounded by LSN 12 never seen: up to the end (100 ms).
        let writes = [(ms(15), 5), (ms(35), 9), (ms(50), 12)];
        let lags = write_lags(&writes, &samples, ms(100));
        assert_eq!(lags, vec![5.0, 15.0, 50.0]);
        // A sample before the reply never counts, even if its LSN is high.
        assert_eq!(write_lags(&[(ms(45), 1)], &samples, ms(60)), vec![15.0]);
    }
}
