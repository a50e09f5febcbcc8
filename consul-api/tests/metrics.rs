//! The client's metrics, read back through metrics-util's `DebuggingRecorder`: a watch
//! counts as active while watched, its requests by outcome (a first read `ok`, a blocking
//! query a change ends `woken`), its blocking slot, and the connections it keeps in use
//! against the budget. Against consul-dev, or a real Consul when `CONSUL_HTTP_ADDR` is set.
//!
//! The test runs on a current-thread runtime with the recorder set as the thread's local
//! one, so the watch loop and the transport record into it.

mod common;

use std::time::Duration;

use consul_api::agent::{CheckDefinition, ServiceRegistration};
use consul_api::{CheckStatus, ConsulRegistry, metrics};
use discovery_core::{Query, Resolver, Update, UpdateStream};
use futures_util::StreamExt;
use metrics_readback::{DebuggingRecorder, Recorded};

/// The watch's metrics read back.
trait WatchMetrics {
    /// The watch requests for `service` that ended with `outcome`.
    fn requests(&self, service: &str, outcome: &str) -> f64;
}

impl WatchMetrics for Recorded {
    fn requests(&self, service: &str, outcome: &str) -> f64 {
        let labels = [("service", service), ("outcome", outcome)];
        self.counter(metrics::WATCH_REQUESTS, &labels) as f64
    }
}

async fn snapshot(updates: &mut UpdateStream) -> Vec<String> {
    match tokio::time::timeout(Duration::from_secs(10), updates.next()).await {
        Ok(Some(Update::Snapshot(s))) => s.into_iter().map(|i| i.id).collect(),
        other => panic!("expected a snapshot within 10 s, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_watch_counts_its_requests_by_outcome_its_slot_and_its_connection() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let agent = common::agent().await;
    let name = common::unique("metrics");
    let mut reg = ServiceRegistration::new(&name);
    reg.id = Some(format!("{name}-1"));
    reg.address = Some("127.0.0.1".into());
    reg.port = Some(7001);
    let mut check = CheckDefinition::ttl(Duration::from_secs(60));
    check.status = Some(CheckStatus::Passing);
    reg.check = Some(check);
    agent.client.agent().register_service(&reg).await.unwrap();

    let registry = ConsulRegistry::new(agent.client.clone());
    let mut updates = registry.watch(&Query::new(&name));
    assert_eq!(snapshot(&mut updates).await, [format!("{name}-1")]);
    assert_eq!(
        recorded.requests(&name, "ok"),
        1.0,
        "expected the first read counted ok"
    );
    assert_eq!(
        recorded.gauge(metrics::WATCHES_ACTIVE, &[]),
        1.0,
        "expected one active watch"
    );
    // The loop now blocks on the index it got: one slot held, its connection in use.
    recorded
        .until("the watch to hold a blocking slot", |r| {
            r.gauge(metrics::WATCHES_BLOCKING, &[]) == 1.0
        })
        .await;
    recorded
        .until("the blocking query's connection in use", |r| {
            r.gauge(metrics::CONNECTIONS_IN_USE, &[]) >= 1.0
        })
        .await;
    let budget = recorded.gauge(metrics::CONNECTIONS_BUDGET, &[]);
    assert_eq!(
        budget, agent.config.max_connections as f64,
        "expected the budget to be the client's max_connections"
    );
    assert!(
        recorded.gauge(metrics::CONNECTIONS_IN_USE, &[]) <= budget,
        "expected the connections in use within the budget"
    );

    // A change ends the blocking query: woken.
    reg.id = Some(format!("{name}-2"));
    reg.port = Some(7002);
    agent.client.agent().register_service(&reg).await.unwrap();
    let mut ids = snapshot(&mut updates).await;
    ids.sort();
    assert_eq!(ids, [format!("{name}-1"), format!("{name}-2")]);
    assert!(
        recorded.requests(&name, "woken") >= 1.0,
        "expected the blocking query the change ended counted woken"
    );
    assert_eq!(
        recorded.requests(&name, "error") + recorded.requests(&name, "throttled"),
        0.0,
        "expected no failed request"
    );

    // The last watcher goes: the loop stops, and neither counts any longer.
    drop(updates);
    recorded
        .until("the loop to stop", |r| {
            r.gauge(metrics::WATCHES_ACTIVE, &[]) == 0.0
        })
        .await;
    assert_eq!(
        recorded.gauge(metrics::WATCHES_BLOCKING, &[]),
        0.0,
        "expected no loop left holding a slot"
    );
    for id in ["1", "2"] {
        let _ = agent
            .client
            .agent()
            .deregister_service(&format!("{name}-{id}"))
            .await;
    }
}
