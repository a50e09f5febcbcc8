//! Status codes that say the cause: a call lost to a broken connection is `Unavailable`
//! with the cause in its message, and a call that found no endpoint says why there was
//! none (no such service, no healthy instances, what the resolver's error was).

mod common;

use std::time::Duration;

use common::load::Load;
use common::proxy::FaultProxy;
use common::{Backend, SERVICE, check, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use discovery_core::{ServiceInstance, Update};
use grpc_resolve::DiscoveredChannel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_load_fails_its_calls_unavailable_with_the_cause() {
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
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 3).await;

    let load = Load::start(&channel, 8, Duration::from_secs(10));
    load.wait_successes(200).await;
    // Calls held on the doomed backend are certainly in flight when it dies.
    backends[0].hold();
    backends[0].wait_held_at_least(1).await;
    proxies[0].kill();
    settle(channel.wait_for(|eps| eps.iter().any(|e| e.id == "b0" && !e.ready))).await;
    load.wait_successes(200).await;
    let outcomes = load.stop().await;

    let failed: Vec<&tonic::Status> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .collect();
    println!(
        "calls: {} ok, {} failed; failures: {:?}",
        outcomes.len() - failed.len(),
        failed.len(),
        failed
            .iter()
            .map(|s| (s.code(), s.message()))
            .collect::<Vec<_>>()
    );
    assert!(
        !failed.is_empty(),
        "expected the calls held on the killed backend to fail"
    );
    for status in failed {
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "expected every call lost to the dead backend to be Unavailable, got {status:?}"
        );
        let message = status.message();
        assert!(
            message.starts_with("call to endpoint \"b0\" failed: ") && message.len() > 33,
            "expected the message to name the endpoint and the cause, got {message:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_resolver_error_names_what_failed() {
    let (resolver, handle) = channel_resolver();
    let cause = std::io::Error::other("answer larger than 4194304 bytes");
    handle.send(Update::Error(discovery_core::Error::invalid(cause)));
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .empty_timeout(Duration::from_secs(1))
        .build();
    let status = check(&channel)
        .await
        .expect_err("no endpoint: the call fails");
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "expected Unavailable, got {status:?}"
    );
    assert!(
        status.message().contains(
            "the resolver failed: registry answer unusable: answer larger than 4194304 bytes"
        ),
        "expected the resolver's whole error chain in the message, got {:?}",
        status.message()
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_answer_says_there_are_no_healthy_instances() {
    let (resolver, handle) = channel_resolver();
    handle.set(Vec::new());
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .empty_timeout(Duration::from_secs(1))
        .build();
    let status = check(&channel)
        .await
        .expect_err("no endpoint: the call fails");
    assert!(
        status.message().contains("no healthy instances"),
        "expected the message to say no instance is healthy, got {:?}",
        status.message()
    );
}
