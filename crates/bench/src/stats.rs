//! The two summaries the reports use, named by what they mean: a rate
//! table wants the middle of the samples (the mean of the two middle ones
//! when even), a latency goal wants a value that was actually measured
//! (nearest rank, so p50 of an even count is the lower middle one).

/// Mean of the two middle samples when their count is even, the middle one
/// when odd; `None` for no samples. Order does not matter.
pub fn median_midpoint(samples: &[f64]) -> Option<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Nearest-rank percentile `p` (0..=100) of sorted samples: always one of
/// them; `None` for no samples.
pub fn percentile_nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midpoint_median_of_odd_and_even_samples() {
        assert_eq!(median_midpoint(&[]), None);
        assert_eq!(median_midpoint(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_midpoint(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile_nearest_rank(&v, 50.0), Some(50.0));
        assert_eq!(percentile_nearest_rank(&v, 99.0), Some(99.0));
        assert_eq!(percentile_nearest_rank(&v, 100.0), Some(100.0));
        assert_eq!(percentile_nearest_rank(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile_nearest_rank(&[], 50.0), None);
        // An even count: the lower middle sample, not their mean.
        assert_eq!(
            percentile_nearest_rank(&[1.0, 2.0, 3.0, 4.0], 50.0),
            Some(2.0)
        );
    }
}
