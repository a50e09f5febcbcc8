//! Discovery changes: applied while idle, removals drain, resolver errors change nothing.

mod common;

use common::{Backend, SERVICE, check, dead_instance, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use std::sync::Arc;
use std::time::Duration;

use discovery_core::{
    Error, HealthStatus, MemoryRegistry, Registration, Registry, Resolver, Update,
};
use futures_util::StreamExt;
use grpc_resolve::DiscoveredChannel;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_gets_no_new_calls_and_its_stream_finishes() {
    let a = Backend::start().await;
    let b = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![a.instance("a"), b.instance("b")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    // A long call in flight: a health watch stream.
    let mut client = HealthClient::new(channel.clone());
    let mut watch = client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the watch starts")
        .into_inner();
    let first = settle(watch.next())
        .await
        .expect("a first status")
        .expect("no error");
    assert_eq!(
        first.status,
        ServingStatus::Serving as i32,
        "the backend serves"
    );
    let (on, other, other_id) = if a.calls() == 1 {
        (&a, &b, "b")
    } else {
        (&b, &a, "a")
    };
    assert_eq!(on.calls(), 1, "exactly one backend got the watch");
    assert_eq!(
        channel
            .endpoints()
            .iter()
            .map(|e| e.in_flight)
            .sum::<usize>(),
        1,
        "the stream is in flight"
    );

    // Discovery drops the backend that carries the stream.
    handle.set(vec![other.instance(other_id)]);
    settle(channel.wait_for(|eps| eps.len() == 1)).await;
    for _ in 0..200 {
        check(&channel).await.expect("the remaining backend serves");
    }
    assert_eq!(on.calls(), 1, "the removed backend got no new call");
    assert_eq!(
        other.calls(),
        200,
        "all new calls went to the remaining backend"
    );

    // The stream still flows: its connection stays up until it ends.
    on.reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let next = settle(watch.next())
        .await
        .expect("the stream goes on")
        .expect("no error");
    assert_eq!(
        next.status,
        ServingStatus::NotServing as i32,
        "the in-flight stream got the new status"
    );

    // Once the stream ends, the removed endpoint's connection closes.
    drop(watch);
    drop(client);
    on.wait_connections(0).await;
    assert_eq!(
        other.connections(),
        1,
        "the remaining backend keeps its one connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_channel_applies_every_update() {
    let live = Backend::start().await;
    let registry = MemoryRegistry::new();
    let channel = DiscoveredChannel::builder(registry.clone(), SERVICE).build();

    // Many changes with no call in between; endpoints on closed ports are fine here.
    let dead: Vec<_> = (0..20).map(|i| dead_instance(&format!("d{i}"))).collect();
    for (i, instance) in dead.iter().enumerate() {
        registry
            .register(&Registration::new(instance.clone()))
            .await
            .expect("register");
        if i % 3 == 0 {
            registry.deregister(&instance.id).await.expect("deregister");
        }
    }
    registry
        .register(&Registration::new(live.instance("live")))
        .await
        .expect("register");

    let mut expected: Vec<String> = registry.instances().into_iter().map(|i| i.id).collect();
    expected.sort();
    let endpoints = settle(channel.wait_for(|eps| {
        eps.iter()
            .map(|e| e.id.as_str())
            .eq(expected.iter().map(String::as_str))
            && eps.iter().any(|e| e.id == "live" && e.ready)
    }))
    .await;
    assert_eq!(
        endpoints.len(),
        14,
        "20 registered, 7 deregistered, 1 live: {endpoints:?}"
    );
    assert_eq!(live.calls(), 0, "no call was needed to apply the updates");
    assert_eq!(channel.stats().calls, 0, "no call was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_error_keeps_the_last_known_endpoints() {
    let backend = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![backend.instance("a")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 1).await;

    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "registry down");
    handle.send(Update::Error(Error::unavailable(io)));
    let stats = channel.clone();
    settle(channel.wait_for(|_| stats.stats().resolver_errors == 1)).await;

    let endpoints = channel.endpoints();
    assert_eq!(endpoints.len(), 1, "the last good set stays: {endpoints:?}");
    assert!(endpoints[0].ready, "and stays ready: {endpoints:?}");
    for _ in 0..20 {
        check(&channel).await.expect("calls still succeed");
    }
    assert_eq!(backend.calls(), 20, "all reached the last known backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_disappears_empties_the_set_once_the_shrink_guard_lets_go() {
    let backend = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![backend.instance("a")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .shrink_guard(50, Duration::from_millis(500))
        .build();
    wait_ready(&channel, 1).await;
    handle.send(Update::DoesNotExist);
    // The connected endpoint stays as a fallback (an agent restarted empty says the same)
    // for the guard's hold, then the answer stands.
    let endpoints = settle(channel.wait_for(|eps| eps.iter().any(|e| e.fallback))).await;
    assert!(
        endpoints[0].ready,
        "expected the fallback to stay ready, got {endpoints:?}"
    );
    let endpoints = settle(channel.wait_for(|eps| eps.is_empty())).await;
    assert!(
        endpoints.is_empty(),
        "DoesNotExist is an answer, not an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_instance_leaves_rotation() {
    let a = Backend::start().await;
    let b = Backend::start().await;
    let registry = MemoryRegistry::new();
    for instance in [a.instance("a"), b.instance("b")] {
        registry
            .register(&Registration::new(instance))
            .await
            .expect("register");
    }
    // Any resolver works, boxed as a trait object too.
    let resolver: Arc<dyn Resolver> = Arc::new(registry.clone());
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    // What a failing gRPC health check (NOT_SERVING) does to the registry.
    assert!(
        registry.set_status("b", HealthStatus::Critical),
        "b is registered"
    );
    settle(channel.wait_for(|eps| eps.len() == 1)).await;
    let before = b.calls();
    for _ in 0..100 {
        check(&channel).await.expect("a serves");
    }
    assert_eq!(b.calls(), before, "the critical instance got no calls");
    assert_eq!(a.calls(), 100, "all calls went to the passing instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_passing_only_a_critical_instance_is_a_last_resort() {
    let a = Backend::start().await;
    let b = Backend::start().await;
    let registry = MemoryRegistry::new();
    for instance in [a.instance("a"), b.instance("b")] {
        registry
            .register(&Registration::new(instance))
            .await
            .expect("register");
    }
    let channel = DiscoveredChannel::builder(registry.clone(), SERVICE)
        .passing_only(false)
        .build();
    wait_ready(&channel, 2).await;

    registry.set_status("b", HealthStatus::Critical);
    settle(channel.wait_for(|eps| eps.iter().any(|e| e.id == "b" && e.weight == 0))).await;
    for _ in 0..100 {
        check(&channel).await.expect("a serves");
    }
    assert_eq!(b.calls(), 0, "weight 0 is not picked while a is ready");

    registry.set_status("a", HealthStatus::Critical);
    settle(channel.wait_for(|eps| eps.iter().all(|e| e.weight == 0))).await;
    check(&channel)
        .await
        .expect("with only critical instances left, they still serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_ends_keeps_the_last_endpoints() {
    let backend = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![backend.instance("a")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 1).await;
    // Dropping the handle ends every watch stream of the resolver.
    drop(handle);
    for _ in 0..20 {
        check(&channel)
            .await
            .expect("the last known backend still serves");
    }
    assert_eq!(backend.calls(), 20, "all calls reached it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_wakes_on_the_next_discovery_change() {
    let (resolver, handle) = channel_resolver();
    handle.set(Vec::new());
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    settle(channel.wait_for(|_| channel.stats().updates == 1)).await;

    // Subscribed when called, so the change below cannot slip by.
    let next = channel.changed();
    handle.set(vec![dead_instance("d")]);
    settle(next).await;
    assert_eq!(
        channel.endpoints().len(),
        1,
        "the change was the new endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_channel_closes_its_connections() {
    let backend = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![backend.instance("a")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 1).await;
    check(&channel).await.expect("the backend serves");
    assert_eq!(backend.connections(), 1, "one connection per endpoint");

    let clone = channel.clone();
    drop(channel);
    check(&clone)
        .await
        .expect("a clone keeps the channel alive");
    drop(clone);
    backend.wait_connections(0).await;
}
