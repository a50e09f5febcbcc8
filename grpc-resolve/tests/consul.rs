//! Against an agent (an in-process consul-dev, or the real Consul on this host that
//! `CONSUL_HTTP_ADDR` names): an idle channel follows a long run of changes, and zones
//! registered in Consul steer calls. Each test registers under a service name of its own,
//! so a shared agent's other services and earlier runs do not mix in, and removes what it
//! registered.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Backend, check, dead_instance, settle};
use consul_api::{CheckStatus, Client, Config, ConsulRegistry, QueryOptions};
use discovery_core::{CheckSpec, Registration, Registry, ServiceInstance};
use grpc_resolve::DiscoveredChannel;

/// The agent under test and a client for it: the one `CONSUL_HTTP_ADDR` names (with the
/// other `CONSUL_*` variables), else a fresh in-process consul-dev, which the caller keeps
/// alive for the test. The client shares nothing with other clients of equal settings:
/// each test has a runtime of its own, and a transport shared with a test that has ended
/// would have lost its connections with that test's runtime.
async fn agent() -> (Option<consul_dev::DevAgent>, Client) {
    if std::env::var("CONSUL_HTTP_ADDR").is_ok_and(|a| !a.is_empty()) {
        let config = Config::from_env().expect("CONSUL_HTTP_ADDR is usable");
        return (
            None,
            Client::new(config.shared(false)).expect("a consul client"),
        );
    }
    let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("consul-dev starts");
    let client = Client::new(Config::new(&agent.http_addr()).expect("a consul config"))
        .expect("a consul client");
    (Some(agent), client)
}

/// A service name no other test, process or earlier run on a shared agent uses.
fn unique_service(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `instance` as an instance of `service`, its id prefixed with the service's name.
fn of(service: &str, mut instance: ServiceInstance) -> ServiceInstance {
    instance.id = format!("{service}-{}", instance.id);
    instance.service = service.to_owned();
    instance
}

/// Registrations and deregistrations in all.
const CHANGES: usize = 1_000;
/// Instance ids the changes draw from: each change registers an absent id or deregisters a
/// present one.
const IDS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_channel_applies_1000_consul_changes_and_matches_consul() {
    let (_agent, client) = agent().await;
    let service = unique_service("churn");
    let registry = ConsulRegistry::new(client.clone());
    let backends = [Backend::start().await, Backend::start().await];
    let channel = DiscoveredChannel::builder(registry, &service).build();

    // Endpoints need not be ready for the set to match, so most instances point at a port
    // nothing listens on and the rest at the two live backends.
    let mut rng = fastrand::Rng::with_seed(1_000);
    let mut registered = BTreeSet::new();
    for _ in 0..CHANGES {
        let id = format!("{service}-i{:03}", rng.usize(0..IDS));
        if registered.remove(&id) {
            client
                .agent()
                .deregister_service(&id)
                .await
                .expect("deregister");
            continue;
        }
        let mut instance = match rng.usize(0..4) {
            0 => backends[0].instance(&id),
            1 => backends[1].instance(&id),
            _ => dead_instance(&id),
        };
        instance.service = service.clone();
        let mut registration = consul_api::to_service_registration(
            &Registration::new(instance).check(CheckSpec::ttl(Duration::from_secs(600))),
        );
        // Passing from the start: one request per change instead of register-then-report.
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
        registered.insert(id);
    }

    let (entries, _) = client
        .health()
        .service(&service, &QueryOptions::default().passing(true))
        .await
        .expect("consul answers");
    let mut in_consul: Vec<String> = entries.iter().map(|e| e.service.id.clone()).collect();
    in_consul.sort();
    assert_eq!(
        in_consul,
        registered.iter().cloned().collect::<Vec<_>>(),
        "expected consul to list as passing exactly the instances still registered"
    );
    assert!(
        !in_consul.is_empty(),
        "the seed leaves some instances registered"
    );

    // A ready endpoint dropped while few others were ready may linger as the shrink guard's
    // fallback (flagged, and gone after its hold); the listed ones are Consul's set.
    let endpoints = settle(channel.wait_for(|eps| {
        eps.iter()
            .filter(|e| !e.fallback)
            .map(|e| e.id.as_str())
            .eq(in_consul.iter().map(String::as_str))
    }))
    .await;
    println!(
        "after {CHANGES} consul changes: {} endpoints, {} discovery updates applied",
        endpoints.len(),
        channel.stats().updates
    );
    let stats = channel.stats();
    assert_eq!(stats.calls, 0, "expected no call to be needed: {stats:?}");
    assert_eq!(
        backends.iter().map(Backend::calls).sum::<usize>(),
        0,
        "expected no call to reach a backend"
    );
    for id in &registered {
        client
            .agent()
            .deregister_service(id)
            .await
            .expect("deregister");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_registered_in_consul_steers_calls_to_the_preferred_locality() {
    let (_agent, client) = agent().await;
    let service = unique_service("zones");
    let registry = ConsulRegistry::new(client);
    let near = Backend::start().await;
    let far = Backend::start().await;
    for (backend, id, zone) in [(&near, "near", "zone-b"), (&far, "far", "zone-a")] {
        let mut instance = of(&service, backend.instance(id));
        instance.locality = Some(zone.to_owned());
        registry
            .register(&Registration::new(instance))
            .await
            .expect("register");
    }
    let channel = DiscoveredChannel::builder(registry.clone(), &service)
        .prefer_locality("zone-b")
        .build();
    let endpoints =
        settle(channel.wait_for(|eps| eps.len() == 2 && eps.iter().all(|e| e.ready))).await;
    let zones: Vec<_> = endpoints
        .iter()
        .map(|e| (e.id.as_str(), e.locality.as_deref()))
        .collect();
    let (far_id, near_id) = (format!("{service}-far"), format!("{service}-near"));
    assert_eq!(
        zones,
        [
            (far_id.as_str(), Some("zone-a")),
            (near_id.as_str(), Some("zone-b"))
        ],
        "expected each instance's zone to come back from Consul"
    );
    for _ in 0..100 {
        check(&channel).await.expect("near serves");
    }
    assert_eq!(near.calls(), 100, "expected every call in zone-b");
    assert_eq!(far.calls(), 0, "expected no call to leave zone-b");
    for id in [&far_id, &near_id] {
        registry.deregister(id).await.expect("deregister");
    }
}
