//! The channel's metrics, read back through metrics-util's `DebuggingRecorder`: calls per
//! endpoint add up to the calls made, endpoints are counted in the state they are in,
//! failures, retries, hedges and ejections are counted where they happen.
//!
//! Each test runs on a current-thread runtime with the recorder set as the thread's local
//! one, so every task of the channel (and of the backends) records into it.

mod common;

use std::time::Duration;

use common::{Backend, SERVICE, check, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use grpc_resolve::{DiscoveredChannel, Hedging, metrics};
use metrics_readback::{DebuggingRecorder, Recorded};

/// The channel's metrics read back.
trait ChannelMetrics {
    /// The endpoint-state gauge of `state`.
    fn endpoints(&self, state: &str) -> f64;

    /// Every state gauge added up: each endpoint discovery lists is counted once.
    fn counted_endpoints(&self) -> f64;
}

impl ChannelMetrics for Recorded {
    fn endpoints(&self, state: &str) -> f64 {
        self.gauge(
            metrics::ENDPOINTS,
            &[("service", SERVICE), ("state", state)],
        )
    }

    fn counted_endpoints(&self) -> f64 {
        self.gauge(metrics::ENDPOINTS, &[("service", SERVICE)])
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
    let per_endpoint = recorded.label_values(metrics::ENDPOINT_CALLS, "endpoint");
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
        recorded.samples(metrics::CALL_SECONDS, &[("service", SERVICE)]),
        300,
        "expected one latency sample per call"
    );
    assert!(
        recorded.counter(metrics::UPDATES, &[("service", SERVICE)]) >= 1,
        "expected the discovery update counted"
    );
    assert!(
        recorded.samples(metrics::APPLY_SECONDS, &[("service", SERVICE)]) >= 1,
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
