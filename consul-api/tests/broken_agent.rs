//! An agent (or a proxy before it) that answers blocking queries at once without the index
//! moving: a watch slows to one request a second after a few such answers, and a real
//! change is still seen at once and resets the pace. On paused time, against the
//! in-process fake agent.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake::Fake;
use consul_api::{Client, Config, ConsulRegistry};
use discovery_core::{Query, Resolver, Update, UpdateStream};
use futures_util::StreamExt;
use tokio::time::Instant;

async fn next(updates: &mut UpdateStream) -> Update {
    tokio::time::timeout(Duration::from_secs(60), updates.next())
        .await
        .expect("an update within a minute")
        .expect("watch streams never end")
}

#[tokio::test(start_paused = true)]
async fn a_watch_makes_at_most_one_request_a_second_to_a_broken_agent() {
    let fake = Fake::new();
    fake.set("web", &[("web-1", 1001)]);
    fake.broken.store(true, Ordering::SeqCst);
    let client =
        Client::with_exchange(Config::new("127.0.0.1:8500").unwrap(), fake.clone()).unwrap();
    let registry = ConsulRegistry::new(client);
    let mut updates = registry.watch(&Query::new("web"));
    assert!(matches!(next(&mut updates).await, Update::Snapshot(_)));

    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let during = fake
        .seen_at("/v1/health/service")
        .iter()
        .filter(|s| s.at >= start)
        .count();
    assert!(
        (55..=64).contains(&during),
        "about one request a second after the first few early answers (not 47): {during} in 60 s"
    );

    fake.set("web", &[("web-1", 1001), ("web-2", 1002)]);
    let changed_at = Instant::now();
    match next(&mut updates).await {
        Update::Snapshot(s) => assert_eq!(s.len(), 2),
        other => panic!("expected the change, got {other:?}"),
    }
    assert!(
        changed_at.elapsed() <= Duration::from_secs(1),
        "a change is seen within the one-second pace: {:?}",
        changed_at.elapsed()
    );
    // The change moved the index: the pace is reset, the next query goes at once.
    let seen = fake.seen_at("/v1/health/service");
    let saw_change = seen
        .iter()
        .position(|s| s.at >= changed_at)
        .expect("a request after the change");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = fake.seen_at("/v1/health/service");
    let gap = seen[saw_change + 1].at - seen[saw_change].at;
    assert!(
        gap <= Duration::from_millis(25),
        "after a real change the next query is not held back: {gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_blocks_properly_costs_one_request_per_wait() {
    let fake = Fake::new();
    fake.set("web", &[("web-1", 1001)]);
    let client =
        Client::with_exchange(Config::new("127.0.0.1:8500").unwrap(), fake.clone()).unwrap();
    let registry = ConsulRegistry::new(client);
    let mut updates = registry.watch(&Query::new("web"));
    assert!(matches!(next(&mut updates).await, Update::Snapshot(_)));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let requests = fake.seen_at("/v1/health/service").len();
    assert!(
        requests <= 1 + 12 + 1,
        "a read, then one 5-minute blocking query after another: {requests} in an hour"
    );
}
