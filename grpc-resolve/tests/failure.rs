//! Failing endpoints: never listening, going away, answering `Unavailable`.

mod common;

use std::time::Duration;

use common::{Backend, SERVICE, check, dead_instance, mute_instance, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use futures_util::StreamExt;
use grpc_resolve::DiscoveredChannel;
use tonic::body::Body;
use tonic::client::GrpcService;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Calls through our channel, calls through tonic's `balance_channel` (fewer: a tenth of
/// them failing shows as clearly in 2,000, and debug-build calls are not cheap), and
/// concurrent callers, for the never-listening comparison.
const CALLS: usize = 10_000;
const THEIR_CALLS: usize = 2_000;
const CALLERS: usize = 16;

// One thread: these 12,000 calls cost less CPU without cross-thread wakeups, and leave the
// other core to the tests running beside it.
#[tokio::test(flavor = "current_thread")]
async fn an_endpoint_that_never_listens_costs_no_calls() {
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let dead = dead_instance("dead");
    let mut instances: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| b.instance(&format!("b{i}")))
        .collect();
    instances.push(dead.clone());

    // tonic's own balancer, fed the same four endpoints, for contrast.
    let (balanced, changes) = Channel::balance_channel::<String>(instances.len());
    for instance in &instances {
        let endpoint = Endpoint::from_shared(format!("http://{}", instance.authority()))
            .expect("a valid endpoint URI");
        changes
            .send(Change::Insert(instance.id.clone(), endpoint))
            .await
            .expect("the balance channel takes discovery changes");
    }
    let theirs = failed_calls(balanced, THEIR_CALLS, CALLERS).await;
    let reached_by_theirs = backends.iter().map(Backend::calls).sum::<usize>();

    let (resolver, handle) = channel_resolver();
    handle.set(instances);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 3).await;
    let ours = failed_calls(channel.clone(), CALLS, CALLERS).await;

    println!(
        "one never-listening endpoint of four, {CALLERS} callers: DiscoveredChannel failed \
         {ours} of {CALLS} calls, balance_channel failed {theirs} of {THEIR_CALLS} ({:.1}%)",
        100.0 * theirs as f64 / THEIR_CALLS as f64
    );
    assert_eq!(
        ours, 0,
        "expected no failed calls out of {CALLS} with one dead endpoint of four \
         (balance_channel failed {theirs} of {THEIR_CALLS})"
    );
    // The contrast: tonic's lazy endpoints report ready without a connection, so about
    // one pick in ten goes to the dead one (5-25% measured); none failing would mean this
    // test no longer shows the difference it is about.
    assert!(
        theirs > 0,
        "expected balance_channel to fail some of {THEIR_CALLS} calls with a dead endpoint"
    );
    assert_eq!(
        reached_by_theirs + theirs,
        THEIR_CALLS,
        "each balance_channel call either reached a live backend or failed on the dead one"
    );
    let endpoints = channel.endpoints();
    assert_eq!(endpoints.len(), 4, "all four stay listed: {endpoints:?}");
    let dead = endpoints
        .iter()
        .find(|e| e.id == "dead")
        .expect("the dead one is listed");
    assert!(!dead.ready, "the dead endpoint is never ready: {dead:?}");
    assert_eq!(
        backends.iter().map(Backend::calls).sum::<usize>() - reached_by_theirs,
        CALLS,
        "every call through DiscoveredChannel reached a live backend"
    );
}

/// Makes `calls` health checks through `channel` from `callers` concurrent tasks and
/// counts those that failed.
async fn failed_calls<C>(channel: C, calls: usize, callers: usize) -> usize
where
    C: GrpcService<Body> + Clone + Send + 'static,
    C::Future: Send,
    C::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <C::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
    C::Error: Into<tonic::codegen::StdError>,
{
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let mut client = HealthClient::new(channel.clone());
        let share = calls / callers + usize::from(caller < calls % callers);
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for _ in 0..share {
                let request = HealthCheckRequest {
                    service: String::new(),
                };
                if client.check(request).await.is_err() {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += settle(task).await.expect("a caller task ends cleanly");
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_accepts_but_never_speaks_is_never_ready() {
    // Its kernel completes the TCP handshake, but no HTTP/2 server answers: calls sent
    // there would hang. It must not count as ready, so no call goes there.
    let backend = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![backend.instance("live"), mute_instance("mute").await]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .connect_timeout(Duration::from_millis(200))
        .build();
    wait_ready(&channel, 1).await;
    for _ in 0..200 {
        settle(check(&channel)).await.expect("the call succeeds");
    }
    assert_eq!(backend.calls(), 200, "every call went to the live backend");
    // Each attempt on the mute one ends at the connect timeout.
    settle(async {
        while channel.stats().connect_failures == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let mute = channel
        .endpoints()
        .into_iter()
        .find(|e| e.id == "mute")
        .expect("the mute endpoint is known");
    assert!(!mute.ready, "never ready: {mute:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_leaves_rotation_without_failed_calls() {
    let mut going = Backend::start().await;
    let staying = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![going.instance("going"), staying.instance("staying")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    for _ in 0..100 {
        check(&channel).await.expect("both backends serve");
    }
    assert!(
        going.calls() > 0,
        "the first backend got calls before stopping"
    );

    // Discovery still lists it; its closed connection alone takes it out.
    going.stop().await;
    settle(channel.wait_for(|eps| eps.iter().any(|e| e.id == "going" && !e.ready))).await;
    let before = going.calls();
    for _ in 0..500 {
        check(&channel)
            .await
            .expect("the stopped backend gets no calls, so none fail");
    }
    assert_eq!(going.calls(), before, "no call reached the stopped backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_unavailable_is_retried_elsewhere_and_ejected() {
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    backends[0].answer_unavailable(true);
    let (resolver, handle) = channel_resolver();
    handle.set(
        backends
            .iter()
            .enumerate()
            .map(|(i, b)| b.instance(&format!("b{i}")))
            .collect(),
    );
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .eject_after(3, std::time::Duration::from_secs(3600))
        .build();
    wait_ready(&channel, 3).await;

    let mut failed = 0;
    for _ in 0..1_000 {
        if let Err(status) = check(&channel).await {
            assert_eq!(
                status.code(),
                tonic::Code::Unavailable,
                "only Unavailable expected: {status:?}"
            );
            failed += 1;
        }
    }
    let endpoints = channel.endpoints();
    let bad = &endpoints[0];
    assert!(
        bad.ejected && !bad.ready,
        "expected b0 ejected: {endpoints:?}"
    );
    assert!(
        backends[0].calls() <= 3,
        "expected b0 to get at most the 3 calls that eject it, got {}",
        backends[0].calls()
    );
    assert_eq!(
        failed, 0,
        "expected every Unavailable answer retried elsewhere"
    );
    let stats = channel.stats();
    assert_eq!(stats.ejections, 1, "one ejection: {stats:?}");
    assert_eq!(
        stats.retries as usize,
        backends[0].calls(),
        "each call b0 answered was retried: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_backend_comes_back_without_calls() {
    let mut restarting = Backend::start().await;
    let addr = restarting.addr;
    let steady = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![restarting.instance("r"), steady.instance("s")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 2).await;

    restarting.stop().await;
    settle(channel.wait_for(|eps| eps.iter().any(|e| e.id == "r" && !e.ready))).await;
    let restarted = Backend::start_on(addr).await;
    // No call is needed: the endpoint reconnects by itself.
    settle(channel.wait_for(|eps| eps.iter().all(|e| e.ready))).await;
    assert_eq!(channel.stats().calls, 0, "no call was made so far");

    for _ in 0..200 {
        check(&channel).await.expect("both serve");
    }
    assert!(
        restarted.calls() > 20,
        "expected the restarted backend to get its share of 200 calls, got {}",
        restarted.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_endpoint_comes_back_once_healthy() {
    let flaky = Backend::start().await;
    let steady = Backend::start().await;
    flaky.answer_unavailable(true);
    let (resolver, handle) = channel_resolver();
    handle.set(vec![flaky.instance("flaky"), steady.instance("steady")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .eject_after(2, std::time::Duration::from_millis(100))
        .build();
    wait_ready(&channel, 2).await;

    for _ in 0..1_000 {
        if channel.stats().ejections > 0 {
            break;
        }
        check(&channel)
            .await
            .expect("Unavailable answers are retried on steady");
    }
    assert_eq!(
        channel.stats().ejections,
        1,
        "expected flaky ejected after 2 Unavailable answers"
    );
    flaky.answer_unavailable(false);
    // The ejection ends by itself; the endpoint reconnects (the probe) and is ready again.
    settle(channel.wait_for(|eps| eps.iter().all(|e| e.ready && !e.ejected))).await;
    let before = flaky.calls();
    for _ in 0..200 {
        check(&channel).await.expect("both serve");
    }
    assert!(
        flaky.calls() - before > 20,
        "expected the recovered endpoint to get its share of 200 calls, got {}",
        flaky.calls() - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_endpoint_is_never_ejected() {
    let only = Backend::start().await;
    only.answer_unavailable(true);
    let (resolver, handle) = channel_resolver();
    handle.set(vec![only.instance("only")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .eject_after(2, std::time::Duration::from_secs(3600))
        .build();
    wait_ready(&channel, 1).await;

    for _ in 0..10 {
        let status = check(&channel)
            .await
            .expect_err("the only backend is unavailable");
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "expected the backend's own status, got {status:?}"
        );
        assert_eq!(
            status.message(),
            "draining",
            "the backend's message passes through"
        );
    }
    let endpoints = channel.endpoints();
    assert!(
        endpoints[0].ready && !endpoints[0].ejected,
        "expected the only endpoint to stay in rotation: {endpoints:?}"
    );
    assert_eq!(
        only.calls(),
        10,
        "every call reached it, none was retried on itself"
    );
    assert_eq!(channel.stats().ejections, 0, "no ejection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_refused_by_a_server_shutting_down_are_retried_elsewhere() {
    let mut draining = Backend::start().await;
    let steady = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![draining.weighted("draining", 10)]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .eject_after(0, std::time::Duration::from_secs(1))
        .build();
    wait_ready(&channel, 1).await;

    // A stream in flight keeps the draining server's connection open through its graceful
    // shutdown, so the channel still has it connected after the GOAWAY.
    let mut client = HealthClient::new(channel.clone());
    let mut watch = client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the watch starts")
        .into_inner();
    settle(watch.next())
        .await
        .expect("a first status")
        .expect("no error");
    handle.set(vec![
        draining.weighted("draining", 10),
        steady.weighted("steady", 1),
    ]);
    wait_ready(&channel, 2).await;

    // The watch counts as a call in flight on the draining endpoint, so calls go there only
    // while the steady one is busy too: calls go four at a time, and the draining endpoint's
    // weight of 10 makes it the lighter of the two as soon as steady has one.
    let batch = || futures_util::future::join_all((0..4).map(|_| check(&channel)));
    let before = draining.calls();
    settle(async {
        while draining.calls() == before {
            for answer in batch().await {
                answer.expect("both backends serve");
            }
        }
    })
    .await;

    draining.begin_stop();
    // After its GOAWAY the draining connection takes no new stream: the channel sees the
    // GOAWAY itself and takes the endpoint out of rotation, and calls that picked it before
    // come back unsent (hyper cancels them) and go to steady. Every call succeeds; keep
    // calling until the endpoint is out, though the watch keeps its socket open; it
    // reconnects, which the draining server refuses.
    let mut batches = 0;
    settle(async {
        while channel
            .endpoints()
            .iter()
            .any(|e| e.id == "draining" && e.ready)
        {
            batches += 1;
            for answer in batch().await {
                answer.expect("a call refused by the draining server is retried on steady");
            }
        }
    })
    .await;
    let after_refusal = channel.stats();
    for _ in 0..50 {
        for answer in batch().await {
            answer.expect("steady serves");
        }
    }
    let stats = channel.stats();
    println!("draining: {batches} batches of 4 calls until out of rotation; {stats:?}");
    assert_eq!(
        stats.retries, after_refusal.retries,
        "expected no call to pick the draining endpoint once it was out of rotation: {stats:?}"
    );
    let endpoints = channel.endpoints();
    assert!(
        endpoints.iter().any(|e| e.id == "draining" && !e.ready),
        "expected the draining endpoint still out of rotation: {endpoints:?}"
    );
    drop(watch);
}

/// An HTTP/2 server that resets every stream with `REFUSED_STREAM`, as an overloaded or
/// stopping server may; returns its port and a count of the streams it refused.
async fn refusing_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("a local address").port();
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = refused.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    // The channel's own health stream is refused too, but is not a call.
                    let health = request
                        .headers()
                        .get(http::header::USER_AGENT)
                        .is_some_and(|a| a.as_bytes().starts_with(b"grpc-resolve-health/"));
                    if !health {
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
            });
        }
    });
    (port, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_refused_by_the_server_is_retried_elsewhere() {
    let (port, refused) = refusing_server().await;
    let steady = Backend::start().await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![
        discovery_core::ServiceInstance::new("refusing", SERVICE, "127.0.0.1", port),
        steady.instance("steady"),
    ]);
    // No ejection: every call that picks the refusing server must be retried.
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .eject_after(0, std::time::Duration::from_secs(1))
        .build();
    wait_ready(&channel, 2).await;

    for _ in 0..200 {
        check(&channel)
            .await
            .expect("a stream the server refused is retried on steady");
    }
    let refused = refused.load(std::sync::atomic::Ordering::SeqCst);
    let stats = channel.stats();
    assert!(
        refused > 0,
        "expected some of 200 calls to pick the refusing server: {stats:?}"
    );
    assert_eq!(
        stats.retries as usize, refused,
        "expected each refused stream retried once: {stats:?}"
    );
    assert_eq!(steady.calls(), 200, "expected steady to answer every call");
}
