//! Hedged calls on real servers: a call held by one backend's application is answered by
//! another backend once the hedging delay passes; hedges need the retry budget, only the
//! methods named are hedged, and an attempt refused with `Unavailable` hands over to the
//! next at once.

mod common;

use std::time::Duration;

use common::{Backend, SERVICE, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use grpc_resolve::{Builder, DiscoveredChannel, Hedging};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const DELAY: Duration = Duration::from_millis(50);

/// Two backends, `slow` holding every call from the start, and a channel over both made by
/// `configure`.
async fn slow_and_fast(
    configure: impl FnOnce(Builder) -> Builder,
) -> (Backend, Backend, DiscoveredChannel) {
    let slow = Backend::start().await;
    let fast = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![slow.instance("slow"), fast.instance("fast")]);
    // The monitor is off, so that only hedging can answer for the held calls.
    let channel = configure(
        DiscoveredChannel::builder(resolver, SERVICE)
            .health_check(false)
            .unresponsive_after(None),
    )
    .build();
    wait_ready(&channel, 2).await;
    slow.hold();
    (slow, fast, channel)
}

/// Whether a call ran out of time: the channel says `DeadlineExceeded`, the server's own
/// timeout (tonic honours `grpc-timeout`) `Cancelled`, whichever comes first.
fn timed_out(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

/// A health check with `deadline`.
async fn check_within(
    channel: &DiscoveredChannel,
    deadline: Duration,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(deadline);
    HealthClient::new(channel.clone())
        .check(request)
        .await
        .map(drop)
}

/// Calls with a 300 ms deadline until one fails (the first that lands on slow, unless it
/// is hedged), and its status.
async fn first_failure(channel: &DiscoveredChannel) -> tonic::Status {
    settle(async {
        loop {
            if let Err(status) = check_within(channel, Duration::from_millis(300)).await {
                return status;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_on_one_backend_is_answered_by_another() {
    let (slow, fast, channel) =
        slow_and_fast(|builder| builder.hedging(Hedging::after(DELAY))).await;
    // One caller in sequence: each call that lands on slow is held there, and only its
    // hedge to fast can answer it before its (long) deadline. Each race slow loses
    // unanswered after the delay counts as a timeout of slow: five in a row eject it.
    let mut calls = 0;
    settle(async {
        while calls < 200 || channel.stats().ejections == 0 {
            check_within(&channel, Duration::from_secs(30))
                .await
                .expect("every call answered, by fast when slow holds it");
            calls += 1;
        }
    })
    .await;
    slow.wait_held_at_least(3).await;
    let stats = channel.stats();
    println!(
        "{calls} calls, {} answered by fast; {stats:?}",
        fast.calls()
    );
    assert_eq!(
        fast.calls(),
        calls,
        "expected fast to have answered every call, hedged or not"
    );
    assert_eq!(stats.retries_denied, 0, "{stats:?}");
    assert!(
        stats.hedges >= 5,
        "expected a hedge per call held on slow: {stats:?}"
    );
    slow.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedges_need_the_retry_budget() {
    let (_slow, _fast, channel) = slow_and_fast(|builder| {
        builder
            .hedging(Hedging::after(DELAY))
            .retry_budget(Duration::from_secs(1), 0, 0.0)
    })
    .await;
    let status = first_failure(&channel).await;
    let stats = channel.stats();
    assert!(
        timed_out(&status),
        "expected the call held on slow to time out unhedged: {status:?}"
    );
    assert_eq!(
        stats.hedges, 0,
        "expected no hedge without budget: {stats:?}"
    );
    assert!(
        stats.retries_denied > 0,
        "expected refusals counted: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_methods_named_are_hedged() {
    let (_slow, _fast, channel) = slow_and_fast(|builder| {
        builder.hedging(Hedging::after(DELAY).method("/grpc.health.v1.Health/Watch"))
    })
    .await;
    let status = first_failure(&channel).await;
    let stats = channel.stats();
    assert!(timed_out(&status), "{status:?}");
    assert_eq!(
        (stats.hedges, stats.retries_denied),
        (0, 0),
        "expected Check not hedged at all: {stats:?}"
    );

    // Naming the whole service hedges Check too.
    let (_slow, _fast, channel) = slow_and_fast(|builder| {
        builder.hedging(Hedging::after(DELAY).method("/grpc.health.v1.Health/"))
    })
    .await;
    settle(async {
        while channel.stats().hedges == 0 {
            check_within(&channel, Duration::from_secs(30))
                .await
                .expect("answered by the hedge");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_answered_unavailable_does_not_win_and_the_next_starts_at_once() {
    let refusing = Backend::start().await;
    refusing.answer_unavailable(true);
    let steady = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![
        refusing.instance("refusing"),
        steady.instance("steady"),
    ]);
    // A delay no call waits for, and no ejection: every call that picks the refusing
    // backend must be answered by steady through a hedge started on the refusal.
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .hedging(Hedging::after(Duration::from_secs(60)))
        .eject_after(0, Duration::from_secs(1))
        // A budget with room for every refusal: this test is about the race's rule.
        .retry_budget(Duration::from_secs(10), 100, 1.0)
        .build();
    wait_ready(&channel, 2).await;
    settle(async {
        for _ in 0..200 {
            check_within(&channel, Duration::from_secs(30))
                .await
                .expect("a call refused with Unavailable is answered by steady");
        }
    })
    .await;
    let stats = channel.stats();
    println!("{} refused; {stats:?}", refusing.calls());
    assert!(
        refusing.calls() > 0,
        "expected some calls to pick refusing: {stats:?}"
    );
    assert_eq!(
        stats.hedges as usize,
        refusing.calls(),
        "expected one hedge per refusal: {stats:?}"
    );
    assert_eq!(steady.calls(), 200, "expected steady to answer every call");
}
