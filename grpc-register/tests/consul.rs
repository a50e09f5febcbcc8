//! grpc-register against a live agent: the one `CONSUL_HTTP_ADDR` names (a real Consul on
//! this host), else an in-process consul-dev per test. The two tests that stop and start the
//! agent (restarted empty; down at start) always use consul-dev, which they can restart at
//! will.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{
    agent, agent_addr, check_until, dev_agent, listening, registered, registry_at, start,
};
use consul_api::CheckStatus;
use discovery_core::{Query, Resolver};
use grpc_register::{CheckKind, Registered};
use health::{InFlightLimitLayer, Probe, SERVER, Scope};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Server;
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_with_a_passing_grpc_check_on_the_bound_port_and_a_real_address() {
    let (_agent, registry) = agent().await;
    let running = Registered::builder(registry.clone(), "wild")
        .check_interval(Duration::from_secs(1))
        .registry_addr(agent_addr(&registry))
        .drain(Duration::ZERO)
        .start(
            Server::builder().add_routes(Default::default()),
            "0.0.0.0:0".parse().unwrap(),
        )
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let instance = &running.registrations()[0].instance;
    assert_eq!(
        instance.port,
        running.local_addr().port(),
        "the bound port is registered"
    );
    assert_ne!(instance.host, "0.0.0.0", "never the wildcard address");
    let check = check_until(&registry, running.id(), "a passing gRPC check", |c| {
        c.status == CheckStatus::Passing
    })
    .await;
    let took = started.elapsed();
    println!("passing {took:?} after start (check interval 1s)");
    // The agent's first run comes at a random offset within one interval; the bound is
    // generous for a loaded machine.
    assert!(
        took < Duration::from_secs(3),
        "passing within about one interval: {took:?}"
    );
    assert_eq!(check.kind, "grpc");
    assert!(check.output.contains("success"), "{check:?}");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_leaves_consul_before_the_listener_closes() {
    let (_agent, registry) = agent().await;
    let running = Registered::builder(registry.clone(), "leaving")
        .check_interval(Duration::from_secs(1))
        .drain(Duration::from_secs(2))
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
    let (id, addr) = (running.id().to_owned(), running.local_addr());
    assert!(registered(&registry, &id).await);
    let stopping = tokio::spawn(running.stop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while registered(&registry, &id).await {
        assert!(tokio::time::Instant::now() < deadline, "never deregistered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        listening(addr),
        "gone from Consul while the listener still accepts"
    );
    stopping.await.unwrap().unwrap();
    assert!(!listening(addr), "closed after the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_empty_learns_the_servers_again() {
    let (agent, registry) = dev_agent().await;
    let addr = agent.addr();
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(
            Registered::builder(registry.clone(), "phoenix")
                .check_interval(Duration::from_secs(1))
                .drain(Duration::ZERO)
                .start(
                    Server::builder().add_routes(Default::default()),
                    "127.0.0.1:0".parse().unwrap(),
                )
                .await
                .unwrap(),
        );
    }
    agent.shutdown().await;
    let agent = consul_dev::DevAgent::start(addr)
        .await
        .expect("same port again");
    let restarted = tokio::time::Instant::now();
    for server in &servers {
        let deadline = restarted + Duration::from_secs(30);
        while !registered(&registry, server.id()).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never registered again"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let took = restarted.elapsed();
    println!("both servers registered again {took:?} after the restart (interval 1s)");
    assert!(
        took < Duration::from_secs(3),
        "within about one check interval: {took:?}"
    );
    for server in &servers {
        check_until(
            &registry,
            server.id(),
            "re-registration and a passing check",
            |c| c.status == CheckStatus::Passing,
        )
        .await;
    }
    println!(
        "re-registered and passing {:?} after the restart",
        restarted.elapsed()
    );
    for server in servers {
        server.stop().await.unwrap();
    }
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_down_at_start_gets_the_registration_when_it_comes_up() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let registry = registry_at(&port.to_string());
    let running = Registered::builder(registry.clone(), "early")
        .check_interval(Duration::from_secs(1))
        .drain(Duration::ZERO)
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .expect("starts with no registry");
    assert!(listening(running.local_addr()), "serves meanwhile");
    let _agent = consul_dev::DevAgent::start(port).await.unwrap();
    check_until(&registry, running.id(), "the late registration", |_| true).await;
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_checks_follow_the_health_indicators() {
    let (_agent, registry) = agent().await;
    let builder = Registered::builder(registry.clone(), "ttl")
        .check(CheckKind::Ttl(Duration::from_millis(900)))
        .drain(Duration::ZERO);
    let health = builder.health();
    let running = builder
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
    let id = running.id().to_owned();
    check_until(&registry, &id, "passing", |c| {
        c.status == CheckStatus::Passing
    })
    .await;
    health
        .report("database", Scope::All, Probe::down("connection refused"))
        .await;
    let check = check_until(&registry, &id, "critical", |c| {
        c.status == CheckStatus::Critical
    })
    .await;
    assert!(
        check.output.contains("database: connection refused"),
        "the indicator's output reaches Consul: {:?}",
        check.output
    );
    health.report("database", Scope::All, Probe::up("ok")).await;
    check_until(&registry, &id, "passing again", |c| {
        c.status == CheckStatus::Passing
    })
    .await;
    running.stop().await.unwrap();
}

/// A unary endpoint whose calls last until the test releases them.
#[derive(Clone)]
struct Hold(Arc<Semaphore>);

impl NamedService for Hold {
    const NAME: &'static str = "test.Hold";
}

impl tower::Service<http::Request<Body>> for Hold {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        let gate = self.0.clone();
        Box::pin(async move {
            let _permit = gate.acquire().await;
            let mut resp = http::Response::new(Body::empty());
            resp.headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static("0"));
            Ok(resp)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_flight_limit_consul_sees_critical_then_passing() {
    let (_agent, registry) = agent().await;
    let builder = Registered::builder(registry.clone(), "busy")
        .check_interval(Duration::from_secs(1))
        .drain(Duration::ZERO);
    let limit = InFlightLimitLayer::new(builder.health(), 3, 1);
    let gate = Arc::new(Semaphore::new(0));
    let router = Server::builder()
        .layer(limit.clone())
        .add_service(Hold(gate.clone()));
    let running = builder
        .start(router, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let id = running.id().to_owned();
    check_until(&registry, &id, "passing", |c| {
        c.status == CheckStatus::Passing
    })
    .await;

    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", running.local_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut calls = Vec::new();
    for _ in 0..4 {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/test.Hold/Wait", running.local_addr()))
            .header("content-type", "application/grpc")
            .body(Body::empty())
            .unwrap();
        calls.push(tokio::spawn(channel.clone().oneshot(req)));
    }
    let check = check_until(&registry, &id, "critical while over the limit", |c| {
        c.status == CheckStatus::Critical
    })
    .await;
    assert!(
        limit.in_flight() >= 4,
        "4 calls held (health checks may add more)"
    );
    println!("over the limit: {:?}", check.output);
    assert_eq!(
        running.health().status(SERVER),
        Some(health::ServingStatus::NotServing)
    );

    gate.add_permits(100);
    for call in calls {
        call.await.unwrap().expect("held calls complete");
    }
    check_until(&registry, &id, "passing once under the limit", |c| {
        c.status == CheckStatus::Passing
    })
    .await;
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_meta_set_through_the_builder_reaches_consul() {
    let (_agent, registry) = agent().await;
    let running = start(
        Registered::builder(registry.clone(), "tagged")
            .meta("version", "2.1")
            .meta("zone", "eu-west-1a")
            .check_interval(Duration::from_secs(1))
            .drain(Duration::ZERO),
    )
    .await;
    let services = registry.client().agent().services().await.unwrap();
    let service = &services[running.id()];
    let want: BTreeMap<String, String> = [("version", "2.1"), ("zone", "eu-west-1a")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(service.meta, want, "the agent's service carries the meta");

    check_until(&registry, running.id(), "passing", |c| {
        c.status == CheckStatus::Passing
    })
    .await;
    let instances = registry.resolve(&Query::new("tagged")).await.unwrap();
    assert_eq!(
        instances
            .iter()
            .filter(|i| i.id == running.id()) // a shared agent may list others
            .map(|i| &i.meta)
            .collect::<Vec<_>>(),
        [&want],
        "and so does what a resolver reads from the health endpoint"
    );
    running.stop().await.unwrap();
}
