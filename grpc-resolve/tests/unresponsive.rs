//! Unresponsive endpoints leave rotation: a backend whose process hangs (its kernel still
//! holds the connections open, nothing is read or answered, as under SIGSTOP) stops
//! getting calls within well under a second while the others serve, the calls stuck on it
//! fail `Unavailable`, and it gets calls again once it resumes. With hedging, the calls
//! stuck on it are answered by another backend instead: none fails.

mod common;

use std::time::Duration;

use common::load::{Load, longest_gap};
use common::proxy::FaultProxy;
use common::{Backend, SERVICE, settle, wait_ready};
use discovery_core::ServiceInstance;
use discovery_core::mock::channel_resolver;
use grpc_resolve::{Condition, DiscoveredChannel, Hedging};
use tokio::time::Instant;

/// How many callers keep the channel busy.
const CALLERS: usize = 8;

/// Three backends behind proxies, `hung` of them frozen under load, then thawed; the
/// calls hedged with `hedging`, if given.
async fn hang(hung: usize, hedging: Option<Hedging>) {
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let mut proxies = Vec::new();
    for backend in &backends {
        proxies.push(FaultProxy::start(backend.addr).await);
    }
    let (resolver, handle) = channel_resolver();
    handle.set(
        proxies
            .iter()
            .enumerate()
            .map(|(i, proxy)| {
                ServiceInstance::new(format!("b{i}"), SERVICE, "127.0.0.1", proxy.addr.port())
            })
            .collect(),
    );
    let hedged = hedging.is_some();
    let mut builder = DiscoveredChannel::builder(resolver, SERVICE);
    if let Some(hedging) = hedging {
        builder = builder.hedging(hedging);
    }
    let channel = builder.build();
    wait_ready(&channel, 3).await;

    // Calls with a deadline far beyond the bound, so that only the channel's own doing can
    // free a caller stuck on a hung backend in time.
    let load = Load::start(&channel, CALLERS, Duration::from_secs(20));
    load.wait_successes(300).await;
    let in_flight: usize = channel.endpoints()[..hung]
        .iter()
        .map(|e| e.in_flight)
        .sum();
    let frozen_at = Instant::now();
    for proxy in &proxies[..hung] {
        proxy.freeze();
    }
    let is_hung = |id: &str| (0..hung).any(|i| id == format!("b{i}"));
    let found = if hedged {
        // The hedges answer for the hung backends from the start; they leave rotation
        // too, by the monitor or as the hedges they lose count against them.
        load.wait_successes(300).await;
        settle(channel.wait_for(|eps| eps.iter().filter(|e| is_hung(&e.id)).all(|e| !e.ready)))
            .await;
        format!("out of rotation after {:?}", frozen_at.elapsed())
    } else {
        settle(channel.wait_for(|eps| eps.iter().filter(|e| is_hung(&e.id)).all(|e| !e.ready)))
            .await;
        let out_after = frozen_at.elapsed();
        // Each hung backend's probe goes unanswered, and its connection is cut.
        let watched = channel.clone();
        settle(channel.wait_for(|_| watched.stats().unresponsive >= hung as u64)).await;
        let cut_after = frozen_at.elapsed();
        format!("out of rotation after {out_after:?}, cut after {cut_after:?}")
    };
    load.wait_successes(300).await;

    let thawed_at = Instant::now();
    for proxy in &proxies[..hung] {
        proxy.thaw();
    }
    wait_ready(&channel, 3).await;
    let back_after = thawed_at.elapsed();
    let before: Vec<usize> = backends[..hung].iter().map(Backend::calls).collect();
    settle(async {
        while backends[..hung]
            .iter()
            .zip(&before)
            .any(|(backend, before)| backend.calls() == *before)
        {
            load.wait_successes(50).await;
        }
    })
    .await;
    let stats = channel.stats();
    let outcomes = load.stop().await;

    let gap = longest_gap(&outcomes, frozen_at);
    let failed: Vec<&tonic::Status> = outcomes
        .iter()
        .filter(|o| o.at >= frozen_at)
        .filter_map(|o| o.result.as_ref().err())
        .collect();
    println!(
        "{hung} of 3 hung at concurrency {CALLERS}{}: {found}, \
         longest stretch without a success {gap:?}, {} failed calls ({in_flight} in flight \
         on them when they hung), back {back_after:?} after the thaw; {stats:?}",
        if hedged { ", hedged" } else { "" },
        failed.len()
    );
    assert!(
        gap < Duration::from_secs(1),
        "expected no stretch of a second or more without a successful call, got {gap:?}"
    );
    if hedged {
        assert!(
            failed.len() <= in_flight,
            "expected at most the {in_flight} calls in flight on the hung backends when they \
             hung to fail, got {}: {failed:?}",
            failed.len()
        );
        assert!(stats.hedges > 0, "expected hedges: {stats:?}");
    }
    // A caller stuck on a hung backend fails once, when its connection is cut; after that
    // the backend is out of rotation, so no caller is stuck twice.
    assert!(
        failed.len() <= CALLERS,
        "expected at most one failure per caller (the calls stuck on the hung backends), \
         got {}: {failed:?}",
        failed.len()
    );
    for status in &failed {
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "expected a call cut from a hung backend to be Unavailable: {status:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hung_backend_of_three_leaves_rotation_and_comes_back() {
    hang(1, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hung_backends_of_three_leave_rotation_and_come_back() {
    hang(2, None).await;
}

/// What the hedged tests hedge with: a delay far above a call's answer time here (a few
/// milliseconds in a debug build) and as many attempts as backends.
fn hedging() -> Hedging {
    Hedging::after(Duration::from_millis(50)).max_attempts(3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hedging_the_calls_on_one_hung_backend_of_three_are_answered_elsewhere() {
    hang(1, Some(hedging())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hedging_the_calls_on_two_hung_backends_of_three_are_answered_elsewhere() {
    hang(2, Some(hedging())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_that_answers_its_probe_stays_connected() {
    let slow = Backend::start().await;
    let fast = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![slow.instance("slow"), fast.instance("fast")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    // Calls held on slow (its application is stuck, its server is not) while fast answers.
    let load = Load::start(&channel, 4, Duration::from_secs(20));
    slow.hold();
    slow.wait_held_at_least(1).await;
    settle(channel.wait_for(|eps| {
        eps.iter()
            .any(|e| e.id == "slow" && e.condition == Condition::Unresponsive)
    }))
    .await;
    // The probe bypasses the stuck application: the server answers it.
    settle(channel.wait_for(|eps| {
        eps.iter()
            .any(|e| e.id == "slow" && e.condition == Condition::Serving)
    }))
    .await;
    slow.release();
    load.wait_successes(100).await;
    let stats = channel.stats();
    let outcomes = load.stop().await;
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    assert_eq!(
        failed, 0,
        "expected the held calls to complete once released: {stats:?}"
    );
    assert_eq!(
        stats.unresponsive, 0,
        "expected no connection cut: the server answered its probe: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_time_out_count_against_their_endpoint() {
    let steady = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![
        common::unanswering_instance("stuck").await,
        steady.instance("steady"),
    ]);
    // Only the timeouts can eject it here: its health stream never answers either, and the
    // monitor is off.
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .health_check(false)
        .unresponsive_after(None)
        .eject_after(2, Duration::from_secs(60))
        .build();
    wait_ready(&channel, 2).await;
    let mut timeouts = 0;
    settle(async {
        while channel.stats().ejections == 0 {
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            });
            request.set_timeout(Duration::from_millis(100));
            if let Err(status) = client.check(request).await {
                assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
                timeouts += 1;
            }
        }
    })
    .await;
    let endpoints = channel.endpoints();
    assert!(
        endpoints.iter().any(|e| e.id == "stuck" && e.ejected),
        "expected the endpoint whose calls time out ejected: {endpoints:?}"
    );
    assert_eq!(timeouts, 2, "expected ejection after two timeouts in a row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_to_a_server_that_still_speaks_is_replaced_without_cutting_it() {
    let backends = [Backend::start().await, Backend::start().await];
    let proxy = FaultProxy::start(backends[0].addr).await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![
        ServiceInstance::new("silent", SERVICE, "127.0.0.1", proxy.addr.port()),
        backends[1].instance("steady"),
    ]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;
    // The calls stuck on the silent connection end at their deadline: it is retired, not
    // cut.
    let load = Load::start(&channel, 4, Duration::from_secs(2));
    load.wait_successes(100).await;
    let before = proxy.accepted();
    // The path of the open connection goes silent; the server behind it is fine.
    proxy.silence_open_connections();
    // Suspected, its probe unanswered on the old connection, a fresh one answers: the
    // endpoint reconnects, and new calls reach the server again.
    let calls = backends[0].calls();
    settle(async {
        while backends[0].calls() == calls || proxy.accepted() < before + 2 {
            load.wait_successes(10).await;
        }
    })
    .await;
    let stats = channel.stats();
    let outcomes = load.stop().await;
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    println!("silent path: {failed} failed calls; {stats:?}");
    assert!(
        failed <= 4,
        "expected only the calls stuck on the silent connection to fail, one per caller at \
         most, got {failed}"
    );
    assert_eq!(
        stats.unresponsive, 0,
        "expected the connection retired gently, not cut: {stats:?}"
    );
}
