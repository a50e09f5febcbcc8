//! How a budget is spent when watches outnumber its blocking slots, on paused time against
//! the in-process fake agent (which sees which connection each request travels on): one
//! request at a time per HTTP/1.1 connection and never more connections than the budget;
//! a watch that sees a change takes the slot of the one quiet longest; polls keep to their
//! pace however many watches there are; writes are not held up by watches; and over HTTP/2
//! every watch blocks, on a connection per 200 of them.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake::{Fake, Seen};
use consul_api::{Client, Config, ConnectionId, ConsulRegistry, Protocol};
use discovery_core::{Query, Resolver, Update, UpdateStream};
use futures_util::StreamExt;
use tokio::time::Instant;

fn client(fake: &Fake, config: Config) -> Client {
    Client::with_exchange(config, fake.clone()).unwrap()
}

fn services(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("svc-{i}")).collect()
}

/// A fake agent, and a client and registry whose polls are 100 ms apart.
fn paced() -> (Fake, Client, ConsulRegistry) {
    let fake = Fake::new();
    let client = client(
        &fake,
        Config::new("127.0.0.1:8500")
            .unwrap()
            .poll_spacing(Duration::from_millis(100)),
    );
    let registry = ConsulRegistry::new(client.clone());
    (fake, client, registry)
}

/// Registers one instance of each service and opens a watch on each, past its first answer.
async fn watch_all(fake: &Fake, registry: &ConsulRegistry, names: &[String]) -> Vec<UpdateStream> {
    for name in names {
        fake.set(name, &[(&format!("{name}-1"), 1000)]);
    }
    let mut streams = Vec::new();
    for name in names {
        let mut updates = registry.watch(&Query::new(name));
        match tokio::time::timeout(Duration::from_secs(600), updates.next()).await {
            Ok(Some(Update::Snapshot(_))) => {}
            other => panic!("{name}: expected a first snapshot, got {other:?}"),
        }
        streams.push(updates);
    }
    streams
}

/// Whether `seen` was a blocking query (a long wait) rather than a poll.
fn blocking(seen: &Seen) -> bool {
    seen.param("wait").is_some_and(|w| w != "1ms") && seen.param("index").is_some()
}

/// The services whose last health request was a blocking query.
fn hot(fake: &Fake) -> BTreeSet<String> {
    let mut last = std::collections::HashMap::new();
    for s in fake.seen_at("/v1/health/service/") {
        last.insert(
            s.path.trim_start_matches("/v1/health/service/").to_owned(),
            s,
        );
    }
    last.into_iter()
        .filter(|(_, s)| blocking(s))
        .map(|(name, _)| name)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_changes_takes_the_slot_of_the_one_quiet_longest() {
    let fake = Fake::new();
    // A budget of 4: three blocking slots, one connection for everything else.
    let client = client(
        &fake,
        Config::new("127.0.0.1:8500").unwrap().max_connections(4),
    );
    let registry = ConsulRegistry::new(client.clone());
    let names = services(10);
    let mut streams = watch_all(&fake, &registry, &names).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let hot = hot(&fake);
    assert_eq!(hot.len(), 3, "three watches block: {hot:?}");
    let cold: Vec<&String> = names.iter().filter(|n| !hot.contains(*n)).collect();
    let changing = cold[0].clone();
    let i = names.iter().position(|n| *n == changing).unwrap();

    fake.set(
        &changing,
        &[
            (&format!("{changing}-1"), 1000),
            (&format!("{changing}-2"), 1001),
        ],
    );
    match tokio::time::timeout(Duration::from_secs(60), streams[i].next()).await {
        Ok(Some(Update::Snapshot(s))) => assert_eq!(s.len(), 2),
        other => panic!("the cold watch sees the change at its next poll, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let now_hot = self::hot(&fake);
    assert!(
        now_hot.contains(&changing),
        "the watch that changed now blocks: {now_hot:?}"
    );
    assert_eq!(
        client.stats().preemptions,
        1,
        "one holder was asked to yield"
    );
    assert_eq!(client.stats().blocking_held, 3);
    let reported: BTreeSet<String> = registry
        .watch_hub()
        .blocking()
        .into_iter()
        .map(|q| q.service)
        .collect();
    assert_eq!(reported, now_hot, "the hub reports which watches block");
    let yielded: Vec<&String> = hot.iter().filter(|n| !now_hot.contains(*n)).collect();
    assert_eq!(
        yielded.len(),
        1,
        "one of the quiet ones gave its slot: {yielded:?}"
    );

    // The one that yielded still follows its service, by polling.
    let j = names.iter().position(|n| n == yielded[0]).unwrap();
    fake.set(yielded[0], &[("replacement", 1002)]);
    match tokio::time::timeout(Duration::from_secs(60), streams[j].next()).await {
        Ok(Some(Update::Snapshot(s))) => assert_eq!(s[0].id, "replacement"),
        other => panic!("a demoted watch still follows its service, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn two_hundred_watches_keep_to_the_budget_one_request_per_connection_and_see_every_change() {
    let fake = Fake::new();
    let client = client(&fake, Config::new("127.0.0.1:8500").unwrap());
    let registry = ConsulRegistry::new(client.clone());
    let names = services(200);
    let mut streams = watch_all(&fake, &registry, &names).await;
    // A change a second for five minutes, at random.
    let mut changed = std::collections::HashMap::new();
    for round in 0..300u16 {
        let i = fastrand::usize(..names.len());
        let port = 2000 + round;
        fake.set(&names[i], &[(&format!("{}-{round}", names[i]), port)]);
        changed.insert(i, port);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    for (i, port) in changed {
        let mut last = None;
        while let Ok(Some(update)) =
            tokio::time::timeout(Duration::from_millis(1), streams[i].next()).await
        {
            last = Some(update);
        }
        match last {
            Some(Update::Snapshot(s)) => {
                assert_eq!(s[0].port, port, "{}: the last change", names[i])
            }
            other => panic!("{}: expected its last change, got {other:?}", names[i]),
        }
    }
    assert_eq!(
        fake.most_on_one_connection.load(Ordering::SeqCst),
        1,
        "one request at a time per HTTP/1.1 connection"
    );
    let connections: BTreeSet<ConnectionId> = fake.seen().iter().map(|s| s.connection).collect();
    assert!(
        connections.len() <= 16 && connections.iter().all(|c| c.0 < 16),
        "at most the budget's 16 connections: {connections:?}"
    );
    assert_eq!(client.stats().protocol, Protocol::Http1);
}

#[tokio::test(start_paused = true)]
async fn polls_keep_to_their_pace_and_writes_are_not_held_up() {
    let (fake, client, registry) = paced();
    let names = services(1000);
    let _streams = watch_all(&fake, &registry, &names).await;
    let polls_before = client.stats().polls;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(600)).await;
    let polls = client.stats().polls - polls_before;
    assert!(
        polls <= 6_000 + 10,
        "at most one poll per 100 ms, however many watches: {polls} in 600 s"
    );
    assert!(polls >= 1_000, "and every watch is polled: {polls}");
    let requests: Vec<Seen> = fake.seen().into_iter().filter(|s| s.at >= start).collect();
    let blocking_queries = requests.iter().filter(|s| blocking(s)).count();
    assert!(
        blocking_queries <= 12 * 3,
        "twelve blocking queries, one per 5-minute wait each: {blocking_queries}"
    );

    let asked = Instant::now();
    client.status().leader().await.expect("the agent answers");
    assert!(
        asked.elapsed() <= Duration::from_millis(10),
        "a write does not wait behind watches: {:?}",
        asked.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn over_http2_every_watch_blocks_on_a_connection_per_two_hundred() {
    let fake = Fake::new();
    fake.http2.store(true, Ordering::SeqCst);
    let client = client(&fake, Config::new("https://127.0.0.1:8501").unwrap());
    let registry = ConsulRegistry::new(client.clone());
    let names = services(500);
    let _streams = watch_all(&fake, &registry, &names).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stats = client.stats();
    assert_eq!(
        stats.protocol,
        Protocol::Http2,
        "learned from the probe's answer"
    );
    assert_eq!(
        stats.blocking_held, 500,
        "every watch holds a blocking stream"
    );
    assert_eq!(stats.polls, 0, "nothing polls");
    let seen = fake.seen();
    assert_eq!(
        seen[0].connection,
        ConnectionId::PROBE,
        "the probe goes first"
    );
    let connections: BTreeSet<ConnectionId> = seen[1..].iter().map(|s| s.connection).collect();
    assert_eq!(
        connections,
        [0, 1, 2].map(ConnectionId).into(),
        "500 blocking streams fill three connections of 200"
    );
}

#[tokio::test(start_paused = true)]
async fn through_an_outage_watches_outside_the_blocking_set_keep_to_the_poll_pace() {
    let (fake, _client, registry) = paced();
    let names = services(500);
    let _streams = watch_all(&fake, &registry, &names).await;
    // Wake every blocked query, then refuse everything for a minute.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let start = Instant::now();
    fake.down.store(true, Ordering::SeqCst);
    for name in names.iter().take(12) {
        fake.set(name, &[("moved", 1)]);
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let during = fake.seen().iter().filter(|s| s.at >= start).count();
    // Twelve blocking watches back off to a request every 0.5 to 1 s each; the 488 others
    // share the poll pace of ten a second (without it: about 650 a second).
    assert!(
        during <= 60 * (12 * 2 + 10) + 50,
        "an outage costs the agent the poll pace, not a request a second per watch: {during} in 60 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_whose_index_moves_behind_an_unchanged_answer_counts_as_busy() {
    // A rolling restart seen only between two instances (every poll finds them all back)
    // still moves the index: the watch polls faster and takes a blocking slot.
    let fake = Fake::new();
    let client = client(
        &fake,
        Config::new("127.0.0.1:8500").unwrap().max_connections(4),
    );
    let registry = ConsulRegistry::new(client.clone());
    let names = services(10);
    let _streams = watch_all(&fake, &registry, &names).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    let hot = hot(&fake);
    let busy = names.iter().find(|n| !hot.contains(*n)).unwrap().clone();
    let instance = format!("{busy}-1");
    for _ in 0..30 {
        fake.set(&busy, &[(&instance, 1000)]);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let blocking: BTreeSet<String> = registry
        .watch_hub()
        .blocking()
        .into_iter()
        .map(|q| q.service)
        .collect();
    assert!(
        blocking.contains(&busy),
        "a service that keeps moving takes a blocking slot: {blocking:?}"
    );
}
