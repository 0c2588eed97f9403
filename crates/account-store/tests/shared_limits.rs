//! The shared limits' side of the PostgreSQL store against a real PostgreSQL (see
//! test-postgres): the shared count never grants more than the cap within a parcel's minute,
//! unused slots come back, servers see each other's states and counts of the day, and a
//! state travels to the other servers through `NOTIFY`. Each test skips (printing why)
//! without PostgreSQL.

use std::time::Duration;

use account_store::{
    CredentialState, DayCount, Held, LimitsChange, PgStore, SLOT_LEASE, SlotAsk, StateKind,
};

async fn open(url: &str) -> PgStore {
    PgStore::open(url, None, 4).await.expect("open the store")
}

fn ask(cap: u32, wanted: u32, unused: Vec<(i64, u32)>) -> SlotAsk {
    SlotAsk {
        key: "credential:qwen-a@example.com".into(),
        cap,
        wanted,
        unused,
    }
}

#[tokio::test]
async fn slots_are_granted_up_to_the_cap_and_unused_ones_come_back() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let (one, two) = (open(&url).await, open(&url).await);
    let first = one.take_slots(&[ask(5, 3, vec![])]).await.unwrap()[0].unwrap();
    assert_eq!((first.slots, first.frees_in), (3, SLOT_LEASE));
    let second = two.take_slots(&[ask(5, 3, vec![])]).await.unwrap()[0].unwrap();
    assert_eq!(second.slots, 2, "only what is left of the cap");
    let none = one.take_slots(&[ask(5, 3, vec![])]).await.unwrap()[0].unwrap();
    assert_eq!(none.slots, 0);
    assert!(
        none.frees_in > Duration::from_secs(55) && none.frees_in <= Duration::from_secs(63),
        "the next slot frees a minute after the oldest parcel ends: {:?}",
        none.frees_in
    );
    // The first server used one slot of three and hands the other two back.
    let answers = one
        .take_slots(&[ask(5, 0, vec![(first.ticket, 2)]), ask(5, 3, vec![])])
        .await
        .unwrap();
    assert_eq!(answers[0], None, "only handed back");
    assert_eq!(answers[1].unwrap().slots, 2);
    // Another cap is counted apart.
    let other = SlotAsk {
        key: "client:team".into(),
        ..ask(1, 1, vec![])
    };
    assert_eq!(two.take_slots(&[other]).await.unwrap()[0].unwrap().slots, 1);
}

#[tokio::test]
async fn states_are_shared_announced_and_ended() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let (one, two) = (open(&url).await, open(&url).await);
    let (_feed, mut heard) = two.follow_limits();
    assert_eq!(heard.recv().await, Some(LimitsChange::Resync));
    let cooling = CredentialState {
        key: "qwen-a@example.com".into(),
        kind: StateKind::Cooling,
        model: "coder-model".into(),
        held: Some(Held {
            remaining: Some(Duration::from_secs(600)),
            status: None,
            failures: 1,
        }),
    };
    let refused = CredentialState {
        key: "spare#1".into(),
        kind: StateKind::Refused,
        model: String::new(),
        held: Some(Held {
            remaining: None,
            status: Some(401),
            failures: 0,
        }),
    };
    one.publish_states(&[cooling.clone(), refused.clone()])
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
    assert_eq!(next.unwrap(), Some(LimitsChange::State(cooling.clone())));
    let next = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
    assert_eq!(next.unwrap(), Some(LimitsChange::State(refused.clone())));

    let mut held = two.credential_states().await.unwrap();
    held.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].key, cooling.key);
    let left = held[0].held.unwrap().remaining.unwrap();
    assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600));
    assert_eq!(held[1], refused);

    let healed = CredentialState {
        held: None,
        ..refused
    };
    one.publish_states(std::slice::from_ref(&healed))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
    assert_eq!(next.unwrap(), Some(LimitsChange::State(healed)));
    assert_eq!(two.credential_states().await.unwrap().len(), 1);
}

#[tokio::test]
async fn counts_of_the_day_add_up_across_servers_and_days() {
    let Some(url) = test_postgres::database().await else {
        return;
    };
    let (one, two) = (open(&url).await, open(&url).await);
    let ends = 4_102_444_800; // 2100-01-01T00:00:00Z
    let count = |requests, tokens| DayCount { requests, tokens };
    let day = |counts| vec![("qwen-a@example.com".to_owned(), ends, counts)];
    assert_eq!(
        one.sync_day_counts("credential", &day(count(3, 100)))
            .await
            .unwrap(),
        vec![count(0, 0)]
    );
    assert_eq!(
        two.sync_day_counts("credential", &day(count(2, 50)))
            .await
            .unwrap(),
        vec![count(3, 100)]
    );
    // A server writes its running totals: the others see the latest, not a sum of writes.
    assert_eq!(
        one.sync_day_counts("credential", &day(count(4, 120)))
            .await
            .unwrap(),
        vec![count(2, 50)]
    );
    assert_eq!(
        two.sync_day_counts("credential", &day(count(2, 50)))
            .await
            .unwrap(),
        vec![count(4, 120)]
    );
    // Another day, another scope: counted apart.
    let tomorrow = vec![("qwen-a@example.com".to_owned(), ends + 86_400, count(1, 1))];
    assert_eq!(
        two.sync_day_counts("credential", &tomorrow).await.unwrap(),
        vec![count(0, 0)]
    );
    assert_eq!(
        two.sync_day_counts("client", &day(count(0, 7)))
            .await
            .unwrap(),
        vec![count(0, 0)]
    );
}
