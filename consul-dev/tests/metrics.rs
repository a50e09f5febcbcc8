//! The agent's metrics, read back through metrics-util's `DebuggingRecorder`: requests are
//! counted by the route pattern they matched (never the raw path) and their status, and
//! blocking queries while they wait.
//!
//! The test runs on a current-thread runtime with the recorder set as the thread's local
//! one, so the agent's tasks record into it.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;

use common::Agent;
use consul_dev::metrics;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use serde_json::json;

/// What was recorded so far, added up across snapshots (a snapshot of the debugging
/// recorder takes counters and gauges back to 0; the agent only moves its gauge).
struct Recorded {
    snapshotter: Snapshotter,
    totals: RefCell<HashMap<CompositeKey, f64>>,
}

impl Recorded {
    fn value(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut totals = self.totals.borrow_mut();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let add = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(v) => v.into_inner(),
                DebugValue::Histogram(values) => values.len() as f64,
            };
            *totals.entry(key).or_default() += add;
        }
        totals
            .iter()
            .filter(|(key, _)| {
                key.kind() == kind
                    && key.key().name() == name
                    && labels.iter().all(|(k, v)| {
                        key.key()
                            .labels()
                            .any(|label| label.key() == *k && label.value() == *v)
                    })
            })
            .map(|(_, value)| value)
            .sum()
    }

    fn requests(&self, route: &str, status: &str) -> f64 {
        self.value(
            MetricKind::Counter,
            metrics::REQUESTS,
            &[("route", route), ("status", status)],
        )
    }

    /// Every route label recorded.
    fn routes(&self) -> Vec<String> {
        self.value(MetricKind::Counter, metrics::REQUESTS, &[]);
        let mut routes: Vec<String> = self
            .totals
            .borrow()
            .keys()
            .filter(|key| key.key().name() == metrics::REQUESTS)
            .flat_map(|key| {
                key.key()
                    .labels()
                    .filter(|l| l.key() == "route")
                    .map(|l| l.value().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        routes.sort();
        routes.dedup();
        routes
    }
}

#[tokio::test(flavor = "current_thread")]
async fn requests_count_by_route_pattern_and_status_and_blocked_queries_while_they_wait() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded {
        snapshotter: recorder.snapshotter(),
        totals: RefCell::default(),
    };
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "ID": "web-1"})).await;

    let first = a.get("/v1/health/service/web").await;
    assert_eq!(first.status, 200, "a health read answers");
    a.get("/v1/health/service/nothing-here").await;
    a.get("/v1/not-an-endpoint/at/all").await;
    a.put("/v1/health/service/web").await;
    assert_eq!(
        recorded.requests("/v1/health/service/{*name}", "200"),
        2.0,
        "expected both health reads under their route pattern"
    );
    assert_eq!(
        recorded.requests("/v1/health/service/{*name}", "405"),
        1.0,
        "expected the PUT counted as 405 under the same pattern"
    );
    assert_eq!(
        recorded.requests(metrics::UNMATCHED, "404"),
        1.0,
        "expected the unknown path counted as unmatched"
    );
    let routes = recorded.routes();
    assert!(
        routes
            .iter()
            .all(|r| !r.contains("nothing-here") && !r.contains("not-an-endpoint")),
        "expected no raw path among the route labels: {routes:?}"
    );

    // A blocking query counts while it waits, and leaves the count when a change wakes it.
    let index = first.index();
    let base = a.base.clone();
    let http = a.http.clone();
    let blocked = tokio::spawn(async move {
        http.get(format!(
            "{base}/v1/health/service/web?index={index}&wait=30s"
        ))
        .send()
        .await
        .expect("the blocking query is answered")
        .status()
    });
    a.agent.wait_for_blocked_queries(1).await;
    assert_eq!(
        recorded.value(MetricKind::Gauge, metrics::BLOCKED, &[]),
        1.0,
        "expected the waiting query counted"
    );
    a.register(json!({"Name": "web", "ID": "web-2"})).await;
    assert_eq!(
        blocked.await.expect("the query task"),
        200,
        "woken by the change"
    );
    assert_eq!(
        recorded.value(MetricKind::Gauge, metrics::BLOCKED, &[]),
        0.0,
        "expected the woken query to leave the count"
    );
}
