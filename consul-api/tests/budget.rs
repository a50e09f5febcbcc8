//! The connection budget against an agent that enforces Consul's default connection limit
//! (200 per client IP, idle connections counted, the one over refused with a raw 429): a
//! process watching a thousand services, and five processes watching three hundred each,
//! stay within their budgets, are never refused, and follow every change.
//!
//! consul-dev enforces Consul's default limit (`http_max_conns_per_client`, 200) as Consul
//! does; a proxy per process in front of it counts the connections the agent sees (one
//! upstream connection per client connection, so the limit sees them all). Runs against
//! consul-dev, or a real Consul named by `CONSUL_HTTP_ADDR` over plain HTTP with its
//! default limit.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::proxy::{self, Counts};
use consul_api::agent::ServiceRegistration;
use consul_api::{Client, ConsulRegistry, DEFAULT_MAX_CONNECTIONS, WatchConfig};
use discovery_core::{Query, Resolver, Update};
use futures_util::StreamExt;

/// The latest instance IDs each watched service's subscriber has seen.
type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

async fn register(client: &Client, service: &str, id: &str) {
    let mut reg = ServiceRegistration::new(service);
    reg.id = Some(id.to_owned());
    reg.address = Some("127.0.0.1".into());
    reg.port = Some(7000);
    client.agent().register_service(&reg).await.unwrap();
}

/// Registers one instance of each service, eight at a time.
async fn register_all(client: &Client, services: &[String]) {
    for batch in services.chunks(8) {
        let all = batch
            .iter()
            .map(|s| async move { register(client, s, &format!("{s}-1")).await });
        futures_util::future::join_all(all).await;
    }
}

/// The agent under test with `n` services named after `prefix`, one instance each.
async fn agent_with_services(prefix: &str, n: usize) -> (common::Agent, Vec<String>) {
    let agent = common::agent().await;
    let prefix = common::unique(prefix);
    let services: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    register_all(&agent.client, &services).await;
    (agent, services)
}

/// A subscriber per service, each recording what it last saw.
fn subscribe(registry: &ConsulRegistry, services: &[String], seen: &Seen) {
    for service in services {
        let mut updates = registry.watch(&Query::new(service));
        let (seen, service) = (seen.clone(), service.clone());
        tokio::spawn(async move {
            while let Some(update) = updates.next().await {
                if let Update::Snapshot(instances) = update {
                    let ids = instances.into_iter().map(|i| i.id).collect();
                    seen.lock().unwrap().insert(service.clone(), ids);
                }
            }
        });
    }
}

/// Waits until `check` holds for what the subscribers saw, or `within` passes.
async fn until(
    seen: &Seen,
    within: Duration,
    check: impl Fn(&HashMap<String, Vec<String>>) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check(&seen.lock().unwrap()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check(&seen.lock().unwrap())
}

/// A process's client through its own proxy, with polls fast enough for a test: a
/// thousand watches outside the blocking set are each polled every few seconds.
async fn process(agent: &common::Agent, host: &Arc<Counts>) -> (ConsulRegistry, Arc<Counts>) {
    let (addr, counts) = proxy::start_on_host(agent.socket_addr(), host.clone()).await;
    let config = agent
        .config_via(addr)
        .shared(false)
        .poll_spacing(Duration::from_millis(2));
    let registry = ConsulRegistry::new(Client::new(config).unwrap())
        .watch_config(WatchConfig::default().max_poll_interval(Duration::from_secs(5)));
    (registry, counts)
}

/// Makes `n` random services of `services` change (a second instance each), 20 ms apart,
/// and waits until every subscriber has seen its change.
async fn changes_reach_everyone(agent: &common::Agent, services: &[String], seen: &Seen, n: usize) {
    let mut changed: Vec<String> = services.to_vec();
    fastrand::shuffle(&mut changed);
    changed.truncate(n);
    for service in &changed {
        register(&agent.client, service, &format!("{service}-2")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reached = until(seen, Duration::from_secs(90), |seen| {
        changed
            .iter()
            .all(|s| seen.get(s).is_some_and(|ids| ids.len() == 2))
    })
    .await;
    let missing: Vec<&String> = {
        let seen = seen.lock().unwrap();
        changed
            .iter()
            .filter(|s| seen.get(*s).is_none_or(|ids| ids.len() != 2))
            .collect()
    };
    assert!(
        reached,
        "every change reaches its subscriber; missing {} of {n}: {missing:?}",
        missing.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_watching_a_thousand_services_stays_in_its_budget_and_follows_every_change() {
    let (agent, services) = agent_with_services("fleet", 1000).await;
    let host = Arc::default();
    let (registry, counts) = process(&agent, &host).await;
    let seen: Seen = Arc::default();
    subscribe(&registry, &services, &seen);
    assert!(
        until(&seen, Duration::from_secs(60), |s| s.len()
            == services.len())
        .await,
        "every watch gets its first answer"
    );

    changes_reach_everyone(&agent, &services, &seen, 100).await;

    let stats = registry.client().stats();
    println!("{stats:?}; peak connections {}", counts.peak());
    assert_eq!(
        stats.throttled, 0,
        "no 429: no connection refused by the agent's limit"
    );
    assert_eq!(agent.client.stats().throttled, 0, "nor for the writes");
    assert!(
        counts.peak() <= DEFAULT_MAX_CONNECTIONS,
        "at most the budget's {DEFAULT_MAX_CONNECTIONS} connections open, saw {}",
        counts.peak()
    );
    assert_eq!(
        stats.blocking_held, stats.blocking_capacity,
        "the blocking slots are used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_sharing_the_agent_watching_three_hundred_services_each_stay_in_their_budgets()
 {
    let (agent, services) = agent_with_services("host", 1500).await;
    // One host: every process connects from the same address, under one limit.
    let host = Arc::default();
    let seen: Seen = Arc::default();
    let mut processes = Vec::new();
    for watched in services.chunks(300) {
        let (registry, counts) = process(&agent, &host).await;
        subscribe(&registry, watched, &seen);
        processes.push((registry, counts));
    }
    assert!(
        until(&seen, Duration::from_secs(60), |s| s.len()
            == services.len())
        .await,
        "every watch gets its first answer"
    );

    changes_reach_everyone(&agent, &services, &seen, 100).await;

    assert_eq!(agent.client.stats().throttled, 0, "no 429 for the writes");
    for (i, (registry, counts)) in processes.iter().enumerate() {
        let stats = registry.client().stats();
        assert_eq!(
            stats.throttled, 0,
            "process {i}: no 429, no connection refused"
        );
        assert!(
            counts.peak() <= DEFAULT_MAX_CONNECTIONS,
            "process {i}: at most {DEFAULT_MAX_CONNECTIONS} connections, saw {}",
            counts.peak()
        );
    }
    assert!(
        host.peak() <= 5 * DEFAULT_MAX_CONNECTIONS,
        "the host holds at most five budgets: {}",
        host.peak()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_budget_under_the_limit_the_agent_refuses_and_watches_go_unanswered() {
    // The control: the limit above is real, and the failure the budget prevents is the
    // known one. A budget over Consul's 200 lets three hundred blocking queries try to hold
    // a connection each; the first two hundred do, for their whole wait, and the rest are
    // refused again and again.
    let (agent, services) = agent_with_services("unbudgeted", 300).await;
    let (addr, counts) = proxy::start(agent.socket_addr()).await;
    let config = agent.config_via(addr).shared(false).max_connections(400);
    let registry = ConsulRegistry::new(Client::new(config).unwrap());
    let seen: Seen = Arc::default();
    subscribe(&registry, &services, &seen);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let answered = seen.lock().unwrap().len();
    let throttled = registry.client().stats().throttled;
    println!(
        "{answered} of 300 answered; {throttled} answers 429; peak {} connections",
        counts.peak()
    );
    assert!(throttled > 0, "over the limit the agent refuses with 429");
    assert!(
        answered < services.len(),
        "and watches go unanswered while others hold every connection ({answered} of 300)"
    );
}
