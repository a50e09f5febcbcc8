//! What the tests against an agent share: the agent under test (the one `CONSUL_HTTP_ADDR`
//! names, else an in-process consul-dev), a registry for it, and polling its view of a
//! service until it shows what a test waits for.

#![allow(dead_code, unreachable_pub)] // each test binary uses its own part

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use consul_api::{Client, Config, ConsulRegistry, HealthCheck};

/// Whether the tests run against a real Consul (`CONSUL_HTTP_ADDR` set).
pub fn real_consul() -> bool {
    std::env::var("CONSUL_HTTP_ADDR").is_ok_and(|a| !a.is_empty())
}

/// The agent under test and a registry talking to it: the agent `CONSUL_HTTP_ADDR` names
/// (with `CONSUL_HTTP_TOKEN` and the rest, read as a server would read them), else a fresh
/// in-process consul-dev, which the caller keeps alive for the test. For tests that need
/// only an agent's address; the servers they start listen on this host, so a real agent
/// must run here too for its checks to reach them. The registry shares nothing with other
/// clients of equal settings: each test has a runtime of its own, and a transport shared
/// with a test that has ended would have lost its connections with that test's runtime.
pub async fn agent() -> (Option<consul_dev::DevAgent>, ConsulRegistry) {
    if real_consul() {
        let config = Config::from_env().expect("CONSUL_HTTP_ADDR is usable");
        let client = Client::new(config.shared(false)).expect("a consul client");
        return (None, ConsulRegistry::new(client));
    }
    let (agent, registry) = dev_agent().await;
    (Some(agent), registry)
}

/// The socket address of the agent `registry` talks to.
pub fn agent_addr(registry: &ConsulRegistry) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let url = &registry.client().config().address;
    let host = url.host_str().expect("the agent has a host");
    let port = url.port_or_known_default().expect("the agent has a port");
    (host, port)
        .to_socket_addrs()
        .expect("the agent's host resolves")
        .next()
        .expect("one address")
}

/// A fresh in-process consul-dev on a free port, and a registry talking to it.
pub async fn dev_agent() -> (consul_dev::DevAgent, ConsulRegistry) {
    dev_agent_with(consul_dev::Config::default().node_name("dev")).await
}

/// [`dev_agent`] with its own configuration.
pub async fn dev_agent_with(config: consul_dev::Config) -> (consul_dev::DevAgent, ConsulRegistry) {
    let agent = consul_dev::DevAgent::start_with(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let registry = registry_at(&agent.http_addr());
    (agent, registry)
}

/// A registry for the agent at `addr` (`host:port`), whether or not one runs there.
pub fn registry_at(addr: &str) -> ConsulRegistry {
    ConsulRegistry::new(Client::new(Config::new(addr).unwrap()).unwrap())
}

/// Polls the agent's checks until `done` accepts the check of `service_id`.
pub async fn check_until(
    registry: &ConsulRegistry,
    service_id: &str,
    what: &str,
    done: impl Fn(&HealthCheck) -> bool,
) -> HealthCheck {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(check) = check_of(registry, service_id).await
            && done(&check)
        {
            return check;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The agent's check of `service_id`, if the agent answers and has one.
pub async fn check_of(registry: &ConsulRegistry, service_id: &str) -> Option<HealthCheck> {
    let checks = registry.client().agent().checks().await.ok()?;
    checks.into_values().find(|c| c.service_id == service_id)
}

/// Whether the agent answers and knows `service_id`.
pub async fn registered(registry: &ConsulRegistry, service_id: &str) -> bool {
    registry
        .client()
        .agent()
        .services()
        .await
        .map(|s| s.contains_key(service_id))
        .unwrap_or(false)
}

/// Polls until the agent no longer knows `service_id`; panics after `within`.
pub async fn gone_within(registry: &ConsulRegistry, service_id: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while registered(registry, service_id).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{service_id} still registered after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether something accepts TCP connections at `addr`.
pub fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// `GET path` on `addr` over HTTP/1.1 with `Connection: close`: the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, answer.clone());
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .ok_or_else(bad)?;
    Ok((code, body))
}

/// Starts `builder` with no services of its own (the health service only) on a free
/// loopback port.
pub async fn start(builder: grpc_register::Builder) -> grpc_register::Running {
    builder
        .start(
            tonic::transport::Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap()
}
