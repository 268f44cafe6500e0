//! The steady-lag rows: writers send 1 MiB UNSTABLE WRITEs on a fixed
//! schedule (write k is due at start + k x 1 MiB / rate; a late writer
//! sends at once, so a rate the server cannot take shows up as a lower
//! client rate) with a COMMIT every `commit_every_bytes`, while a sampler
//! reads the active site's `lag_ms` (age of the oldest record the replica
//! has not acknowledged) every `sample_every`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nfs3_client::nfs3_types::nfs3::{nfs_fh3, stable_how};
use tokio::task::JoinSet;

use crate::client::Client;
use crate::replication_options::{Rate, ReplOptions, WRITE_BYTES};
use crate::replication_sites::Probe;

/// What one steady-lag row measured.
#[derive(Debug, Clone)]
pub struct LagRun {
    pub written_bytes: u64,
    /// First WRITE sent to last reply.
    pub client_time: Duration,
    /// First WRITE sent to the replica acknowledging everything.
    pub replicated_time: Duration,
    /// lag_ms samples taken while the writers ran, sorted.
    pub lag_ms: Vec<u64>,
}

impl LagRun {
    /// Nearest-rank percentile of the lag samples.
    pub fn lag_percentile(&self, p: f64) -> Option<f64> {
        percentile(&self.lag_ms, p)
    }
}

/// Nearest-rank percentile `p` (0..=100) of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64)
}

/// Incompressible data, generated once: WRITE k sends slice k mod n.
pub fn pool(bytes: u64, seed: u64) -> Arc<Vec<u8>> {
    use rand::{RngCore, SeedableRng};
    let len = usize::try_from(bytes.clamp(WRITE_BYTES as u64, 64 << 20)).unwrap_or(WRITE_BYTES);
    let len = len - len % WRITE_BYTES;
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    Arc::new(v)
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
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (probe, stop, every) = (probe.clone(), stop.clone(), opts.sample_every);
        tokio::spawn(async move {
            let mut lags = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                match probe.sample().await {
                    Ok(s) => lags.push(s.lag_ms),
                    Err(e) => return Err(e),
                }
            }
            Ok(lags)
        })
    };
    let mut writers = JoinSet::new();
    for mut c in clients.drain(..) {
        let (plan, pool, fh) = (plan.clone(), pool.clone(), fh.clone());
        writers.spawn(async move {
            let r = write_loop(&mut c, &plan, &pool, &fh).await;
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
    let client_time = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lag_ms = sampler.await.context("the sampler task failed")??;
    if let Some(e) = first_err {
        return Err(e);
    }
    if let Some(c) = clients.first_mut() {
        c.commit(fh).await?;
    }
    let converged = probe.converged(opts.converge_timeout).await?;
    let replicated_time = converged.saturating_duration_since(start.into_std());
    lag_ms.sort_unstable();
    Ok(LagRun {
        written_bytes: written,
        client_time,
        replicated_time,
        lag_ms,
    })
}

/// One writer: takes write indexes until the plan is done; returns the
/// bytes it wrote.
async fn write_loop(c: &mut Client, plan: &Plan, pool: &[u8], fh: &nfs_fh3) -> anyhow::Result<u64> {
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
        written += WRITE_BYTES as u64;
        if (k + 1).is_multiple_of(plan.writes_per_commit) {
            c.commit(fh).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
