//! Consul's efficiency options reach the agent: consistency (with `max_stale`) from the core
//! `Query`, the agent cache (`cached`, `max-age`, `stale-if-error`), `near` and `node-meta`
//! from the registry's own defaults. Checked on the bytes a proxy in front of the agent
//! sees, while the agent (consul-dev, or a real Consul named by `CONSUL_HTTP_ADDR` over plain
//! HTTP) accepts them.

mod common;

use std::time::Duration;

use consul_api::agent::{CheckDefinition, ServiceRegistration};
use consul_api::{CheckStatus, Client, ConsulRegistry, QueryDefaults};
use discovery_core::{Consistency, Query, Resolver, Update};
use futures_util::StreamExt;

async fn register(client: &Client, name: &str) {
    let mut reg = ServiceRegistration::new(name);
    reg.id = Some(format!("{name}-1"));
    reg.port = Some(7000);
    let mut check = CheckDefinition::ttl(Duration::from_secs(60));
    check.status = Some(CheckStatus::Passing);
    reg.check = Some(check);
    client.agent().register_service(&reg).await.unwrap();
}

/// Whether the request line `line` carries `param` (`key=value`, or a bare flag `key`, which
/// Consul reads the same as `key=`).
fn sends(line: &str, param: &str) -> bool {
    line.split(['?', '&', ' '])
        .any(|p| p == param || p.strip_suffix('=') == Some(param))
}

/// The request heads the proxy saw for `path`.
fn heads_for(counts: &common::proxy::Counts, path: &str) -> Vec<String> {
    counts
        .request_heads()
        .into_iter()
        .filter(|h| h.lines().next().is_some_and(|l| l.contains(path)))
        .collect()
}

#[tokio::test]
async fn consistency_the_agent_cache_near_and_node_meta_reach_the_agent() {
    let agent = common::agent().await;
    assert_eq!(
        agent.config.address.scheme(),
        "http",
        "this test reads the requests on the wire, which needs plain HTTP"
    );
    let (addr, counts) = common::proxy::start(agent.socket_addr()).await;
    let client = Client::new(agent.config_via(addr)).unwrap();
    let name = common::unique("opts");
    register(&agent.client, &name).await;

    let registry = ConsulRegistry::new(client).query_defaults(
        QueryDefaults::default()
            .cached(true)
            .max_age(Duration::from_secs(30))
            .stale_if_error(Duration::from_secs(60))
            .near("_agent")
            .node_meta("rack", "r1"),
    );
    let stale = Query::new(&name).consistency(Consistency::Stale {
        max_stale: Some(Duration::from_secs(5)),
    });
    let mut updates = registry.watch(&stale);
    match tokio::time::timeout(Duration::from_secs(10), updates.next()).await {
        // No node carries rack=r1: the service exists, nothing matches.
        Ok(Some(Update::Snapshot(s))) => assert!(s.is_empty(), "node-meta filters: {s:?}"),
        other => panic!("the agent accepts every option and answers, got {other:?}"),
    }
    let path = format!("/v1/health/service/{name}?");
    let heads = heads_for(&counts, &path);
    let head = heads
        .first()
        .expect("the watch's read went through the proxy");
    let line = head.lines().next().unwrap();
    for param in [
        "stale",
        "max_stale=5s",
        "cached",
        "near=_agent",
        "node-meta=rack%3Ar1",
    ] {
        assert!(sends(line, param), "{param} is sent: {line}");
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: max-age=30, stale-if-error=60"),
        "the cache's bounds go as Cache-Control: {head}"
    );

    let consistent = Query::new(&name).consistency(Consistency::Consistent);
    registry
        .resolve(&consistent)
        .await
        .expect("the agent answers");
    let heads = heads_for(&counts, &path);
    let line = heads.last().unwrap().lines().next().unwrap().to_owned();
    assert!(sends(&line, "consistent"), "consistent is sent: {line}");
    assert!(
        !sends(&line, "cached"),
        "Consul refuses ?cached beside ?consistent, so it is left out: {line}"
    );

    let other = common::unique("plain");
    register(&agent.client, &other).await;
    let plain = registry.service_defaults(&other, QueryDefaults::default());
    let found = plain.resolve(&Query::new(&other)).await.unwrap();
    assert_eq!(found.len(), 1, "its own defaults: no node-meta filter");
    let heads = heads_for(&counts, &format!("/v1/health/service/{other}?"));
    let line = heads.last().unwrap().lines().next().unwrap().to_owned();
    assert!(
        !line.contains("cached") && !line.contains("node-meta"),
        "a service's own defaults replace the registry's: {line}"
    );
}
