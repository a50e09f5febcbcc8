//! The channel's metrics, read back through metrics-util's `DebuggingRecorder`: calls per
//! endpoint add up to the calls made, endpoints are counted in the state they are in,
//! failures, retries, hedges and ejections are counted where they happen.
//!
//! Each test runs on a current-thread runtime with the recorder set as the thread's local
//! one, so every task of the channel (and of the backends) records into it.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use common::{Backend, SERVICE, check, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use grpc_resolve::{DiscoveredChannel, Hedging, metrics};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

/// What was recorded so far. A snapshot of the debugging recorder takes counters and
/// gauges back to 0, so the values are added up across snapshots (the channel only adds to
/// its gauges, never sets them); a histogram's value is how many samples it took.
struct Recorded {
    snapshotter: Snapshotter,
    totals: RefCell<HashMap<CompositeKey, f64>>,
}

impl Recorded {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Recorded {
            snapshotter: recorder.snapshotter(),
            totals: RefCell::default(),
        }
    }

    /// Every series named `name` whose labels include all of `labels`, with its value.
    fn series(
        &self,
        kind: MetricKind,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Vec<(CompositeKey, f64)> {
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
            .map(|(key, value)| (key.clone(), *value))
            .collect()
    }

    /// The sum of the counters named `name` with `labels`.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let sum: f64 = self
            .series(MetricKind::Counter, name, labels)
            .iter()
            .map(|(_, v)| v)
            .sum();
        sum as u64
    }

    /// The endpoint-state gauge of `state`.
    fn endpoints(&self, state: &str) -> f64 {
        self.series(
            MetricKind::Gauge,
            metrics::ENDPOINTS,
            &[("service", SERVICE), ("state", state)],
        )
        .iter()
        .map(|(_, v)| v)
        .sum()
    }

    /// How many samples the histogram named `name` took.
    fn samples(&self, name: &str) -> usize {
        let sum: f64 = self
            .series(MetricKind::Histogram, name, &[("service", SERVICE)])
            .iter()
            .map(|(_, v)| v)
            .sum();
        sum as usize
    }

    /// Every state gauge added up: each endpoint discovery lists is counted once.
    fn counted_endpoints(&self) -> f64 {
        ["connecting", "ready", "stale", "ejected"]
            .iter()
            .map(|state| self.endpoints(state))
            .sum()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn calls_per_endpoint_add_up_and_endpoints_are_counted_by_state() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = ::metrics::set_default_local_recorder(&recorder);
    metrics::describe();

    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let (resolver, handle) = channel_resolver();
    handle.set(
        backends
            .iter()
            .enumerate()
            .map(|(i, b)| b.instance(&format!("adder-{i}")))
            .collect(),
    );
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 3).await;
    assert_eq!(
        recorded.endpoints("ready"),
        3.0,
        "expected all three endpoints counted ready"
    );
    assert_eq!(
        recorded.endpoints("connecting"),
        0.0,
        "expected none left counted connecting"
    );

    for _ in 0..300 {
        check(&channel).await.expect("a healthy backend answers");
    }
    assert_eq!(
        recorded.counter(metrics::CALLS, &[("service", SERVICE)]),
        300,
        "expected every call counted"
    );
    let per_endpoint = recorded.series(
        MetricKind::Counter,
        metrics::ENDPOINT_CALLS,
        &[("service", SERVICE)],
    );
    assert_eq!(
        per_endpoint.len(),
        3,
        "expected one call counter per endpoint, got {per_endpoint:?}"
    );
    assert_eq!(
        recorded.counter(metrics::ENDPOINT_CALLS, &[("service", SERVICE)]),
        300,
        "expected the per-endpoint call counters to add up to the calls made"
    );
    for (i, backend) in backends.iter().enumerate() {
        let id = format!("adder-{i}");
        assert_eq!(
            recorded.counter(metrics::ENDPOINT_CALLS, &[("endpoint", &id)]),
            backend.calls() as u64,
            "expected {id}'s counter to match the calls its backend saw"
        );
    }
    assert_eq!(
        recorded.samples(metrics::CALL_SECONDS),
        300,
        "expected one latency sample per call"
    );
    assert!(
        recorded.counter(metrics::UPDATES, &[("service", SERVICE)]) >= 1,
        "expected the discovery update counted"
    );
    assert!(
        recorded.samples(metrics::APPLY_SECONDS) >= 1,
        "expected the apply time of the update recorded"
    );

    // One backend stops: its endpoint leaves ready and reconnects (connecting); once
    // discovery drops it, it is counted nowhere.
    let [mut first, second, third] = backends;
    first.stop().await;
    wait_ready(&channel, 2).await;
    settle(async {
        while recorded.endpoints("ready") != 2.0 {
            channel.changed().await;
        }
    })
    .await;
    assert_eq!(
        recorded.counted_endpoints(),
        3.0,
        "expected the stopped endpoint still counted while discovery lists it"
    );
    handle.set(vec![second.instance("adder-1"), third.instance("adder-2")]);
    settle(channel.wait_for(|eps| eps.len() == 2)).await;
    assert_eq!(
        recorded.counted_endpoints(),
        2.0,
        "expected the removed endpoint counted in no state"
    );
    assert_eq!(
        recorded.endpoints("ready"),
        2.0,
        "expected the two live endpoints ready"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn failures_retries_and_ejections_are_counted_where_they_happen() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = ::metrics::set_default_local_recorder(&recorder);

    let good = Backend::start().await;
    let bad = Backend::start().await;
    bad.answer_unavailable(true);
    let (resolver, handle) = channel_resolver();
    handle.set(vec![good.instance("good"), bad.instance("bad")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    for _ in 0..60 {
        check(&channel)
            .await
            .expect("a call answered Unavailable is retried on the good backend");
    }
    let stats = channel.stats();
    assert!(stats.ejections >= 1, "expected bad ejected: {stats:?}");
    assert_eq!(
        recorded.counter(metrics::ENDPOINT_FAILURES, &[("endpoint", "bad")]),
        stats.failures,
        "expected every failed attempt counted on bad"
    );
    assert_eq!(
        recorded.counter(metrics::ENDPOINT_FAILURES, &[("endpoint", "good")]),
        0,
        "expected no failure counted on good"
    );
    assert_eq!(
        recorded.counter(metrics::RETRIES, &[("service", SERVICE)]),
        stats.retries,
        "expected the retries metric to match the channel's stats"
    );
    assert_eq!(
        recorded.counter(
            metrics::EJECTIONS,
            &[("service", SERVICE), ("reason", "consecutive_failures")]
        ),
        stats.ejections,
        "expected the ejections counted by their reason"
    );
    assert_eq!(
        recorded.counted_endpoints(),
        2.0,
        "expected each endpoint counted in exactly one state"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn hedges_are_counted() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = ::metrics::set_default_local_recorder(&recorder);

    let slow = Backend::start().await;
    let fast = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![slow.instance("slow"), fast.instance("fast")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .health_check(false)
        .unresponsive_after(None)
        .hedging(Hedging::after(Duration::from_millis(20)))
        .build();
    wait_ready(&channel, 2).await;
    slow.hold();
    settle(async {
        while channel.stats().hedges < 3 {
            check(&channel)
                .await
                .expect("a call held on slow is answered by its hedge");
        }
    })
    .await;
    let stats = channel.stats();
    assert_eq!(
        recorded.counter(metrics::HEDGES, &[("service", SERVICE)]),
        stats.hedges,
        "expected the hedges metric to match the channel's stats"
    );
    slow.release();
}
