//! The agent under test: the one `CONSUL_HTTP_ADDR` names (a real Consul), else a fresh
//! in-process consul-dev.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};

use consul_api::{Client, Config};

/// Keeps the in-process agent alive for the test's duration.
pub struct Agent {
    pub client: Client,
    /// The settings `client` was built with.
    pub config: Config,
    /// The in-process agent, when no real one is named.
    pub dev: Option<consul_dev::DevAgent>,
}

impl Agent {
    /// The agent's TCP address (for a proxy in front of it).
    pub fn socket_addr(&self) -> SocketAddr {
        let url = &self.config.address;
        let host = url.host_str().expect("the agent has a host");
        let port = url.port_or_known_default().expect("the agent has a port");
        (host, port)
            .to_socket_addrs()
            .expect("the agent's host resolves")
            .next()
            .expect("one address")
    }

    /// `config` pointed at `addr` (a proxy) instead of the agent.
    pub fn config_via(&self, addr: SocketAddr) -> Config {
        let mut config = self.config.clone();
        config.address.set_ip_host(addr.ip()).expect("an IP host");
        config.address.set_port(Some(addr.port())).expect("a port");
        config
    }
}

/// Whether the tests run against a real Consul.
pub fn real_consul() -> bool {
    std::env::var("CONSUL_HTTP_ADDR").is_ok_and(|a| !a.is_empty())
}

pub async fn agent() -> Agent {
    agent_with(consul_dev::Config::default()).await
}

/// The agent under test; an in-process one is started with `dev` (ignored for a real one).
pub async fn agent_with(dev: consul_dev::Config) -> Agent {
    if real_consul() {
        let config = Config::from_env().expect("CONSUL_HTTP_ADDR is usable");
        return Agent {
            client: Client::new(config.clone()).unwrap(),
            config,
            dev: None,
        };
    }
    let dev = consul_dev::DevAgent::start_with(dev, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("consul-dev starts");
    let config = Config::new(&dev.http_addr()).unwrap();
    Agent {
        client: Client::new(config.clone()).unwrap(),
        config,
        dev: Some(dev),
    }
}

/// A name no other test, or earlier run against a shared agent, uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
