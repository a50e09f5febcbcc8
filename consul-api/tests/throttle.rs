//! `429 Too Many Requests` (Consul's answer to a client over its connection limit, or over a
//! rate limit) is backed off and retried: a watch is never lost, never hot-loops, and keeps
//! its subscribers informed. On paused time, against the in-process fake agent.

mod common;

use std::time::Duration;

use common::fake::Fake;
use consul_api::{Client, Config, ConsulRegistry};
use discovery_core::{Query, Resolver, Update, UpdateStream};
use futures_util::StreamExt;

fn client(fake: &Fake) -> Client {
    Client::with_exchange(Config::new("127.0.0.1:8500").unwrap(), fake.clone()).unwrap()
}

async fn next(updates: &mut UpdateStream) -> Update {
    tokio::time::timeout(Duration::from_secs(60), updates.next())
        .await
        .expect("an update within a minute")
        .expect("watch streams never end")
}

/// The least gap between two consecutive requests to `path`.
fn least_gap(fake: &Fake, path: &str) -> Duration {
    let seen = fake.seen_at(path);
    seen.windows(2)
        .map(|w| w[1].at - w[0].at)
        .min()
        .unwrap_or(Duration::MAX)
}

#[tokio::test(start_paused = true)]
async fn a_watch_refused_with_429_backs_off_and_gets_through() {
    let fake = Fake::new();
    fake.set("web", &[("web-1", 1001)]);
    fake.refuse(7, 429);
    let client = client(&fake);
    let registry = ConsulRegistry::new(client.clone());
    let mut updates = registry.watch(&Query::new("web"));

    match next(&mut updates).await {
        Update::Error(err) => assert!(err.is_retryable(), "a 429 is retryable: {err:?}"),
        other => panic!("five refusals in a row surface as an error item, got {other:?}"),
    }
    match next(&mut updates).await {
        Update::Snapshot(s) => assert_eq!(s[0].id, "web-1"),
        other => panic!("the watch gets through once the agent lets it, got {other:?}"),
    }
    assert_eq!(
        fake.seen_at("/v1/health/service").len(),
        8,
        "seven refused, then the one that got through: none lost, none extra"
    );
    assert_eq!(client.stats().throttled, 7, "every 429 is counted");
    let gap = least_gap(&fake, "/v1/health/service");
    assert!(
        gap >= Duration::from_millis(50),
        "retries wait at least half the first backoff, never hot-loop: least gap {gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_blocking_query_refused_with_429_recovers_and_says_so() {
    let fake = Fake::new();
    fake.set("web", &[("web-1", 1001)]);
    let registry = ConsulRegistry::new(client(&fake));
    let mut updates = registry.watch(&Query::new("web"));
    assert!(matches!(next(&mut updates).await, Update::Snapshot(_)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    fake.refuse(6, 429);
    // The blocked query is past the door: it answers the change; the next six meet the
    // refusals.
    fake.set("web", &[("web-1", 1001), ("web-2", 1002)]);
    match next(&mut updates).await {
        Update::Snapshot(s) => assert_eq!(s.len(), 2),
        other => panic!("the blocked query answers the change, got {other:?}"),
    }
    match next(&mut updates).await {
        Update::Error(err) => assert!(err.is_retryable(), "{err:?}"),
        other => panic!("five refusals in a row surface as an error item, got {other:?}"),
    }
    let failed_at = tokio::time::Instant::now();
    match next(&mut updates).await {
        Update::Snapshot(s) => assert_eq!(s.len(), 2, "the same set, said again"),
        other => panic!("once through, the watch says the source is back, got {other:?}"),
    }
    assert!(
        failed_at.elapsed() < Duration::from_secs(3),
        "recovered within the backoff: {:?}",
        failed_at.elapsed()
    );
    fake.set("web", &[("web-1", 1001), ("web-2", 1002), ("web-3", 1003)]);
    match next(&mut updates).await {
        Update::Snapshot(s) => assert_eq!(s.len(), 3, "and follows on"),
        other => panic!("expected the third instance, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_refused_with_429_is_retried() {
    let fake = Fake::new();
    fake.refuse(2, 429);
    let client = client(&fake);
    let leader = client.status().leader().await;
    assert!(leader.is_ok(), "retried past two refusals: {leader:?}");
    assert_eq!(fake.seen_at("/v1/status/leader").len(), 3);
    assert_eq!(client.stats().throttled, 2);
}
