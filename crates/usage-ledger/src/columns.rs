//! The rollup table's columns, shared by every store: the five key columns and one integer
//! column per counter and histogram bucket, in a fixed order. A store keeps a rollup as one
//! row of these, so two stores of the same rollups hold the same table.

use std::sync::LazyLock;

use crate::histogram::BUCKET_COUNT;
use crate::record::FailureClass;
use crate::rollup::Counters;

/// The rollup table's key columns, in the primary key's order: hour (Unix seconds),
/// credential, client (the client key's name), model, API.
pub const KEY_COLUMNS: [&str; 5] = ["hour", "credential", "client", "model", "api"];

/// The counter columns, in the order of [`Counters::to_columns`].
static COUNTER_COLUMNS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut columns = vec!["requests".to_owned(), "successes".to_owned()];
    columns.extend(
        FailureClass::ALL
            .iter()
            .map(|class| format!("failed_{}", class.as_str())),
    );
    columns.extend(
        [
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "estimated",
            "attempts",
        ]
        .map(str::to_owned),
    );
    for histogram in ["latency", "ttft"] {
        columns.extend((0..BUCKET_COUNT).map(|bucket| format!("{histogram}_b{bucket}")));
        columns.push(format!("{histogram}_sum_us"));
    }
    columns
});

/// The counter columns: `requests`, `successes`, `failed_CLASS` per failure class, the token
/// counts, `estimated`, `attempts`, then `latency_bN` and `ttft_bN` per histogram bucket,
/// each followed by its `_sum_us`. Changing them changes every store's schema.
pub fn counter_columns() -> &'static [String] {
    &COUNTER_COLUMNS
}

/// Every counter of `counters`, in the order of [`counter_columns`].
fn counter_fields(counters: &mut Counters) -> Vec<&mut u64> {
    let mut fields = vec![&mut counters.requests, &mut counters.successes];
    fields.extend(counters.failures.iter_mut());
    fields.extend([
        &mut counters.prompt_tokens,
        &mut counters.completion_tokens,
        &mut counters.cached_tokens,
        &mut counters.estimated,
        &mut counters.attempts,
    ]);
    fields.extend(counters.latency.counts.iter_mut());
    fields.push(&mut counters.latency.sum_us);
    fields.extend(counters.ttft.counts.iter_mut());
    fields.push(&mut counters.ttft.sum_us);
    fields
}

impl Counters {
    /// The counters as the signed 64-bit integers databases keep, in the order of
    /// [`counter_columns`]; a count past `i64::MAX` is held there.
    pub fn to_columns(mut self) -> Vec<i64> {
        counter_fields(&mut self)
            .into_iter()
            .map(|value| i64::try_from(*value).unwrap_or(i64::MAX))
            .collect()
    }

    /// Counters from column values in the order of [`counter_columns`] (`None`, or a
    /// negative value, counts as 0; missing trailing values too).
    pub fn from_columns(values: impl IntoIterator<Item = Option<i64>>) -> Self {
        let mut counters = Counters::default();
        for (field, value) in counter_fields(&mut counters).into_iter().zip(values) {
            *field = value.map_or(0, |value| u64::try_from(value).unwrap_or(0));
        }
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_one_column_and_the_v1_columns_stay_put() {
        assert_eq!(
            counter_fields(&mut Counters::default()).len(),
            counter_columns().len()
        );
        // Changing a column changes the schema of every store: migrate them first.
        let buckets = |name: &str| {
            (0..14)
                .map(|n| format!("{name}_b{n}"))
                .chain([format!("{name}_sum_us")])
                .collect::<Vec<_>>()
                .join(",")
        };
        let expected = format!(
            "requests,successes,failed_quota,failed_rate,failed_refused,failed_upstream_5xx,failed_timeout,failed_client_cancel,failed_other,prompt_tokens,completion_tokens,cached_tokens,estimated,attempts,{},{}",
            buckets("latency"),
            buckets("ttft")
        );
        assert_eq!(counter_columns().join(","), expected);
    }

    #[test]
    fn counters_survive_the_trip_through_integers() {
        let mut counters = Counters::default();
        for (n, field) in counter_fields(&mut counters).into_iter().enumerate() {
            *field = n as u64 * 7 + 1;
        }
        let back = Counters::from_columns(counters.to_columns().into_iter().map(Some));
        assert_eq!(back, counters);
        let huge = Counters {
            requests: u64::MAX,
            ..Counters::default()
        };
        assert_eq!(huge.to_columns()[0], i64::MAX);
        assert_eq!(
            Counters::from_columns([None, Some(-3), Some(2)]),
            Counters {
                failures: [2, 0, 0, 0, 0, 0, 0],
                ..Counters::default()
            }
        );
    }
}
