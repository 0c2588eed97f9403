//! Latency histograms with fixed buckets: the ledger's rollups and the Prometheus metrics use
//! the same bounds ([`LATENCY_BUCKETS`]), so both tell the same story.

use std::time::Duration;

/// Upper bounds of the latency and time-to-first-token buckets, in milliseconds. A value
/// falls into the first bucket whose bound it does not exceed (Prometheus' `le`); values
/// above the last bound fall into one more bucket, `+Inf`.
///
/// Changing these changes the database schema (one column per bucket): bump
/// `SqliteStore::SCHEMA_VERSION` and migrate.
pub const LATENCY_BUCKETS_MS: [u64; 13] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000,
];

/// [`LATENCY_BUCKETS_MS`] as durations.
pub const LATENCY_BUCKETS: [Duration; 13] = {
    let mut bounds = [Duration::ZERO; 13];
    let mut i = 0;
    while i < bounds.len() {
        bounds[i] = Duration::from_millis(LATENCY_BUCKETS_MS[i]);
        i += 1;
    }
    bounds
};

/// [`LATENCY_BUCKETS_MS`] in seconds, as Prometheus histograms take them.
pub const LATENCY_BUCKETS_SECONDS: [f64; 13] = {
    let mut bounds = [0.0; 13];
    let mut i = 0;
    while i < bounds.len() {
        bounds[i] = LATENCY_BUCKETS_MS[i] as f64 / 1000.0;
        i += 1;
    }
    bounds
};

/// [`LATENCY_BUCKETS_MS`] in nanoseconds, what [`bucket_index`] compares: one integer
/// comparison a bound.
const LATENCY_BUCKETS_NS: [u64; 13] = {
    let mut bounds = [0; 13];
    let mut i = 0;
    while i < bounds.len() {
        bounds[i] = LATENCY_BUCKETS_MS[i] * 1_000_000;
        i += 1;
    }
    bounds
};

/// Buckets of a [`Histogram`]: one per bound, and `+Inf`.
pub const BUCKET_COUNT: usize = LATENCY_BUCKETS_MS.len() + 1;

/// Counts of durations by bucket (not cumulative), and their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// How many durations fell into each bucket of [`LATENCY_BUCKETS_MS`], then `+Inf`.
    pub counts: [u64; BUCKET_COUNT],
    /// The sum of all durations observed, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&mut self, value: Duration) {
        let index = bucket_index(value);
        self.counts[index] = self.counts[index].saturating_add(1);
        let micros = value
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(value.subsec_micros()));
        self.sum_us = self.sum_us.saturating_add(micros);
    }

    /// Adds `other`'s counts to this one's.
    pub fn merge(&mut self, other: &Histogram) {
        for (count, more) in self.counts.iter_mut().zip(other.counts) {
            *count = count.saturating_add(more);
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// How many durations were observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// The `q` quantile (0..=1), estimated as Prometheus' `histogram_quantile` does: linear
    /// within the bucket it falls into, from 0 for the first; a quantile in `+Inf` is the
    /// last bound. `None` when nothing was observed.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            let through = below + count;
            if count > 0 && through as f64 >= rank {
                let Some(&upper) = LATENCY_BUCKETS_MS.get(index) else {
                    return Some(Duration::from_millis(LATENCY_BUCKETS_MS[index - 1]));
                };
                let lower = if index == 0 {
                    0
                } else {
                    LATENCY_BUCKETS_MS[index - 1]
                };
                let share = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                let millis = lower as f64 + (upper - lower) as f64 * share;
                return Some(Duration::from_secs_f64(millis / 1000.0));
            }
            below = through;
        }
        None
    }
}

/// The bucket `value` falls into: the first whose bound it does not exceed, else `+Inf`.
///
/// The flusher calls it once a request, twice for one that sent a first byte: it counts the bounds below `value` in nanoseconds
/// (saturating past 584 years, far beyond the last bound) without a branch, instead of
/// comparing `Duration`s (seconds, then nanoseconds) in a binary search.
pub fn bucket_index(value: Duration) -> usize {
    let nanos = value
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(value.subsec_nanos()));
    LATENCY_BUCKETS_NS
        .iter()
        .map(|&bound| usize::from(bound < nanos))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_a_bound_belongs_to_that_bound() {
        assert_eq!(bucket_index(Duration::ZERO), 0);
        assert_eq!(bucket_index(Duration::from_millis(50)), 0);
        assert_eq!(bucket_index(Duration::from_micros(50_001)), 1);
        assert_eq!(bucket_index(Duration::from_secs(600)), 12);
        assert_eq!(bucket_index(Duration::from_secs(601)), 13);
        assert_eq!(bucket_index(Duration::MAX), BUCKET_COUNT - 1);
        assert_eq!(
            bucket_index(Duration::new(0, 50_000_001)),
            1,
            "a nanosecond over"
        );
        for (index, bound) in LATENCY_BUCKETS.into_iter().enumerate() {
            assert_eq!(bucket_index(bound), index);
            assert_eq!(bucket_index(bound + Duration::from_nanos(1)), index + 1);
        }
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let mut histogram = Histogram::default();
        histogram.observe(Duration::MAX);
        histogram.observe(Duration::from_secs(1));
        assert_eq!(histogram.sum_us, u64::MAX);
        assert_eq!(histogram.counts[BUCKET_COUNT - 1], 1);
    }

    #[test]
    fn the_bounds_agree_in_every_unit_and_rise() {
        for i in 0..LATENCY_BUCKETS_MS.len() {
            assert_eq!(
                LATENCY_BUCKETS[i].as_millis(),
                u128::from(LATENCY_BUCKETS_MS[i])
            );
            assert_eq!(LATENCY_BUCKETS_SECONDS[i], LATENCY_BUCKETS[i].as_secs_f64());
        }
        assert!(LATENCY_BUCKETS_MS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        for _ in 0..4 {
            histogram.observe(Duration::from_millis(300)); // 250..500
        }
        assert_eq!(histogram.count(), 4);
        assert_eq!(histogram.sum_us, 1_200_000);
        assert_eq!(histogram.quantile(0.5), Some(Duration::from_millis(375)));
        assert_eq!(histogram.quantile(1.0), Some(Duration::from_millis(500)));
        histogram.observe(Duration::from_secs(3600));
        assert_eq!(
            histogram.quantile(1.0),
            Some(Duration::from_secs(600)),
            "+Inf answers with the last bound"
        );
    }

    #[test]
    fn merging_adds_counts_and_sums() {
        let mut a = Histogram::default();
        a.observe(Duration::from_millis(10));
        let mut b = Histogram::default();
        b.observe(Duration::from_millis(20));
        b.observe(Duration::from_secs(2));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.counts[0], 2);
        assert_eq!(a.counts[5], 1);
        assert_eq!(a.sum_us, 2_030_000);
    }
}
