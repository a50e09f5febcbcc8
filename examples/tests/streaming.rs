//! Client-streaming and bidirectional calls through a `DiscoveredChannel`: the normal path
//! (including a request stream larger than what the channel keeps for a retry), an endpoint
//! removed from discovery mid-stream (its stream finishes on it), a backend process killed
//! with SIGKILL mid-stream (the stream fails with `Unavailable`, saying why), and a hedged
//! channel's client stream (not hedged while it is still being sent).

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use discovery_core::ServiceInstance;
use discovery_core::mock::{ResolverHandle, channel_resolver};
use examples::AdderService;
use examples::pb::adder_client::AdderClient;
use examples::pb::adder_server::AdderServer;
use examples::pb::{AddRequest, Number};
use futures_util::Stream;
use grpc_resolve::DiscoveredChannel;
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::server::TcpIncoming;

/// Starts an in-process Adder server whose replies name `id`.
fn serve(id: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().unwrap();
    let router =
        tonic::transport::Server::builder().add_service(AdderServer::new(AdderService::new(id)));
    let task = tokio::spawn(async move {
        router.serve_with_incoming(incoming).await.unwrap();
    });
    (addr, task)
}

fn instance(id: &str, addr: SocketAddr) -> ServiceInstance {
    ServiceInstance::new(id, "adder", addr.ip().to_string(), addr.port())
}

/// A channel over what `handle` lists, once `ready` endpoints are ready.
async fn channel(instances: Vec<ServiceInstance>) -> (DiscoveredChannel, ResolverHandle) {
    let (resolver, handle) = channel_resolver();
    let ready = instances.len();
    handle.set(instances);
    let channel = DiscoveredChannel::builder(resolver, "adder").build();
    settle(channel.wait_for(|eps| eps.iter().filter(|e| e.ready).count() == ready)).await;
    (channel, handle)
}

/// A request stream fed through the returned sender; it ends when the sender is dropped.
fn numbers() -> (
    mpsc::Sender<Number>,
    impl Stream<Item = Number> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel(16);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) });
    (tx, stream)
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Awaits `event` within a bound generous enough for a loaded machine.
async fn settle<F: Future>(event: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), event)
        .await
        .expect("the event within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_bidirectional_streams_are_balanced_calls() {
    let (a, _a) = serve("a");
    let (b, _b) = serve("b");
    let (channel, _handle) = channel(vec![instance("a", a), instance("b", b)]).await;
    let mut client = AdderClient::new(channel.clone());

    let total = client
        .sum(futures_util::stream::iter(
            (1..=100).map(|value| Number { value }),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(total.sum, 5050);

    // Ten thousand messages are over the 64 KiB a call keeps for a retry: the stream still
    // streams, unbuffered.
    let big = client
        .sum(futures_util::stream::iter(
            (1..=10_000).map(|value| Number { value }),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(big.sum, 50_005_000);

    let (tx, requests) = numbers();
    let mut replies = client.running_sum(requests).await.unwrap().into_inner();
    let mut expected = 0;
    let mut served_by = None;
    for value in 1..=10 {
        tx.send(Number { value }).await.unwrap();
        expected += value;
        let reply = settle(replies.message()).await.unwrap().expect("a reply");
        assert_eq!(reply.sum, expected);
        let id = served_by.get_or_insert_with(|| reply.instance_id.clone());
        assert_eq!(&reply.instance_id, id, "one stream stays on one backend");
    }
    drop(tx);
    assert!(settle(replies.message()).await.unwrap().is_none());

    let served: std::collections::BTreeSet<String> = {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..40 {
            let (tx, requests) = numbers();
            let call = client.sum(requests);
            tx.send(Number { value: i }).await.unwrap();
            drop(tx);
            seen.insert(call.await.unwrap().into_inner().instance_id);
        }
        seen
    };
    assert_eq!(served.len(), 2, "streams spread over both backends");
    assert_eq!(channel.stats().failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_an_endpoint_removed_mid_stream_finishes_there() {
    let (a, _a) = serve("a");
    let (b, _b) = serve("b");
    let (channel, handle) = channel(vec![instance("a", a), instance("b", b)]).await;
    let mut client = AdderClient::new(channel.clone());

    let (tx, requests) = numbers();
    let mut replies = client.running_sum(requests).await.unwrap().into_inner();
    tx.send(Number { value: 1 }).await.unwrap();
    let first = settle(replies.message()).await.unwrap().expect("a reply");
    let (gone, stays) = if first.instance_id == "a" {
        (a, ("b", b))
    } else {
        (b, ("a", a))
    };
    let gone_id = first.instance_id.clone();

    // Discovery drops the stream's endpoint: no new call goes there, the open stream goes on.
    handle.set(vec![instance(stays.0, stays.1)]);
    settle(channel.wait_for(|eps| eps.len() == 1 && eps[0].id == stays.0)).await;
    let unary = client
        .add(AddRequest { a: 2, b: 3 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unary.instance_id, stays.0,
        "a new call goes to the endpoint left"
    );

    let mut expected = 1;
    for value in 2..=20 {
        tx.send(Number { value }).await.unwrap();
        expected += value;
        let reply = settle(replies.message()).await.unwrap().expect("a reply");
        assert_eq!(
            (reply.sum, reply.instance_id.as_str()),
            (expected, &*gone_id)
        );
    }
    drop(tx);
    assert!(
        settle(replies.message()).await.unwrap().is_none(),
        "the stream ends cleanly on the removed endpoint ({gone})"
    );
    assert_eq!(channel.stats().failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_a_backend_killed_mid_stream_fail_with_unavailable() {
    // A real process, killed with SIGKILL: the kernel resets its connections.
    let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut server = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_add-server"))
            .args(["--service", "adder-streams", "--listen", "127.0.0.1:0"])
            .env("CONSUL_HTTP_ADDR", agent.http_addr())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("add-server starts"),
    );
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    // "serving <id> on <addr>"
    let addr: SocketAddr = first
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an address in {first:?}"));
    let (channel, _handle) = channel(vec![instance("killed", addr)]).await;
    let mut client = AdderClient::new(channel.clone());

    let (tx, requests) = numbers();
    let mut replies = client.running_sum(requests).await.unwrap().into_inner();
    tx.send(Number { value: 1 }).await.unwrap();
    assert_eq!(settle(replies.message()).await.unwrap().unwrap().sum, 1);

    let (sum_tx, sum_requests) = numbers();
    let summing = tokio::spawn({
        let mut client = client.clone();
        async move { client.sum(sum_requests).await }
    });
    sum_tx.send(Number { value: 1 }).await.unwrap();
    // Load is not an event `wait_for` wakes on: look until both calls are in flight.
    settle(async {
        while channel.endpoints().iter().all(|e| e.in_flight < 2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    server.0.kill().expect("SIGKILL");
    server.0.wait().unwrap();

    let bidi = settle(replies.message())
        .await
        .expect_err("the stream fails");
    let client_stream = settle(summing).await.unwrap().expect_err("the call fails");
    for (what, status) in [("bidirectional", bidi), ("client-streaming", client_stream)] {
        assert_eq!(
            status.code(),
            Code::Unavailable,
            "{what}: a broken connection is Unavailable, so retry policies retry: {status:?}"
        );
        assert!(
            status.message().contains("\"killed\""),
            "{what}: the message names the endpoint and says why: {status:?}"
        );
    }
    drop((tx, sum_tx));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_still_sending_is_not_hedged() {
    let (a, _a) = serve("a");
    let (b, _b) = serve("b");
    let (resolver, handle) = channel_resolver();
    handle.set(vec![instance("a", a), instance("b", b)]);
    let channel = DiscoveredChannel::builder(resolver, "adder")
        .hedging(grpc_resolve::Hedging::after(Duration::from_millis(10)))
        .build();
    settle(channel.wait_for(|eps| eps.iter().filter(|e| e.ready).count() == 2)).await;
    let mut client = AdderClient::new(channel.clone());

    let (tx, requests) = numbers();
    let sum = tokio::spawn(async move { client.sum(requests).await });
    // Many hedging delays pass while the request is still being sent: the body cannot go
    // to a second server before it has been read whole.
    for value in 1..=10 {
        tx.send(Number { value }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hedges = channel.stats().hedges;
    drop(tx);
    let total = settle(sum).await.unwrap().unwrap().into_inner();
    assert_eq!(total.sum, 55);
    assert_eq!(hedges, 0, "expected no hedge of a request still being sent");
}
