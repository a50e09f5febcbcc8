//! A Consul agent restarted empty while the servers are connected and healthy: its first
//! answer lists nothing until they register again, and the shrink guard keeps every call
//! served meanwhile. Runs on in-process consul-dev agents: stopping an agent and starting
//! an empty one on the same port is the restart.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Backend, Load, SERVICE, observe, settle, wait_ready};
use consul_api::{CheckStatus, Client, Config, ConsulRegistry};
use consul_dev::DevAgent;
use discovery_core::{CheckSpec, Registration, ServiceInstance};
use grpc_resolve::DiscoveredChannel;

/// Registers `instances` on the agent at `addr`, passing from the start.
async fn register(client: &Client, instances: &[ServiceInstance]) {
    for instance in instances {
        let mut registration = consul_api::to_service_registration(
            &Registration::new(instance.clone()).check(CheckSpec::ttl(Duration::from_secs(600))),
        );
        registration
            .check
            .as_mut()
            .expect("the TTL check maps to a check")
            .status = Some(CheckStatus::Passing);
        client
            .agent()
            .register_service(&registration)
            .await
            .expect("register");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_empty_fails_no_call_while_the_servers_register_again() {
    let agent = DevAgent::start("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("consul-dev starts");
    let addr: SocketAddr = agent.addr();
    let client = Client::new(Config::new(&agent.http_addr()).expect("a consul config"))
        .expect("a consul client");
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let instances: Vec<ServiceInstance> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| b.instance(&format!("b{i}")))
        .collect();
    register(&client, &instances).await;
    let channel = DiscoveredChannel::builder(ConsulRegistry::new(client.clone()), SERVICE).build();
    wait_ready(&channel, 3).await;
    let load = Load::start(&channel, 8);

    agent.shutdown().await;
    // The outage is noticed (the last set is kept meanwhile); then the agent is back, empty.
    settle(channel.wait_for(|_| channel.stats().resolver_errors > 0)).await;
    let agent = DevAgent::start(addr)
        .await
        .expect("consul-dev starts again on its port");
    // The first read of the empty agent drops everything; the guard keeps all three.
    settle(channel.wait_for(|eps| eps.iter().filter(|e| e.fallback).count() == 3)).await;
    // The servers register again well after that first read.
    observe(&channel, Duration::from_millis(800), |_| {}).await;
    register(&client, &instances).await;
    settle(channel.wait_for(|eps| eps.len() == 3 && eps.iter().all(|e| !e.fallback && e.ready)))
        .await;
    let report = load.stop().await;
    println!(
        "calls: {} ok, {} failed, slowest {:?}; {:?}",
        report.ok,
        report.failed,
        report.slowest,
        channel.stats()
    );
    assert_eq!(report.failed, 0, "expected no failed call, got {report:?}");
    assert!(
        report.slowest < Duration::from_secs(1),
        "expected no call to wait 1 s or more, the slowest took {:?}",
        report.slowest
    );
    assert_eq!(
        channel.stats().fallbacks,
        3,
        "three endpoints kept as a fallback"
    );
    agent.shutdown().await;
}
