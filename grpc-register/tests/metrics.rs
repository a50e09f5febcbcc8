//! The registration's metrics, read back through metrics-util's `DebuggingRecorder`: a
//! server counts as registered once the registry accepted it, its TTL reports by status, a
//! registration the registry forgot as made again, and nothing once it stopped.
//!
//! The test runs on a current-thread runtime with the recorder set as the thread's local
//! one, so the server's keep-alive task records into it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use discovery_core::{MemoryRegistry, Registry};
use grpc_register::{CheckKind, Registered, metrics};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use tonic::transport::Server;

/// What was recorded so far, added up across snapshots (a snapshot of the debugging
/// recorder takes counters and gauges back to 0; the crate only moves its gauge).
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

    fn registrations(&self, state: &str) -> f64 {
        self.value(
            MetricKind::Gauge,
            metrics::REGISTRATIONS,
            &[("service", "adder"), ("state", state)],
        )
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(MetricKind::Counter, name, labels)
    }

    /// Waits (checking every 10 ms, up to 10 s) until `done` holds.
    async fn until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..1000 {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {what} within 10 s");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn registration_state_attempts_reports_and_reregistrations_are_counted() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded {
        snapshotter: recorder.snapshotter(),
        totals: RefCell::default(),
    };
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let registry = MemoryRegistry::new();
    let running = Registered::builder(registry.clone(), "adder")
        .check(CheckKind::Ttl(Duration::from_millis(300)))
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .expect("the server starts");
    assert_eq!(
        recorded.registrations("registered"),
        1.0,
        "expected the accepted registration counted registered"
    );
    assert_eq!(
        recorded.counter(
            metrics::ATTEMPTS,
            &[("service", "adder"), ("outcome", "ok")]
        ),
        1.0,
        "expected one successful attempt"
    );
    recorded
        .until("a passing TTL report", |r| {
            r.counter(
                metrics::HEALTH_REPORTS,
                &[("service", "adder"), ("status", "passing")],
            ) >= 1.0
        })
        .await;

    // The registry forgets the instance: the next report finds out and registers again.
    registry.deregister(running.id()).await.unwrap();
    recorded
        .until("a re-registration", |r| {
            r.counter(metrics::REREGISTRATIONS, &[("service", "adder")]) >= 1.0
        })
        .await;
    assert!(
        recorded.counter(
            metrics::ATTEMPTS,
            &[("service", "adder"), ("outcome", "ok")]
        ) >= 2.0,
        "expected the re-registration counted as an attempt"
    );

    running.stop().await.expect("a graceful stop");
    assert_eq!(
        recorded.registrations("registered")
            + recorded.registrations("new")
            + recorded.registrations("lost"),
        0.0,
        "expected a stopped server's registration counted nowhere"
    );
}
