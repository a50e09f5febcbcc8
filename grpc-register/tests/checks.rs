//! Every check kind end to end against the agent, which runs the gRPC, HTTP and TCP checks
//! itself and expires TTL ones: each is registered, turns passing, then critical once the
//! server stops answering in the way that kind can observe (NOT_SERVING for gRPC and HTTP,
//! a closed port for TCP, silence for TTL). Intervals are Consul's 1 s floor. Against
//! consul-dev, or a real Consul on this host named by `CONSUL_HTTP_ADDR`.

mod common;

use std::time::Duration;

use common::{agent, check_until, http_get, start};
use consul_api::{CheckStatus, ConsulRegistry, HealthCheck};
use grpc_register::{CheckKind, Registered, Running};
use tokio::time::Instant;

async fn checked(registry: &ConsulRegistry, service: &str, check: CheckKind) -> Running {
    start(
        Registered::builder(registry.clone(), service)
            .check(check)
            .check_interval(Duration::from_secs(1))
            .check_timeout(Duration::from_millis(500))
            .drain(Duration::ZERO),
    )
    .await
}

async fn passing(registry: &ConsulRegistry, running: &Running) -> HealthCheck {
    check_until(registry, running.id(), "passing", |c| {
        c.status == CheckStatus::Passing
    })
    .await
}

/// Waits for the check to turn critical and says how long it took.
async fn critical(registry: &ConsulRegistry, id: &str, why: &str) -> HealthCheck {
    let since = Instant::now();
    let check = check_until(registry, id, why, |c| c.status == CheckStatus::Critical).await;
    println!(
        "{id}: critical {:?} after {why}: {:?}",
        since.elapsed(),
        check.output
    );
    check
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_check_passes_then_fails_once_not_serving() {
    let (_agent, registry) = agent().await;
    let running = checked(
        &registry,
        "grpc",
        CheckKind::Grpc {
            service: health::SERVER.into(),
        },
    )
    .await;
    let check = passing(&registry, &running).await;
    assert_eq!(check.kind, "grpc", "{check:?}");
    running.health().set_not_serving(health::SERVER).await;
    let check = critical(&registry, running.id(), "NOT_SERVING").await;
    assert!(
        check.output.contains("NOT_SERVING"),
        "the agent read the health state: {check:?}"
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_check_of_the_served_health_route_passes_then_fails_once_not_serving() {
    let (_agent, registry) = agent().await;
    let running = checked(
        &registry,
        "http",
        CheckKind::HttpHealth {
            listen: "127.0.0.1:0".parse().unwrap(),
        },
    )
    .await;
    let side = running
        .http_health_addr()
        .expect("the health route's address");
    assert_ne!(
        side.port(),
        running.local_addr().port(),
        "a port of its own: tonic speaks HTTP/2 only"
    );
    let check = passing(&registry, &running).await;
    assert_eq!(check.kind, "http", "{check:?}");
    assert!(
        check.output.contains("200 OK"),
        "the agent's GET got 200: {check:?}"
    );

    running.health().set_not_serving(health::SERVER).await;
    let check = critical(&registry, running.id(), "NOT_SERVING").await;
    assert!(
        check.output.contains("503"),
        "the route answers 503 while NOT_SERVING: {check:?}"
    );
    let (code, body) = http_get(side, "/health").await.unwrap();
    assert_eq!(code, 503, "the route itself: {body}");
    assert!(
        body.contains("NOT_SERVING"),
        "with the health state's words: {body}"
    );

    running.stop().await.unwrap();
    assert!(
        http_get(side, "/health").await.is_err(),
        "the health port closes with the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_check_passes_then_fails_once_the_listener_is_gone() {
    let (_agent, registry) = agent().await;
    let running = checked(&registry, "tcp", CheckKind::Tcp).await;
    let check = passing(&registry, &running).await;
    assert_eq!(check.kind, "tcp", "{check:?}");
    let id = running.id().to_owned();
    // A TCP check sees only the port: it keeps passing while NOT_SERVING, so stop the
    // server without deregistering (dropping it, as a crash would).
    drop(running);
    let check = critical(&registry, &id, "the listener closed").await;
    assert!(
        check.output.contains("connection refused"),
        "the agent's connect was refused: {check:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_check_passes_then_expires_once_the_reports_stop() {
    let (_agent, registry) = agent().await;
    let ttl = Duration::from_secs(1);
    let running = checked(&registry, "ttl", CheckKind::Ttl(ttl)).await;
    let check = passing(&registry, &running).await;
    assert_eq!(check.kind, "ttl", "{check:?}");
    let id = running.id().to_owned();
    drop(running);
    let check = critical(&registry, &id, "the reports stopped").await;
    assert!(
        check.output.contains("TTL expired"),
        "expired, not reported critical: {check:?}"
    );
}
