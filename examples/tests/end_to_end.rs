//! The walking skeleton end to end: servers register in Consul, Consul's own gRPC check turns
//! them passing, a client spreads calls over them through discovery, and a server that stops
//! gracefully leaves without a single failed call.
//!
//! Runs against an in-process consul-dev, or against the agent `CONSUL_HTTP_ADDR` names.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use consul_api::{CheckStatus, Client, Config, ConsulRegistry};
use discovery_core::{Query, Resolver, Update};
use examples::pb::adder_client::AdderClient;
use examples::{CallStats, ServerOptions};
use futures_util::StreamExt;
use grpc_resolve::DiscoveredChannel;

/// The agent under test: `CONSUL_HTTP_ADDR` if set, else a fresh in-process consul-dev.
async fn consul() -> (Option<consul_dev::DevAgent>, ConsulRegistry) {
    if let Ok(addr) = std::env::var("CONSUL_HTTP_ADDR")
        && !addr.is_empty()
    {
        let config = Config::from_env().expect("CONSUL_HTTP_ADDR is usable");
        return (None, ConsulRegistry::new(Client::new(config).unwrap()));
    }
    let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("consul-dev starts");
    let client = Client::new(Config::new(&agent.http_addr()).unwrap()).unwrap();
    (Some(agent), ConsulRegistry::new(client))
}

/// A service name no other test (or earlier run against a shared agent) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits, bounded, until `done` holds, checking every few milliseconds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_pass_their_grpc_checks_and_one_leaves_without_failed_calls() {
    let (_agent, registry) = consul().await;
    let opts = ServerOptions {
        service: unique("adder"),
        drain: Duration::from_secs(1),
        ..Default::default()
    };
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(
            examples::start_server(registry.clone(), &opts)
                .await
                .expect("server starts"),
        );
    }

    // Consul's own gRPC check must turn each instance passing: the passing-only watch lists
    // them only then.
    let mut watch = registry.watch(&Query::new(&opts.service));
    let passing = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(Update::Snapshot(instances)) = watch.next().await
                && instances.len() == 3
            {
                return instances;
            }
        }
    })
    .await
    .expect("all three instances pass their checks within 30s");
    let mut ids: Vec<&str> = passing.iter().map(|i| i.id.as_str()).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = servers.iter().map(|s| s.id()).collect();
    want.sort_unstable();
    assert_eq!(ids, want, "the passing instances are our servers");
    for instance in &passing {
        assert_eq!(instance.host, "127.0.0.1", "advertised the listen address");
    }
    let checks = registry.client().agent().checks().await.unwrap();
    for server in &servers {
        let check = checks
            .values()
            .find(|c| c.service_id == server.id())
            .expect("each server has a check");
        assert_eq!(
            check.status,
            CheckStatus::Passing,
            "check of {}",
            server.id()
        );
        assert!(
            check.output.contains("success"),
            "a gRPC check ran against {}: output {:?}",
            server.id(),
            check.output
        );
    }

    // A continuous stream of calls from four callers.
    let channel = DiscoveredChannel::builder(registry.clone(), opts.service.clone()).build();
    let stats = Arc::new(CallStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let calls = tokio::spawn(examples::call_loop(
        AdderClient::new(channel),
        None,
        4,
        examples::DEFAULT_DEADLINE,
        stats.clone(),
        stop_rx,
    ));
    eventually("calls to reach all three backends", || {
        let seen = stats.per_backend();
        servers
            .iter()
            .all(|s| seen.get(s.id()).copied().unwrap_or(0) > 0)
    })
    .await;

    // The shutdown signal to one server, while the calls go on: it must leave Consul while
    // its listener still accepts, then close, with no failed call.
    let leaving = servers.remove(0);
    let leaving_id = leaving.id().to_owned();
    let leaving_addr = leaving.local_addr();
    let (signal, on_signal) = tokio::sync::oneshot::channel::<()>();
    let stopping = tokio::spawn(leaving.run_until(async {
        let _ = on_signal.await;
    }));
    signal.send(()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while registry
        .client()
        .agent()
        .services()
        .await
        .unwrap()
        .contains_key(&leaving_id)
    {
        assert!(tokio::time::Instant::now() < deadline, "never deregistered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        std::net::TcpStream::connect_timeout(&leaving_addr, Duration::from_secs(1)).is_ok(),
        "gone from Consul while its listener still accepts"
    );
    stopping.await.unwrap().expect("graceful stop");
    let at_stop = stats.per_backend().get(&leaving_id).copied().unwrap_or(0);
    let ok_at_stop = stats.ok();
    eventually("500 more calls after the stop", || {
        stats.ok() >= ok_at_stop + 500
    })
    .await;
    stop_tx.send(true).unwrap();
    calls.await.unwrap();

    assert_eq!(
        stats.failed(),
        0,
        "no call may fail; last error: {:?}",
        stats.last_error()
    );
    assert_eq!(
        stats.per_backend().get(&leaving_id).copied().unwrap_or(0),
        at_stop,
        "the stopped server received no call after it closed"
    );
    let remaining = registry.resolve(&Query::new(&opts.service)).await.unwrap();
    assert_eq!(remaining.len(), 2, "the stopped server is gone from Consul");
    assert!(remaining.iter().all(|i| i.id != leaving_id));
    for server in servers {
        server.stop().await.unwrap();
    }
}
