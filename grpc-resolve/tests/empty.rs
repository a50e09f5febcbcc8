//! An empty endpoint set: calls wait a bounded time, then fail `Unavailable` naming the
//! service; endpoints that arrive in time serve the waiting call.

mod common;

use std::time::Duration;

use common::{Backend, SERVICE, check};
use discovery_core::Update;
use discovery_core::mock::channel_resolver;
use grpc_resolve::DiscoveredChannel;
use tonic_health::ServingStatus;

#[tokio::test(start_paused = true)]
async fn empty_set_fails_unavailable_after_the_deadline() {
    let (resolver, handle) = channel_resolver();
    handle.set(Vec::new());
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .empty_timeout(Duration::from_secs(10))
        .build();

    let started = tokio::time::Instant::now();
    let status = check(&channel)
        .await
        .expect_err("no endpoint, so the call fails");
    let waited = started.elapsed();

    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "expected Unavailable, got {status:?}"
    );
    assert!(
        status
            .message()
            .contains("no endpoints for service \"adder\""),
        "expected the message to name the service, got {:?}",
        status.message()
    );
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "expected the call to wait the 10 s empty timeout (virtual time), waited {waited:?}"
    );
    assert_eq!(
        channel.stats().no_endpoints,
        1,
        "one call found no endpoint"
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_service_says_so() {
    let (resolver, handle) = channel_resolver();
    handle.send(Update::DoesNotExist);
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .empty_timeout(Duration::from_secs(3))
        .build();
    let status = check(&channel)
        .await
        .expect_err("no endpoint, so the call fails");
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "expected Unavailable, got {status:?}"
    );
    assert!(
        status.message().contains("does not exist"),
        "expected the message to say the service does not exist, got {:?}",
        status.message()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_waiting_call_succeeds_when_endpoints_arrive() {
    let backend = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(Vec::new());
    // Long enough never to expire here: the call must be served by the late endpoint.
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .empty_timeout(Duration::from_secs(60))
        .build();

    let call = tokio::spawn({
        let channel = channel.clone();
        async move { check(&channel).await }
    });
    while channel.stats().calls == 0 {
        tokio::task::yield_now().await;
    }
    assert!(
        channel.endpoints().is_empty(),
        "the call started with no endpoints"
    );

    handle.set(vec![backend.instance("late")]);
    let status = call
        .await
        .expect("the call task ends cleanly")
        .expect("the late endpoint serves the waiting call");
    assert_eq!(status, ServingStatus::Serving, "the backend says it serves");
    assert_eq!(backend.calls(), 1, "the call reached the late backend");
}

#[tokio::test(start_paused = true)]
async fn a_shorter_call_deadline_ends_the_wait_first() {
    let (resolver, handle) = channel_resolver();
    handle.set(Vec::new());
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .empty_timeout(Duration::from_secs(10))
        .build();

    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let status = client
        .check(request)
        .await
        .expect_err("no endpoint, so the call fails");
    let waited = started.elapsed();

    assert_eq!(
        status.code(),
        tonic::Code::DeadlineExceeded,
        "expected the caller's deadline to end the wait, got {status:?}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "expected a 2 s wait (virtual time), waited {waited:?}"
    );
}
