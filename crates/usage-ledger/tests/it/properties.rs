//! Rollup arithmetic, for any records: every request is counted once, in one class, with its
//! tokens and durations; and folding records in batches (as flushes do), in memory or in
//! SQLite, gives what folding them all at once gives.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use usage_ledger::{
    Api, FailureClass, GroupBy, LedgerStore as _, Outcome, Record, Rollups, SqliteStore, UsageQuery,
};

use crate::support::{at, db_path};

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Success),
        1 => proptest::sample::select(FailureClass::ALL.to_vec()).prop_map(Outcome::Failure),
    ]
}

prop_compose! {
    fn a_record()(
        seconds in 0u64..4 * 86_400,
        credential in proptest::sample::select(vec!["a@example.com", "dashscope#1", ""]),
        client in proptest::sample::select(vec!["laptop", "ci", ""]),
        model in proptest::sample::select(vec!["qwen3-coder-plus", "coder-model"]),
        api in proptest::sample::select(Api::ALL.to_vec()),
        outcome in outcome(),
        prompt_tokens in 0u64..200_000,
        completion_tokens in 0u64..70_000,
        cached_share in 0u64..=100,
        tokens_estimated in any::<bool>(),
        latency_us in 0u64..700_000_000,
        ttft_us in proptest::option::of(0u64..700_000_000),
        attempts in 0u32..5,
    ) -> Record {
        Record {
            at: at(seconds),
            credential: Arc::from(credential),
            client: Arc::from(client),
            model: Arc::from(model),
            api,
            outcome,
            prompt_tokens,
            completion_tokens,
            cached_tokens: prompt_tokens * cached_share / 100,
            tokens_estimated,
            latency: Duration::from_micros(latency_us),
            ttft: ttft_us.map(Duration::from_micros),
            attempts,
        }
    }
}

fn rolled(records: &[Record]) -> Rollups {
    let mut rollups = Rollups::default();
    for record in records {
        rollups.add(record);
    }
    rollups
}

proptest! {
    #[test]
    fn every_request_is_counted_once_with_its_tokens_and_durations(
        records in proptest::collection::vec(a_record(), 0..200),
    ) {
        let total = rolled(&records).total();
        prop_assert_eq!(total.requests, records.len() as u64);
        let successes = records.iter().filter(|r| r.outcome == Outcome::Success).count() as u64;
        prop_assert_eq!(total.successes, successes);
        prop_assert_eq!(total.successes + total.failed(), total.requests);
        for class in FailureClass::ALL {
            let failed = records.iter().filter(|r| r.outcome == Outcome::Failure(class)).count() as u64;
            prop_assert_eq!(total.failures_of(class), failed, "{:?}", class);
        }
        prop_assert_eq!(total.prompt_tokens, records.iter().map(|r| r.prompt_tokens).sum::<u64>());
        prop_assert_eq!(total.completion_tokens, records.iter().map(|r| r.completion_tokens).sum::<u64>());
        prop_assert_eq!(total.cached_tokens, records.iter().map(|r| r.cached_tokens).sum::<u64>());
        prop_assert_eq!(total.estimated, records.iter().filter(|r| r.tokens_estimated).count() as u64);
        prop_assert_eq!(total.attempts, records.iter().map(|r| u64::from(r.attempts)).sum::<u64>());
        prop_assert_eq!(total.latency.count(), total.requests);
        prop_assert_eq!(total.ttft.count(), records.iter().filter(|r| r.ttft.is_some()).count() as u64);
        let latency_us: u64 = records.iter().map(|r| r.latency.as_micros() as u64).sum();
        prop_assert_eq!(total.latency.sum_us, latency_us);
    }

    #[test]
    fn batches_merged_equal_all_at_once(
        records in proptest::collection::vec(a_record(), 0..200),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let mut bounds: Vec<usize> = cuts.iter().map(|cut| cut.index(records.len() + 1)).collect();
        bounds.sort_unstable();
        let mut merged = Rollups::default();
        let mut start = 0;
        for end in bounds.into_iter().chain([records.len()]) {
            merged.merge(rolled(&records[start..end]));
            start = end;
        }
        prop_assert_eq!(merged, rolled(&records));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_adds_flushes_up_to_what_memory_holds(
        records in proptest::collection::vec(a_record(), 0..120),
        cut in any::<prop::sample::Index>(),
    ) {
        let (_dir, path) = db_path();
        let mut store = SqliteStore::open(&path).unwrap();
        let cut = cut.index(records.len() + 1);
        store.add(&rolled(&records[..cut])).unwrap();
        store.add(&rolled(&records[cut..])).unwrap();
        let all = rolled(&records);
        prop_assert_eq!(store.rollups_since(0).unwrap(), all.clone());
        for by in [GroupBy::Credential, GroupBy::Model, GroupBy::ClientKey, GroupBy::Day, GroupBy::Hour] {
            let report = store.usage(&UsageQuery { since: at(0), by }).unwrap();
            prop_assert_eq!(report.total.requests, records.len() as u64);
            prop_assert_eq!(report.total.prompt_tokens, all.total().prompt_tokens);
            let rows: u64 = report.rows.iter().map(|row| row.totals.requests).sum();
            prop_assert_eq!(rows, records.len() as u64);
        }
    }
}
