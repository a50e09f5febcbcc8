//! Calls spread over every ready backend, in proportion to weight.

mod common;

use common::{Backend, SERVICE, check, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use grpc_resolve::DiscoveredChannel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_all_backends() {
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

    for _ in 0..600 {
        check(&channel).await.expect("every call succeeds");
    }
    let calls: Vec<usize> = backends.iter().map(Backend::calls).collect();
    assert_eq!(
        calls.iter().sum::<usize>(),
        600,
        "each call reaches one backend: {calls:?}"
    );
    for c in &calls {
        assert!(
            *c >= 100,
            "expected every backend to get about 200 calls, got {calls:?}"
        );
    }
    assert_eq!(channel.stats().failures, 0, "no failures expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_three_gets_about_three_times_the_calls() {
    let heavy = Backend::start().await;
    let light = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![heavy.weighted("heavy", 3), light.weighted("light", 1)]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    // One call at a time: nothing is ever in flight, so weights alone decide.
    for _ in 0..4_000 {
        check(&channel).await.expect("every call succeeds");
    }
    let (h, l) = (heavy.calls(), light.calls());
    assert_eq!(h + l, 4_000, "every call reaches one backend");
    let ratio = h as f64 / l as f64;
    assert!(
        (2.0..4.5).contains(&ratio),
        "expected weight 3 to get 2x to 4.5x the calls of weight 1, got {h} vs {l} ({ratio:.2}x)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrency_the_heavier_endpoint_still_gets_more() {
    let heavy = Backend::start().await;
    let light = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![heavy.weighted("heavy", 3), light.weighted("light", 1)]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    // With calls in flight the balancer keeps in-flight calls per unit of weight even, so
    // the split also depends on each backend's latency: only the direction is certain.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                check(&channel).await.expect("every call succeeds");
            }
        }));
    }
    for task in tasks {
        task.await.expect("the task ends cleanly");
    }
    let (h, l) = (heavy.calls(), light.calls());
    assert_eq!(h + l, 2_000, "every call reaches one backend");
    assert!(
        h as f64 > 1.3 * l as f64,
        "expected weight 3 to get clearly more than weight 1, got {h} vs {l}"
    );
    let endpoints = channel.endpoints();
    assert!(
        endpoints.iter().all(|e| e.in_flight == 0),
        "nothing stays in flight once all calls are done: {endpoints:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_change_applies_in_place() {
    let a = Backend::start().await;
    let b = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![a.weighted("a", 1), b.weighted("b", 1)]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    handle.set(vec![a.weighted("a", 3), b.weighted("b", 1)]);
    let endpoints =
        settle(channel.wait_for(|eps| eps.iter().any(|e| e.id == "a" && e.weight == 3))).await;
    assert!(
        endpoints.iter().all(|e| e.ready),
        "a weight change keeps the connections: {endpoints:?}"
    );
    for _ in 0..2_000 {
        check(&channel).await.expect("every call succeeds");
    }
    let ratio = a.calls() as f64 / b.calls() as f64;
    assert!(
        (2.0..4.5).contains(&ratio),
        "expected a (now weight 3) to get 2x to 4.5x the calls of b, got {} vs {}",
        a.calls(),
        b.calls()
    );
}
