//! Outlier detection by failure rate, on real servers: an endpoint failing a share of its
//! calls with `Internal` while the others succeed is ejected; when several fail, no more
//! than the configured share of the set is ejected at once.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Backend, Load, SERVICE, observe, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use grpc_resolve::DiscoveredChannel;

/// Short enough for a test, long enough for 8 callers to make the request volume.
const INTERVAL: Duration = Duration::from_millis(400);

/// Five backends, `failing` of them answering `Internal` to 3 calls in 10, behind a channel
/// judging failure rates every [`INTERVAL`] and ejecting at most `max_ejection_percent`.
async fn five_backends(
    failing: usize,
    max_ejection_percent: u32,
) -> (
    Vec<Backend>,
    DiscoveredChannel,
    discovery_core::mock::ResolverHandle,
) {
    let mut backends = Vec::new();
    for _ in 0..5 {
        backends.push(Backend::start().await);
    }
    for backend in &backends[..failing] {
        backend.answer_internal_per_ten(3);
    }
    let (resolver, handle) = channel_resolver();
    handle.set(
        backends
            .iter()
            .enumerate()
            .map(|(i, b)| b.instance(&format!("b{i}")))
            .collect(),
    );
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .failure_rate(INTERVAL, 20, 20)
        .max_ejection_percent(max_ejection_percent)
        .build();
    wait_ready(&channel, 5).await;
    (backends, channel, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_30_percent_with_internal_among_four_healthy_ones_is_ejected() {
    let (_backends, channel, _handle) = five_backends(1, 10).await;
    let load = Load::start(&channel, 8);
    let mut ejected = BTreeSet::new();
    let mut record = |endpoints: &[grpc_resolve::EndpointInfo]| {
        ejected.extend(endpoints.iter().filter(|e| e.ejected).map(|e| e.id.clone()));
    };
    // Awaited, not timed: a busy machine may need several intervals for the volume.
    settle(channel.wait_for(|endpoints| {
        record(endpoints);
        endpoints.iter().any(|e| e.ejected)
    }))
    .await;
    // And a few more intervals, to see that nobody else follows.
    observe(&channel, INTERVAL * 3, &mut record).await;
    let report = load.stop().await;
    println!(
        "ejected: {ejected:?}; calls: {} ok, {} failed",
        report.ok, report.failed
    );
    assert!(
        ejected.contains("b0"),
        "expected b0 (30 % Internal) ejected, ejected {ejected:?}"
    );
    assert_eq!(
        ejected.len(),
        1,
        "expected no healthy backend ejected, ejected {ejected:?}"
    );
    assert!(report.ok > 0, "expected calls to go on, got {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_of_five_failing_no_more_than_the_configured_share_is_ejected() {
    // 40 % of five: two at a time.
    let (_backends, channel, _handle) = five_backends(3, 40).await;
    let load = Load::start(&channel, 8);
    let mut most = 0;
    let mut ever = BTreeSet::new();
    let mut record = |endpoints: &[grpc_resolve::EndpointInfo]| {
        let now: Vec<&str> = endpoints
            .iter()
            .filter(|e| e.ejected)
            .map(|e| e.id.as_str())
            .collect();
        most = most.max(now.len());
        ever.extend(now.iter().map(|id| (*id).to_owned()));
    };
    settle(channel.wait_for(|endpoints| {
        record(endpoints);
        endpoints.iter().any(|e| e.ejected)
    }))
    .await;
    observe(&channel, INTERVAL * 6, &mut record).await;
    let report = load.stop().await;
    println!(
        "most ejected at once: {most}; ever {ever:?}; calls: {} ok, {} failed",
        report.ok, report.failed
    );
    assert!(
        most >= 1,
        "expected failing backends ejected (the share must be what limits), got none"
    );
    assert!(
        most <= 2,
        "expected at most 2 of 5 (40 %) ejected at once, saw {most}"
    );
    assert!(
        ever.iter()
            .all(|id| ["b0", "b1", "b2"].contains(&id.as_str())),
        "expected only failing backends ejected, ejected {ever:?}"
    );
}
