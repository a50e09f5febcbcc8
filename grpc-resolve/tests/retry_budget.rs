//! The retry budget on real servers: with every backend answering `Unavailable`, the
//! attempts the servers see stay within the calls plus the budget, not twice the calls.

mod common;

use std::time::Duration;

use common::{Backend, SERVICE, check, wait_ready};
use discovery_core::mock::channel_resolver;
use grpc_resolve::DiscoveredChannel;

const CALLS: usize = 500;
const RATIO: f64 = 0.1;
const MIN_PER_SECOND: u32 = 2;
const TTL: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_unavailable_attempts_stay_within_the_budget() {
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
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        // No ejection: every backend stays a place to retry on, so only the budget limits.
        .eject_after(0, Duration::from_secs(1))
        .retry_budget(TTL, MIN_PER_SECOND, RATIO)
        .build();
    wait_ready(&channel, 3).await;
    for backend in &backends {
        backend.answer_unavailable(true);
    }

    let started = tokio::time::Instant::now();
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let channel = channel.clone();
            tokio::spawn(async move {
                for _ in 0..CALLS / 8 {
                    let status = check(&channel)
                        .await
                        .expect_err("every backend is unavailable");
                    assert_eq!(status.code(), tonic::Code::Unavailable, "got {status:?}");
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("a caller ends cleanly");
    }
    let elapsed = started.elapsed();
    let calls = CALLS / 8 * 8;
    let attempts: usize = backends.iter().map(Backend::calls).sum();
    // Each TTL the call lasted refills the floor.
    let windows = 1.0 + elapsed.as_secs_f64() / TTL.as_secs_f64();
    let budget = RATIO * calls as f64 + f64::from(MIN_PER_SECOND) * TTL.as_secs_f64() * windows;
    println!(
        "{calls} calls, {attempts} attempts in {elapsed:?} (budget {budget:.0} retries); {:?}",
        channel.stats()
    );
    assert!(
        (attempts - calls) as f64 <= budget.floor(),
        "expected at most {budget:.0} retries, the servers saw {} ({attempts} attempts for {calls} calls)",
        attempts - calls
    );
    assert!(
        attempts > calls,
        "expected the budget to allow some retries, the servers saw {attempts} attempts"
    );
    assert!(
        channel.stats().retries_denied > 0,
        "expected retries refused, got {:?}",
        channel.stats()
    );
}
