//! Calls spread over every ready backend, in proportion to weight.

mod common;

use common::{Backend, SERVICE, check, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use grpc_resolve::DiscoveredChannel;

// One thread: these 30,000 calls cost less CPU without cross-thread wakeups, and leave the
// other core to the tests running beside it.
#[tokio::test(flavor = "current_thread")]
async fn three_equal_backends_each_get_a_third_within_ten_percent() {
    const CALLS: usize = 30_000;
    const CALLERS: usize = 16;
    const _: () = assert!(
        CALLS.is_multiple_of(CALLERS),
        "callers share the calls evenly"
    );
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

    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..CALLS / CALLERS {
                check(&channel).await.expect("every call succeeds");
            }
        }));
    }
    for task in tasks {
        settle(task).await.expect("a caller task ends cleanly");
    }

    let calls: Vec<usize> = backends.iter().map(Backend::calls).collect();
    let shares: Vec<f64> = calls.iter().map(|&c| c as f64 / CALLS as f64).collect();
    println!("{CALLS} calls over 3 equal backends: {calls:?}, shares {shares:.4?}");
    assert_eq!(
        calls.iter().sum::<usize>(),
        CALLS,
        "each call reaches one backend: {calls:?}"
    );
    for share in &shares {
        assert!(
            (0.9 / 3.0..=1.1 / 3.0).contains(share),
            "expected every backend within 10% of a third of {CALLS} calls \
             ({:.0}..={:.0}), got {calls:?}",
            0.9 / 3.0 * CALLS as f64,
            1.1 / 3.0 * CALLS as f64
        );
    }
    assert_eq!(channel.stats().failures, 0, "no failures expected");
    // The channel's own per-endpoint counts agree with what the backends saw.
    let counted: Vec<usize> = channel
        .endpoints()
        .iter()
        .map(|e| usize::try_from(e.calls).expect("fits"))
        .collect();
    assert_eq!(counted, calls, "per-endpoint call counters, by id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_three_gets_about_three_times_the_calls() {
    let heavy = Backend::start().await;
    let light = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![heavy.weighted("heavy", 3), light.weighted("light", 1)]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    // One call at a time: nothing is ever in flight, so weights alone decide and each call
    // goes to the heavy backend with probability 3/4. Over 4,000 calls the ratio is then
    // 3.0 with a standard deviation of about 0.11: 2.5 to 3.6 is over four of them.
    for _ in 0..4_000 {
        check(&channel).await.expect("every call succeeds");
    }
    let (h, l) = (heavy.calls(), light.calls());
    assert_eq!(h + l, 4_000, "every call reaches one backend");
    let ratio = h as f64 / l as f64;
    println!("weights 3:1, 4000 calls one at a time: {h} vs {l} ({ratio:.2}x)");
    assert!(
        (2.5..3.6).contains(&ratio),
        "expected weight 3 to get 2.5x to 3.6x the calls of weight 1, got {h} vs {l} ({ratio:.2}x)"
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
            for _ in 0..125 {
                check(&channel).await.expect("every call succeeds");
            }
        }));
    }
    for task in tasks {
        task.await.expect("the task ends cleanly");
    }
    let (h, l) = (heavy.calls(), light.calls());
    assert_eq!(h + l, 1_000, "every call reaches one backend");
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
    for _ in 0..1_000 {
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
