//! The records of one fold, grouped by what they are counted under, so that the rollups and
//! the observers find each group's key once instead of once a record: a fold takes thousands
//! of records that share a few keys, and finding a key hashes its three names. Records are
//! grouped by the identity of their names (the same shared strings), hour and API, which is
//! cheap to compare; two groups with equal names from different strings meet again in the
//! rollups, which compare names by their text.

use std::collections::HashMap;
use std::sync::Arc;

use crate::record::{Api, Record};
use crate::rollup::hour_of;

/// What a group's records share: their names' addresses (while the records hold the names,
/// no other string has them), hour and API.
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

/// Records grouped by [`Identity`]: every group's records have the same credential, client
/// key, model, API and hour.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    groups: HashMap<Identity, Vec<Record>, foldhash::fast::RandomState>,
}

impl Batch {
    /// Adds `record` to its group.
    pub(crate) fn add(&mut self, record: Record) {
        self.groups
            .entry(Identity::of(&record))
            .or_default()
            .push(record);
    }

    /// Takes every group, leaving the batch empty.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Vec<Record>> + '_ {
        self.groups.drain().map(|(_, records)| records)
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
        let mut sizes: Vec<(String, i64, usize)> = batch
            .drain()
            .map(|group| {
                assert!(
                    group
                        .iter()
                        .all(|r| Arc::ptr_eq(&r.credential, &group[0].credential))
                );
                (
                    group[0].credential.to_string(),
                    hour_of(group[0].at),
                    group.len(),
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
        for group in batch.drain() {
            rollups.add_all(&group);
            groups += 1;
        }
        assert_eq!((groups, rollups.len()), (2, 1));
    }
}
