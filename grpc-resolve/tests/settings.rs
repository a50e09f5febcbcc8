//! Endpoint and call settings against real tonic servers: call timeouts (the channel's own
//! and the caller's `grpc-timeout`), the per-endpoint concurrency limit, and what every
//! request carries (the endpoint's authority, a user agent).

mod common;

use std::time::Duration;

use common::{Backend, SERVICE, check, settle, unanswering_instance, wait_ready};
use discovery_core::{MemoryRegistry, Registration, Registry};
use grpc_resolve::DiscoveredChannel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn registry_of(backends: &[&Backend]) -> MemoryRegistry {
    let registry = MemoryRegistry::new();
    for (i, backend) in backends.iter().enumerate() {
        registry
            .register(&Registration::new(backend.instance(&format!("b{i}"))))
            .await
            .expect("register");
    }
    registry
}

/// Starts `n` concurrent health checks through `channel`.
fn spawn_checks(
    channel: &DiscoveredChannel,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<tonic_health::ServingStatus, tonic::Status>>> {
    (0..n)
        .map(|_| {
            let channel = channel.clone();
            tokio::spawn(async move { check(&channel).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_channel_timeout_fails_deadline_exceeded() {
    let backend = Backend::start().await;
    let channel = DiscoveredChannel::builder(registry_of(&[&backend]).await, SERVICE)
        .timeout(Duration::from_millis(300))
        .build();
    wait_ready(&channel, 1).await;
    backend.hold();
    let status = settle(check(&channel))
        .await
        .expect_err("a held call runs out of time");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("300ms"),
        "names the limit: {status:?}"
    );
    backend.release();
    check(&channel).await.expect("an answered call is on time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_deadline_ends_the_call_without_a_channel_timeout() {
    // A tonic server would enforce the deadline too (answering `Cancelled`); this one
    // leaves it to the client.
    let registry = MemoryRegistry::new();
    registry
        .register(&Registration::new(unanswering_instance("stuck").await))
        .await
        .expect("register");
    // Its health stream would never answer either, and with health checking an endpoint
    // is picked only once it has.
    let channel = DiscoveredChannel::builder(registry, SERVICE)
        .health_check(false)
        .build();
    wait_ready(&channel, 1).await;
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(Duration::from_millis(300));
    let status = settle(HealthClient::new(channel.clone()).check(request))
        .await
        .expect_err("an unanswered call runs out of time");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_concurrency_limit_wait_for_room() {
    let backend = Backend::start().await;
    let channel = DiscoveredChannel::builder(registry_of(&[&backend]).await, SERVICE)
        .concurrency_limit(2)
        .build();
    wait_ready(&channel, 1).await;
    backend.hold();
    let calls = spawn_checks(&channel, 5);
    backend.wait_held(2).await;
    // The other three wait in the channel, not on the endpoint.
    assert_eq!(
        channel.endpoints()[0].in_flight,
        2,
        "two calls on the endpoint"
    );
    backend.release();
    for call in calls {
        settle(call)
            .await
            .expect("the call task ends")
            .expect("every call gets its turn");
    }
    assert_eq!(backend.calls(), 5, "every call reached the backend");
    assert_eq!(
        backend.max_concurrent(),
        2,
        "never more than the limit in progress at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_endpoint_is_passed_over_for_one_with_room() {
    let (held, free) = (Backend::start().await, Backend::start().await);
    let channel = DiscoveredChannel::builder(registry_of(&[&held, &free]).await, SERVICE)
        .concurrency_limit(1)
        .build();
    wait_ready(&channel, 2).await;
    held.hold();
    free.hold();
    // Two calls fill both endpoints, one each.
    let first = spawn_checks(&channel, 2);
    held.wait_held(1).await;
    free.wait_held(1).await;
    free.release();
    // `free` finishes its call and has room again; `held` stays full, so every later call
    // goes to `free`.
    for _ in 0..20 {
        settle(check(&channel)).await.expect("the call succeeds");
    }
    assert_eq!(held.calls(), 1, "the full endpoint got no more calls");
    assert_eq!(free.calls(), 21, "the one with room took the rest");
    held.release();
    for call in first {
        settle(call)
            .await
            .expect("the call task ends")
            .expect("the held call succeeds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_the_endpoints_authority_and_a_user_agent() {
    let backend = Backend::start().await;
    let channel = DiscoveredChannel::builder(registry_of(&[&backend]).await, SERVICE).build();
    check(&channel).await.expect("the call succeeds");
    let (authority, user_agent) = backend.last_head();
    assert_eq!(
        authority,
        Some(format!("127.0.0.1:{}", backend.addr.port())),
        "the request names the endpoint it went to"
    );
    let user_agent = user_agent.expect("a user agent is sent");
    assert!(
        user_agent.starts_with("grpc-resolve/"),
        "the default user agent: {user_agent}"
    );

    let channel = DiscoveredChannel::builder(registry_of(&[&backend]).await, SERVICE)
        .user_agent(http::HeaderValue::from_static("adder-client/1.0"))
        .build();
    check(&channel).await.expect("the call succeeds");
    assert_eq!(
        backend.last_head().1.as_deref(),
        Some("adder-client/1.0"),
        "a configured user agent"
    );
}
