//! The agent's metrics, read back through metrics-util's `DebuggingRecorder`: requests are
//! counted by the route pattern they matched (never the raw path) and their status, and
//! blocking queries while they wait.
//!
//! The test runs on a current-thread runtime with the recorder set as the thread's local
//! one, so the agent's tasks record into it.

mod common;

use common::Agent;
use consul_dev::metrics;
use metrics_readback::{DebuggingRecorder, Recorded};
use serde_json::json;

/// The agent's metrics read back.
trait AgentMetrics {
    /// The requests that matched `route` and were answered `status`.
    fn requests(&self, route: &str, status: &str) -> f64;

    /// Every route label recorded.
    fn routes(&self) -> Vec<String>;
}

impl AgentMetrics for Recorded {
    fn requests(&self, route: &str, status: &str) -> f64 {
        let labels = [("route", route), ("status", status)];
        self.counter(metrics::REQUESTS, &labels) as f64
    }

    fn routes(&self) -> Vec<String> {
        self.label_values(metrics::REQUESTS, "route")
    }
}

#[tokio::test(flavor = "current_thread")]
async fn requests_count_by_route_pattern_and_status_and_blocked_queries_while_they_wait() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
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
        recorded.gauge(metrics::BLOCKED, &[]),
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
        recorded.gauge(metrics::BLOCKED, &[]),
        0.0,
        "expected the woken query to leave the count"
    );
}
