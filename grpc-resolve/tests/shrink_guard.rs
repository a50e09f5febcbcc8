//! The shrink guard: an answer that drops most connected endpoints at once (an agent
//! restarted empty) keeps them serving as a fallback until the set recovers, without a
//! failed or slow call; one graceful stop of three still applies at once.

mod common;

use std::time::Duration;

use common::{Backend, Load, SERVICE, check, observe, settle, wait_ready};
use discovery_core::Update;
use discovery_core::mock::channel_resolver;
use grpc_resolve::DiscoveredChannel;

/// Three backends under load at concurrency 8; the resolver answers `gone` (an empty
/// snapshot or "no such service") for `outage`, then lists them again.
async fn answer_gone_under_load(gone: Update) {
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let instances: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| b.instance(&format!("b{i}")))
        .collect();
    let (resolver, handle) = channel_resolver();
    handle.set(instances.clone());
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 3).await;
    let load = Load::start(&channel, 8);

    handle.send(gone);
    let endpoints =
        settle(channel.wait_for(|eps| eps.iter().filter(|e| e.fallback).count() == 3)).await;
    assert!(
        endpoints.iter().all(|e| e.ready),
        "expected all three kept ready as a fallback, got {endpoints:?}"
    );
    // The servers' re-registration comes later than the first read: calls go on meanwhile.
    let mut served_by_fallbacks = 0;
    observe(&channel, Duration::from_millis(800), |_| {}).await;
    for backend in &backends {
        served_by_fallbacks += backend.calls();
    }
    handle.set(instances);
    let endpoints = settle(
        channel.wait_for(|eps| eps.len() == 3 && eps.iter().all(|e| !e.fallback && e.ready)),
    )
    .await;
    let report = load.stop().await;
    println!(
        "calls: {} ok, {} failed, slowest {:?}; {:?}",
        report.ok,
        report.failed,
        report.slowest,
        channel.stats()
    );
    assert_eq!(report.failed, 0, "expected no failed call, got {report:?}");
    assert!(
        report.slowest < Duration::from_secs(1),
        "expected no call to wait 1 s or more, the slowest took {:?}",
        report.slowest
    );
    assert!(
        served_by_fallbacks > 0,
        "expected the fallbacks to serve calls"
    );
    assert_eq!(
        channel.stats().fallbacks,
        3,
        "three endpoints kept as a fallback"
    );
    for (backend, endpoint) in backends.iter().zip(&endpoints) {
        assert_eq!(
            backend.connections(),
            1,
            "expected {} listed again on its first connection, not a new one",
            endpoint.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_answer_while_servers_are_connected_fails_no_call() {
    answer_gone_under_load(Update::Snapshot(Vec::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_said_not_to_exist_while_servers_are_connected_fails_no_call() {
    answer_gone_under_load(Update::DoesNotExist).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_leaving_applies_at_once() {
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
            .map(|(i, b)| b.instance(&format!("b{i}")))
            .collect(),
    );
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 3).await;

    handle.set(vec![backends[0].instance("b0"), backends[1].instance("b1")]);
    let endpoints = settle(channel.wait_for(|eps| eps.len() == 2)).await;
    assert!(
        endpoints.iter().all(|e| !e.fallback),
        "expected the answer applied, nothing kept: {endpoints:?}"
    );
    assert_eq!(channel.stats().fallbacks, 0, "expected nothing ever kept");
    let before = backends[2].calls();
    for _ in 0..100 {
        check(&channel).await.expect("b0 and b1 serve");
    }
    assert_eq!(backends[2].calls(), before, "b2 left: it got no calls");
}
