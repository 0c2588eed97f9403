//! Percentiles of a set of durations.
//!
//! Percentiles use the nearest-rank method on the sorted samples: the p-th
//! percentile is the smallest sample with at least p % of the samples at or
//! below it (so p100 is the maximum and no value is interpolated).

use std::time::Duration;

/// Distribution of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) p50: Duration,
    pub(crate) p90: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

impl Summary {
    /// Sorts `samples` and summarises them; `None` when there are none.
    pub(crate) fn of(samples: &mut [Duration]) -> Option<Summary> {
        samples.sort_unstable();
        Some(Summary {
            count: samples.len(),
            p50: percentile(samples, 500)?,
            p90: percentile(samples, 900)?,
            p99: percentile(samples, 990)?,
            max: *samples.last()?,
        })
    }
}

/// The nearest-rank percentile of `sorted` samples, `per_mille` / 10 %:
/// the sample at rank ⌈per_mille × n / 1000⌉ (1-based, at least 1).
/// Integer arithmetic, so p90 of 10 samples is exactly the 9th.
pub(crate) fn percentile(sorted: &[Duration], per_mille: u32) -> Option<Duration> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let per_mille = per_mille.min(1000) as usize;
    let rank = (per_mille * n).div_ceil(1000).max(1);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted = ms(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(percentile(&sorted, 500), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&sorted, 900), Some(Duration::from_millis(9)));
        assert_eq!(percentile(&sorted, 990), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&sorted, 1000), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&sorted, 0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&sorted, 100), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&sorted, 101), Some(Duration::from_millis(2)));
        assert_eq!(percentile(&[], 500), None);
    }

    #[test]
    fn percentiles_of_one_hundred() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&sorted, 500), Some(Duration::from_micros(50)));
        assert_eq!(percentile(&sorted, 990), Some(Duration::from_micros(99)));
        assert_eq!(percentile(&sorted, 999), Some(Duration::from_micros(100)));
        let single = ms(&[7]);
        assert_eq!(percentile(&single, 500), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&single, 990), Some(Duration::from_millis(7)));
    }

    #[test]
    fn summary_sorts_first() {
        let mut samples = ms(&[9, 1, 5, 3, 7]);
        let s = Summary::of(&mut samples).unwrap();
        assert_eq!(s.count, 5);
        assert_eq!(s.p50, Duration::from_millis(5));
        assert_eq!(s.p90, Duration::from_millis(9));
        assert_eq!(s.max, Duration::from_millis(9));
        assert_eq!(Summary::of(&mut []), None);
    }
}
