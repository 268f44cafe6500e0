//! The sender's bandwidth limit (`--bandwidth-mbps`): a token bucket over
//! wire bytes. Its arithmetic takes the time as an argument, so it is
//! tested with a made-up clock; the session sleeps for what it returns.

use std::time::{Duration, Instant};

/// Tokens are bytes; the bucket refills at `bytes_per_s` up to
/// `burst_bytes` (one batch: a session that was idle sends its next batch
/// at once, and the long-run rate stays the limit).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    bytes_per_s: u64,
    burst_bytes: u64,
    /// Signed: a batch larger than what is left is sent, and the debt is
    /// waited off before the next.
    tokens: i128,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. A zero rate is taken as 1 byte/s (callers
    /// validate; this only keeps the division defined).
    pub fn new(bytes_per_s: u64, burst_bytes: u64, now: Instant) -> Self {
        TokenBucket {
            bytes_per_s: bytes_per_s.max(1),
            burst_bytes,
            tokens: i128::from(burst_bytes),
            at: now,
        }
    }

    /// Takes `bytes` at `now` and returns how long to wait before sending
    /// them so the rate holds (zero if the bucket had them).
    pub fn take(&mut self, bytes: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = self.at.max(now);
        let refill = elapsed.as_nanos() * u128::from(self.bytes_per_s) / 1_000_000_000;
        let refill = i128::try_from(refill).unwrap_or(i128::MAX);
        self.tokens = self
            .tokens
            .saturating_add(refill)
            .min(i128::from(self.burst_bytes));
        self.tokens -= i128::from(bytes);
        if self.tokens >= 0 {
            return Duration::ZERO;
        }
        let debt = self.tokens.unsigned_abs();
        let nanos = debt * 1_000_000_000 / u128::from(self.bytes_per_s);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A bucket for bulk copies (baseline, catch-up): `rate` bytes/s with a
/// burst of one `piece_bytes` message; `None` without a limit.
pub fn for_copy(rate: Option<u64>, piece_bytes: usize) -> Option<TokenBucket> {
    rate.map(|r| TokenBucket::new(r, piece_bytes as u64, Instant::now()))
}

/// Waits until `bytes` more may be sent (at once without a bucket). Bulk
/// copies have no heartbeats to keep up: their per-message timeout on the
/// receiving side covers one piece at the lowest rate (1 MiB at 1 Mbit/s
/// is about 8 s).
pub async fn pace_copy(bucket: &mut Option<TokenBucket>, bytes: usize) {
    if let Some(b) = bucket.as_mut() {
        let wait = b.take(bytes as u64, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Megabits per second (the CLI's unit) as bytes per second.
pub fn mbps_to_bytes_per_s(mbps: u32) -> u64 {
    u64::from(mbps) * 1_000_000 / 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_sends_a_burst_then_holds_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000_000, 500_000, t0);
        assert_eq!(b.take(500_000, t0), Duration::ZERO);
        // Empty: 250 kB more at 1 MB/s is a quarter second of debt.
        assert_eq!(b.take(250_000, t0), Duration::from_millis(250));
        // The caller waited that long: the debt is paid, the bucket empty.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(b.take(0, t1), Duration::ZERO);
        // Half a second later half a megabyte is there, no more.
        let t2 = t1 + Duration::from_millis(500);
        assert_eq!(b.take(400_000, t2), Duration::ZERO);
        assert_eq!(b.take(200_000, t2), Duration::from_millis(100));
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000, 2_000, t0);
        assert_eq!(b.take(2_000, t0), Duration::ZERO);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.take(2_000, later), Duration::ZERO);
        assert_eq!(b.take(1_000, later), Duration::from_secs(1));
        // A clock that goes back changes nothing.
        assert_eq!(b.take(0, t0), Duration::from_secs(1));
    }

    #[test]
    fn a_batch_larger_than_the_burst_waits_for_its_excess() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10, t0);
        assert_eq!(b.take(110, t0), Duration::from_secs(1));
        assert_eq!(mbps_to_bytes_per_s(8), 1_000_000);
        assert_eq!(mbps_to_bytes_per_s(100_000), 12_500_000_000);
    }
}
