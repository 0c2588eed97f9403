//! A Prometheus histogram that is given counts by bucket instead of one value at a time: the
//! ledger's flusher counts a fold's requests into buckets once ([`usage_ledger::Tally`]), and
//! `/metrics` adds those counts under one lock, where `prometheus-client`'s own histogram
//! would take its lock and search its buckets again for every request. It is written out by
//! `prometheus-client`'s encoder like any histogram.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A histogram over fixed `bounds` (Prometheus' `le`, rising) and `+Inf`. Clones share their
/// counts, as `prometheus-client`'s metrics do.
#[derive(Debug, Clone)]
pub(crate) struct BucketHistogram {
    bounds: &'static [f64],
    counts: Arc<Mutex<Counts>>,
}

/// What a [`BucketHistogram`]'s clones share.
#[derive(Debug, Default)]
struct Counts {
    /// One count a bound, then `+Inf`; not cumulative.
    buckets: Vec<u64>,
    sum: f64,
}

impl BucketHistogram {
    /// Empty, over `bounds`.
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: Arc::new(Mutex::new(Counts {
                buckets: vec![0; bounds.len() + 1],
                sum: 0.0,
            })),
        }
    }

    /// Adds `buckets` (one count a bound, then `+Inf`, as [`BucketHistogram::new`]'s bounds)
    /// and values that add up to `sum`.
    pub(crate) fn add(&self, buckets: &[u64], sum: f64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        debug_assert_eq!(buckets.len(), counts.buckets.len());
        for (count, more) in counts.buckets.iter_mut().zip(buckets) {
            *count = count.saturating_add(*more);
        }
        counts.sum += sum;
    }
}

impl TypedMetric for BucketHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BucketHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (buckets, count, sum) = {
            let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            let buckets: Vec<(f64, u64)> = self
                .bounds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(counts.buckets.iter().copied())
                .collect();
            let count = counts
                .buckets
                .iter()
                .fold(0u64, |total, n| total.saturating_add(*n));
            (buckets, count, counts.sum)
        };
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn it_is_written_as_prometheus_client_writes_a_histogram_of_the_same_values() {
        const BOUNDS: [f64; 3] = [1.0, 2.0, 5.0];
        let ours = BucketHistogram::new(&BOUNDS);
        let theirs = prometheus_client::metrics::histogram::Histogram::new(BOUNDS.iter().copied());
        // 0.5 and 1.0 (le 1), 3.0 (le 5), 7.0 and 9.0 (+Inf), given in two parts.
        ours.add(&[1, 0, 0, 1], 7.5);
        ours.add(&[1, 0, 1, 1], 13.0);
        for value in [7.0, 0.5, 3.0, 1.0, 9.0] {
            theirs.observe(value);
        }
        let text = |metric: Box<dyn Fn(&mut Registry)>| {
            let mut registry = Registry::default();
            metric(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        let ours = text(Box::new(move |r| r.register("t", "t", ours.clone())));
        let theirs = text(Box::new(move |r| r.register("t", "t", theirs.clone())));
        assert_eq!(ours, theirs);
        assert!(ours.contains("t_bucket{le=\"+Inf\"} 5"), "{ours}");
        assert!(ours.contains("t_sum 20.5"), "{ours}");
    }
}
