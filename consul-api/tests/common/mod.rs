//! The agent under test: the one `CONSUL_HTTP_ADDR` names (a real Consul), else a fresh
//! in-process consul-dev.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};

use consul_api::{Client, Config};

/// Keeps the in-process agent alive for the test's duration.
pub struct Agent {
    pub client: Client,
    _dev: Option<consul_dev::DevAgent>,
}

pub async fn agent() -> Agent {
    if let Ok(addr) = std::env::var("CONSUL_HTTP_ADDR")
        && !addr.is_empty()
    {
        let config = Config::from_env().expect("CONSUL_HTTP_ADDR is usable");
        return Agent {
            client: Client::new(config).unwrap(),
            _dev: None,
        };
    }
    let dev = consul_dev::DevAgent::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("consul-dev starts");
    Agent {
        client: Client::new(Config::new(&dev.http_addr()).unwrap()).unwrap(),
        _dev: Some(dev),
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
