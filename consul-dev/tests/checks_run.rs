//! Checks the agent runs against real HTTP, TCP and gRPC targets, its thresholds, and the reaper of
//! services critical for too long. Conformance cases 50, 51, 52, 53, 54, 55, 66;
//! `tests/README.md` lists every case and where it is tested.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, LONG};
use serde_json::{Value, json};

async fn http_target() -> std::net::SocketAddr {
    use axum::http::StatusCode;
    let app = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "all good" }))
        .route(
            "/busy",
            axum::routing::get(|| async { (StatusCode::TOO_MANY_REQUESTS, "busy") }),
        )
        .route(
            "/bad",
            axum::routing::get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An address nothing listens on.
async fn closed_port() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

/// Case 50: HTTP check vs server answering 200 / 429 / 500 / nothing listening → passing (`HTTP GET
/// <url>: 200 OK Output: ...`) / warning / critical / critical.
#[tokio::test]
async fn case_50_http_check() {
    let a = Agent::start().await;
    let t = http_target().await;
    let closed = closed_port().await;
    for (id, path, want) in [
        ("ok", format!("http://{t}/ok"), "passing"),
        ("busy", format!("http://{t}/busy"), "warning"),
        ("bad", format!("http://{t}/bad"), "critical"),
        ("down", format!("http://{closed}/"), "critical"),
    ] {
        a.register(
            json!({"Name": id, "Check": {"CheckID": id, "HTTP": path, "Interval": "1s",
            "Status": if want == "critical" { "passing" } else { "critical" }}}),
        )
        .await;
        let c = a.wait_check(id, id, want, LONG).await;
        if id == "ok" {
            assert_eq!(
                c["Output"],
                format!("HTTP GET http://{t}/ok: 200 OK Output: all good")
            );
        }
    }
}

async fn next_hit(hits: &mut tokio::sync::mpsc::UnboundedReceiver<Instant>) -> Instant {
    tokio::time::timeout(LONG, hits.recv())
        .await
        .expect("the check keeps running")
        .expect("channel open")
}

/// Case 51: `Interval:"100ms"` accepted; runs about once a second.
#[tokio::test]
async fn case_51_interval_floor() {
    use std::sync::Arc;
    use tokio::sync::mpsc;
    // A target that reports each hit, so the test awaits runs instead of sleeping.
    let (tx, mut hits) = mpsc::unbounded_channel::<Instant>();
    let tx = Arc::new(tx);
    let app = axum::Router::new().route(
        "/ok",
        axum::routing::get(move || {
            let tx = Arc::clone(&tx);
            async move {
                let _ = tx.send(Instant::now());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let t = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let a = Agent::start().await;
    a.register(
        json!({"Name": "web", "Check": {"CheckID": "h", "HTTP": format!("http://{t}/ok"),
        "Interval": "100ms"}}),
    )
    .await;
    assert_eq!(
        a.agent_check("h").await["Interval"],
        "1s",
        "raised to the 1s floor"
    );
    let first = next_hit(&mut hits).await;
    let mut last = first;
    for _ in 0..3 {
        last = next_hit(&mut hits).await;
    }
    let span = last - first;
    // Three intervals at 100ms would take ~0.3s; at the 1s floor they take >= 3s.
    assert!(
        span >= Duration::from_millis(2700),
        "3 runs took {span:?}, expected about 3s"
    );
}

/// Case 52: gRPC check `host:port/pkg.Svc`: server receives service `pkg.Svc`; SERVING → passing
/// `gRPC check ...: success`; NOT_SERVING → critical; Unimplemented → critical.
#[tokio::test]
async fn case_52_grpc_check() {
    use tonic_health::ServingStatus;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("pkg.Svc", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // A gRPC server without the health service: Unimplemented.
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bare_addr = bare.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(bare)),
    );

    let a = Agent::start().await;
    let target = format!("{addr}/pkg.Svc");
    a.register(json!({"Name": "svc", "Check": {"CheckID": "g", "GRPC": target, "Interval": "1s"}}))
        .await;
    let c = a.wait_check("svc", "g", "passing", LONG).await;
    assert_eq!(c["Output"], format!("gRPC check {target}: success"));
    reporter
        .set_service_status("pkg.Svc", ServingStatus::NotServing)
        .await;
    a.wait_check("svc", "g", "critical", LONG).await;

    a.register(
        json!({"Name": "bare", "Check": {"CheckID": "u", "GRPC": bare_addr.to_string(),
        "Interval": "1s", "Status": "passing"}}),
    )
    .await;
    a.wait_check("bare", "u", "critical", LONG).await;
}

/// Case 53: TCP check to open port → passing `TCP connect <addr>: Success`; closed → critical.
#[tokio::test]
async fn case_53_tcp_check() {
    let a = Agent::start().await;
    let open = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let open_addr = open.local_addr().expect("addr");
    let closed = closed_port().await;
    a.register(
        json!({"Name": "up", "Check": {"CheckID": "t1", "TCP": open_addr.to_string(),
        "Interval": "1s"}}),
    )
    .await;
    a.register(
        json!({"Name": "down", "Check": {"CheckID": "t2", "TCP": closed.to_string(),
        "Interval": "1s", "Status": "passing"}}),
    )
    .await;
    let c = a.wait_check("up", "t1", "passing", LONG).await;
    assert_eq!(c["Output"], format!("TCP connect {open_addr}: Success"));
    a.wait_check("down", "t2", "critical", LONG).await;
    drop(open);
}

async fn web_status(a: &Agent) -> Value {
    a.agent_check("service:web").await["Status"].clone()
}

/// Case 54: FailuresBeforeCritical 2: the first-ever failure → critical at once; after a success,
/// one failure stays passing, the second → critical. SuccessBeforePassing 2: first-ever success
/// passes at once.
#[tokio::test]
async fn case_54_thresholds() {
    let a = Agent::start().await;
    a.register(
        json!({"Name": "web", "Check": {"TTL": "60s", "Status": "passing",
        "FailuresBeforeCritical": 2}}),
    )
    .await;
    assert_eq!(a.put("/v1/agent/check/fail/service:web").await.status, 200);
    assert_eq!(
        web_status(&a).await,
        "critical",
        "first-ever failure applies at once"
    );
    assert_eq!(a.put("/v1/agent/check/pass/service:web").await.status, 200);
    assert_eq!(web_status(&a).await, "passing");
    assert_eq!(a.put("/v1/agent/check/fail/service:web").await.status, 200);
    assert_eq!(web_status(&a).await, "passing", "one failure is held back");
    assert_eq!(a.put("/v1/agent/check/fail/service:web").await.status, 200);
    assert_eq!(
        web_status(&a).await,
        "critical",
        "the second failure applies"
    );

    a.register(json!({"Name": "db", "Check": {"TTL": "60s", "SuccessBeforePassing": 2}}))
        .await;
    assert_eq!(a.put("/v1/agent/check/pass/service:db").await.status, 200);
    assert_eq!(
        a.agent_check("service:db").await["Status"],
        "passing",
        "first-ever success applies at once"
    );
}

/// An agent whose reaper runs every 200 ms with a 2 s `DeregisterCriticalServiceAfter`
/// floor (the test-only flags scaling Consul's 30 s and 1 m), and that floor.
async fn scaled_reaper_agent() -> (Agent, Duration) {
    let floor = Duration::from_secs(2);
    let a = Agent::start_with(
        consul_dev::Config::default()
            .node_name("dev-node")
            .reaper_interval(Duration::from_millis(200))
            .min_deregister_after(floor),
    )
    .await;
    (a, floor)
}

/// Case 55: DeregisterCriticalServiceAfter `10s` on a TTL check → treated as 1m; service gone
/// 60–90s after the TTL expires (with default reaper settings).
#[tokio::test]
async fn case_55_deregister_critical_service_after() {
    // Consul's 1m floor and 30s reaper, scaled down with the agent's test-only flags
    // (checked to default to Consul's values in unit tests). Only lower bounds that hold by
    // construction are asserted; "gone at the first reaper run past the timeout" is checked
    // exactly with paused time in the unit tests.
    let (a, floor) = scaled_reaper_agent().await;
    // Registered critical: its clock starts only at its first critical result, the TTL
    // expiry ten minutes away, so it outlives everything below.
    a.register(json!({"Name": "stuck", "Check": {"TTL": "10m",
        "DeregisterCriticalServiceAfter": "100ms"}}))
        .await;
    // Taken before registering, so it is no later than the TTL expiry it precedes.
    let registered = Instant::now();
    a.register(
        json!({"Name": "web", "Check": {"TTL": "1s", "Status": "passing",
        "DeregisterCriticalServiceAfter": "100ms"}}),
    )
    .await;
    let c = a.wait_check("web", "service:web", "critical", LONG).await;
    assert_eq!(
        c["Output"], "TTL expired",
        "the TTL expiry is the transition"
    );
    a.wait_health("web", LONG, |v| v == &json!([])).await;
    let took = registered.elapsed();
    assert!(
        took >= Duration::from_secs(1) + floor,
        "100ms is raised to the {floor:?} floor, counted from the TTL expiry (1s after \
         registering); reaped after {took:?}"
    );
    let services = a.get_json("/v1/agent/services").await;
    assert!(
        services.get("web").is_none(),
        "web is deregistered: {services}"
    );
    let checks = a.agent_checks().await;
    assert!(
        checks.get("service:web").is_none(),
        "its check went too: {checks}"
    );
    // `stuck` has been critical since before web registered and is past any timeout, but
    // being registered critical starts no clock: only a critical result does.
    assert!(
        services.get("stuck").is_some(),
        "stuck is still there: {services}"
    );
    assert_eq!(checks["service:stuck"]["Status"], "critical");

    // A transition does start it: pass, then fail at a known time.
    assert_eq!(
        a.put("/v1/agent/check/pass/service:stuck").await.status,
        200
    );
    let before_fail = Instant::now();
    assert_eq!(
        a.put("/v1/agent/check/fail/service:stuck").await.status,
        200
    );
    a.wait_health("stuck", LONG, |v| v == &json!([])).await;
    let took = before_fail.elapsed();
    assert!(
        took >= floor,
        "reaped no sooner than the floor after turning critical; took {took:?}"
    );
    assert_eq!(a.get_json("/v1/agent/services").await, json!({}));
    assert_eq!(
        a.agent_checks().await,
        json!({}),
        "no service checks are left behind"
    );
}

/// Case 66: a service registered with a failing HTTP check (critical from the start, as
/// checks are by default) is reaped: Consul's `UpdateCheck` starts the critical clock at the
/// first critical result while it is stopped, not only at a change to critical.
#[tokio::test]
async fn case_66_registered_critical_and_never_passing_is_reaped() {
    let (a, floor) = scaled_reaper_agent().await;
    let target = http_target().await;
    let registered = Instant::now();
    a.register(
        json!({"Name": "web", "Check": {"HTTP": format!("http://{target}/bad"),
        "Interval": "1s", "DeregisterCriticalServiceAfter": "100ms"}}),
    )
    .await;
    let c = a.agent_check("service:web").await;
    assert_eq!(c["Status"], "critical", "registered critical");
    a.wait_health("web", LONG, |v| v == &json!([])).await;
    let took = registered.elapsed();
    assert!(
        took >= floor,
        "reaped no sooner than the {floor:?} floor after its first failing run: {took:?}"
    );
    let services = a.get_json("/v1/agent/services").await;
    assert!(
        services.get("web").is_none(),
        "web is deregistered: {services}"
    );
}
