//! Client-side health checking: a backend its own `health::Health` handle sets NOT_SERVING
//! leaves rotation within a round trip while the resolver still lists it passing, without
//! a failed call, and comes back when it serves again; a server without a health service
//! counts as serving; turned off, the health service's word is ignored.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::load::Load;
use common::{SERVICE, check, settle, wait_ready};
use discovery_core::ServiceInstance;
use discovery_core::mock::channel_resolver;
use grpc_resolve::{Condition, DiscoveredChannel};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower_service::Service;

/// A backend whose health is set through the `health` crate's handle, as a
/// `grpc-register`ed server's is, and which stamps the arrival of every call (the
/// channel's own health calls aside).
struct HealthBackend {
    addr: SocketAddr,
    health: health::Health,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl HealthBackend {
    async fn start() -> HealthBackend {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind")
            .with_nodelay(Some(true));
        let addr = incoming.local_addr().expect("a local address");
        let (health, server) = health::Health::start().await;
        health.set_serving(health::SERVER).await;
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stamped = Stamped {
            inner: server,
            arrivals: arrivals.clone(),
        };
        tokio::spawn(
            Server::builder()
                .add_service(stamped)
                .serve_with_incoming(incoming),
        );
        HealthBackend {
            addr,
            health,
            arrivals,
        }
    }

    fn instance(&self, id: &str) -> ServiceInstance {
        ServiceInstance::new(id, SERVICE, "127.0.0.1", self.addr.port())
    }

    /// When the last call arrived, if one did.
    fn last_arrival(&self) -> Option<Instant> {
        self.arrivals.lock().expect("unpoisoned").last().copied()
    }

    fn arrivals(&self) -> usize {
        self.arrivals.lock().expect("unpoisoned").len()
    }
}

#[derive(Clone)]
struct Stamped<S> {
    inner: S,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl<S> Service<http::Request<Body>> for Stamped<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let health = request
            .headers()
            .get(http::header::USER_AGENT)
            .is_some_and(|agent| agent.as_bytes().starts_with(b"grpc-resolve-health/"));
        if !health {
            self.arrivals
                .lock()
                .expect("unpoisoned")
                .push(Instant::now());
        }
        Box::pin(self.inner.call(request))
    }
}

impl<S: NamedService> NamedService for Stamped<S> {
    const NAME: &'static str = S::NAME;
}

/// The condition the channel shows for endpoint `id`.
fn condition(channel: &DiscoveredChannel, id: &str) -> Option<Condition> {
    let endpoints = channel.endpoints();
    endpoints.iter().find(|e| e.id == id).map(|e| e.condition)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_set_not_serving_gets_no_new_calls_and_comes_back_when_serving() {
    const TRIALS: usize = 100;
    let target = HealthBackend::start().await;
    let others = [HealthBackend::start().await, HealthBackend::start().await];
    let (resolver, handle) = channel_resolver();
    handle.set(vec![
        target.instance("target"),
        others[0].instance("other-0"),
        others[1].instance("other-1"),
    ]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 3).await;

    let load = Load::start(&channel, 4, Duration::from_secs(10));
    load.wait_successes(100).await;
    // For each trial: how long after its NOT_SERVING the target still got a new call.
    let mut late = Vec::with_capacity(TRIALS);
    for _ in 0..TRIALS {
        let set_at = Instant::now();
        target.health.set_not_serving(health::SERVER).await;
        settle(channel.wait_for(|eps| {
            eps.iter()
                .any(|e| e.id == "target" && e.condition == Condition::NotServing && !e.ready)
        }))
        .await;
        // Calls keep flowing to the others: any call the target still got has arrived by
        // the time 20 more calls have succeeded.
        load.wait_successes(20).await;
        let last = target.last_arrival().expect("the target got calls before");
        late.push(last.saturating_duration_since(set_at));

        target.health.set_serving(health::SERVER).await;
        settle(channel.wait_for(|eps| eps.iter().any(|e| e.id == "target" && e.ready))).await;
        let before = target.arrivals();
        settle(async {
            while target.arrivals() == before {
                load.wait_successes(1).await;
            }
        })
        .await;
    }
    let outcomes = load.stop().await;
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();

    late.sort();
    let p50 = late[TRIALS / 2];
    let p99 = late[TRIALS * 99 / 100];
    let max = late[TRIALS - 1];
    println!(
        "NOT_SERVING to the target's last new call over {TRIALS} trials: p50 {p50:?}, \
         p99 {p99:?}, max {max:?}; {} calls, {failed} failed",
        outcomes.len()
    );
    assert_eq!(
        failed, 0,
        "expected no failed call while the target turned NOT_SERVING and back"
    );
    assert_eq!(
        condition(&channel, "target"),
        Some(Condition::Serving),
        "expected the target serving again at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_health_service_counts_as_serving() {
    // Its Watch is UNIMPLEMENTED, as a server's without grpc.health.v1 is.
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("an address")).expect("bind");
    let port = incoming.local_addr().expect("a local address").port();
    let router = Server::builder().add_service(tonic_health::pb::health_server::HealthServer::new(
        NotHealth,
    ));
    tokio::spawn(router.serve_with_incoming(incoming));
    let (resolver, handle) = channel_resolver();
    handle.set(vec![ServiceInstance::new(
        "bare",
        SERVICE,
        "127.0.0.1",
        port,
    )]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE).build();
    wait_ready(&channel, 1).await;
    assert_eq!(
        condition(&channel, "bare"),
        Some(Condition::Serving),
        "expected UNIMPLEMENTED to count as serving"
    );
}

/// A `grpc.health.v1` service whose `Watch` answers `UNIMPLEMENTED`, as a server without
/// a health service does, and whose `Check` says SERVING.
struct NotHealth;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for NotHealth {
    async fn check(
        &self,
        _request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(
            tonic_health::pb::HealthCheckResponse {
                status: tonic_health::ServingStatus::Serving as i32,
            },
        ))
    }

    type WatchStream =
        futures_util::stream::Empty<Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("no watch here"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_health_checking_off_a_not_serving_backend_keeps_its_calls() {
    let backend = HealthBackend::start().await;
    backend.health.set_not_serving(health::SERVER).await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![backend.instance("only")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .health_check(false)
        .build();
    wait_ready(&channel, 1).await;
    check(&channel)
        .await
        .expect("the call goes to the endpoint whatever its health service says");
    assert_eq!(backend.arrivals(), 1, "expected the call on the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_finds_only_not_serving_endpoints_says_so() {
    let backend = HealthBackend::start().await;
    backend.health.set_not_serving(health::SERVER).await;
    let (resolver, handle) = channel_resolver();
    handle.set(vec![backend.instance("only")]);
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .empty_timeout(Duration::from_millis(500))
        .build();
    settle(channel.wait_for(|eps| {
        eps.iter()
            .any(|e| e.id == "only" && e.condition == Condition::NotServing)
    }))
    .await;
    let status = check(&channel)
        .await
        .expect_err("no endpoint serves: the call fails");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("1 known endpoint(s), none ready: 1 not serving"),
        "expected the message to say why no endpoint was ready, got {:?}",
        status.message()
    );
    assert_eq!(
        backend.arrivals(),
        0,
        "expected no call on a not-serving backend"
    );
}
