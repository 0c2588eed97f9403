//! The records of one fold, counted by what they are counted under ([`Tally`]), so that the
//! rollups and the observers meet each key once a fold instead of once a record: a fold takes
//! thousands of records that share a few keys, and finding a key hashes its three names.
//! Records are grouped by the identity of their names (the same shared strings), hour and
//! API, which is cheap to compare; two groups with equal names from different strings meet
//! again in the rollups, which compare names by their text.

use std::collections::HashMap;
use std::sync::Arc;

use crate::record::{Api, Record};
use crate::rollup::{Counters, RollupKey, hour_of};

/// Requests are counted by their number of upstream attempts up to this many; more count as
/// this many ([`Tally::attempts`]).
pub const MOST_ATTEMPTS_COUNTED: usize = 9;

/// The requests of one fold under one key, counted: what the flusher adds to its rollups and
/// shows to observers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// What they are counted under (the first record's names, hour and API).
    pub key: RollupKey,
    /// Their counts, as the rollup of `key` adds them up.
    pub counters: Counters,
    /// Requests by their number of upstream attempts: `attempts[n]` counts those of `n`
    /// attempts, the last those of [`MOST_ATTEMPTS_COUNTED`] or more. (The rollups keep only
    /// the sum, `counters.attempts`.)
    pub attempts: [u64; MOST_ATTEMPTS_COUNTED + 1],
}

impl Tally {
    /// No request yet, under `key`.
    pub fn new(key: RollupKey) -> Self {
        Self {
            key,
            counters: Counters::default(),
            attempts: [0; MOST_ATTEMPTS_COUNTED + 1],
        }
    }

    /// Counts `record`, which belongs under this tally's key.
    pub fn add(&mut self, record: &Record) {
        self.counters.add(record);
        let attempts = usize::try_from(record.attempts)
            .map_or(MOST_ATTEMPTS_COUNTED, |n| n.min(MOST_ATTEMPTS_COUNTED));
        self.attempts[attempts] = self.attempts[attempts].saturating_add(1);
    }
}

/// What a group's records share: their names' addresses (while the group's tally holds the
/// first record's names, no other string has them), hour and API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity {
    credential: usize,
    client: usize,
    model: usize,
    hour: i64,
    api: Api,
}

impl Identity {
    fn of(record: &Record) -> Self {
        Self {
            credential: address(&record.credential),
            client: address(&record.client),
            model: address(&record.model),
            hour: hour_of(record.at),
            api: record.api,
        }
    }
}

fn address(name: &Arc<str>) -> usize {
    Arc::as_ptr(name).cast::<u8>().addr()
}

/// Records counted by [`Identity`]: every tally's records had the same credential, client
/// key, model, API and hour.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    groups: HashMap<Identity, Tally, foldhash::fast::RandomState>,
}

impl Batch {
    /// Counts `record` in its group's tally.
    pub(crate) fn add(&mut self, record: Record) {
        self.groups
            .entry(Identity::of(&record))
            .or_insert_with(|| Tally::new(RollupKey::of(&record)))
            .add(&record);
    }

    /// Takes every tally, leaving the batch empty.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Tally> + '_ {
        self.groups.drain().map(|(_, tally)| tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn groups_share_their_names_and_hour() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("dashscope#1"), Arc::from("dashscope#2"));
        let (client, model): (Arc<str>, Arc<str>) = (Arc::from(""), Arc::from("qwen-max"));
        let noon = UNIX_EPOCH + Duration::from_secs(1_800_000_000 / 3600 * 3600);
        let mut batch = Batch::default();
        for (credential, at) in [
            (&a, noon),
            (&b, noon),
            (&a, noon + Duration::from_secs(59)),
            (&a, noon + Duration::from_secs(3600)),
        ] {
            batch.add(Record::success(credential, &client, &model, at));
        }
        let mut sizes: Vec<(String, i64, u64)> = batch
            .drain()
            .map(|tally| {
                (
                    tally.key.credential.to_string(),
                    tally.key.hour,
                    tally.counters.requests,
                )
            })
            .collect();
        sizes.sort();
        let hour = hour_of(noon);
        assert_eq!(
            sizes,
            [
                ("dashscope#1".to_owned(), hour, 2),
                ("dashscope#1".to_owned(), hour + 3600, 1),
                ("dashscope#2".to_owned(), hour, 1),
            ]
        );
        assert_eq!(batch.drain().count(), 0);

        // The same name in another string is another group here; the rollups merge them.
        batch.add(Record::success(&a, &client, &model, noon));
        batch.add(Record::success(
            &Arc::from("dashscope#1"),
            &client,
            &model,
            noon,
        ));
        let mut rollups = crate::rollup::Rollups::default();
        let mut groups = 0;
        for tally in batch.drain() {
            rollups.merge_one(tally.key, &tally.counters);
            groups += 1;
        }
        assert_eq!((groups, rollups.len()), (2, 1));
    }

    #[test]
    fn a_tally_counts_as_the_rollup_does_and_attempts_one_by_one() {
        let (credential, client, model): (Arc<str>, Arc<str>, Arc<str>) = (
            Arc::from("dashscope#1"),
            Arc::from("laptop"),
            Arc::from("qwen-max"),
        );
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut tally = Tally::new(RollupKey::of(&Record::success(
            &credential,
            &client,
            &model,
            at,
        )));
        let mut rollups = crate::rollup::Rollups::default();
        for attempts in [0, 1, 1, 2, 9, 10, u32::MAX] {
            let record = Record {
                attempts,
                ..Record::success(&credential, &client, &model, at)
            };
            tally.add(&record);
            rollups.add(&record);
        }
        assert_eq!(tally.attempts, [1, 2, 1, 0, 0, 0, 0, 0, 0, 3]);
        let mut counted = crate::rollup::Rollups::default();
        counted.merge_one(tally.key.clone(), &tally.counters);
        assert_eq!(counted, rollups);
    }
}
