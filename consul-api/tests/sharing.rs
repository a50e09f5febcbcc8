//! Sharing by default: registries built independently from the environment in one process
//! share one transport, one hub and one blocking query per service; nothing is left behind
//! once they are gone. Against consul-dev, or a real Consul when `CONSUL_HTTP_ADDR` is set
//! (the count of blocked queries at the agent is consul-dev's and checked only there).

mod common;

use std::time::Duration;

use consul_api::agent::{CheckDefinition, ServiceRegistration};
use consul_api::{CheckStatus, Client, Config, ConsulRegistry};
use discovery_core::{Query, Resolver, Update, UpdateStream};
use futures_util::StreamExt;

async fn register(client: &Client, name: &str, id: &str, port: u16) {
    let mut reg = ServiceRegistration::new(name);
    reg.id = Some(id.to_owned());
    reg.address = Some("127.0.0.1".into());
    reg.port = Some(port);
    let mut check = CheckDefinition::ttl(Duration::from_secs(60));
    check.status = Some(CheckStatus::Passing);
    reg.check = Some(check);
    client.agent().register_service(&reg).await.unwrap();
}

async fn ids(updates: &mut UpdateStream) -> Vec<String> {
    match tokio::time::timeout(Duration::from_secs(10), updates.next()).await {
        Ok(Some(Update::Snapshot(s))) => s.into_iter().map(|i| i.id).collect(),
        other => panic!("expected a snapshot within 10 s, got {other:?}"),
    }
}

/// What `Config::from_env` reads, for the agent under test.
fn environment(agent: &common::Agent) -> impl Fn(&str) -> Option<String> + Clone + use<> {
    let addr = agent.config.address.to_string();
    let real = common::real_consul();
    move |name: &str| {
        if real {
            std::env::var(name).ok()
        } else {
            (name == "CONSUL_HTTP_ADDR").then(|| addr.clone())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_registries_built_from_the_environment_make_one_blocking_query() {
    let agent = common::agent().await;
    let name = common::unique("shared");
    register(&agent.client, &name, &format!("{name}-1"), 7001).await;
    let env = environment(&agent);
    let registries: Vec<ConsulRegistry> = (0..100)
        .map(|_| {
            let config = Config::from_lookup(env.clone()).expect("the environment is usable");
            ConsulRegistry::new(Client::new(config).expect("a client"))
        })
        .collect();
    let mut streams: Vec<UpdateStream> = registries
        .iter()
        .map(|r| r.watch(&Query::new(&name)))
        .collect();
    for s in &mut streams {
        assert_eq!(ids(s).await, [format!("{name}-1")]);
    }
    for r in &registries[1..] {
        assert!(
            r.client().shares_transport_with(registries[0].client()),
            "equal settings share one transport"
        );
    }
    let hub = registries[0].watch_hub();
    assert_eq!(hub.active_loops(), 1, "one loop for the hundred watches");
    if let Some(dev) = &agent.dev {
        dev.wait_for_blocked_queries(1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            dev.blocked_queries(),
            1,
            "the agent holds one blocking query, not a hundred"
        );
    }
    assert!(
        hub.requests_sent() <= 3,
        "a read and a blocking query, not a hundred of each: {}",
        hub.requests_sent()
    );

    register(&agent.client, &name, &format!("{name}-2"), 7002).await;
    for s in &mut streams {
        assert_eq!(
            ids(s).await,
            [format!("{name}-1"), format!("{name}-2")],
            "every subscriber follows the change"
        );
    }

    drop(streams);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.active_loops() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loop stops when nobody watches"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop((hub, registries));
    let fresh = ConsulRegistry::new(Client::new(Config::from_lookup(&env).unwrap()).unwrap());
    assert_eq!(
        fresh.watch_hub().requests_sent(),
        0,
        "with its last user gone the hub was dropped: a new one starts from nothing"
    );
    assert!(
        fresh.client().shares_transport_with(&agent.client),
        "the transport lives on while a client with equal settings does"
    );
}

#[tokio::test]
async fn different_credentials_or_a_private_transport_do_not_share() {
    let base = Config::new("127.0.0.1:8500").unwrap();
    let a = Client::new(base.clone().token("a")).unwrap();
    let b = Client::new(base.clone().token("b")).unwrap();
    let a2 = Client::new(base.clone().token("a")).unwrap();
    assert!(
        a.shares_transport_with(&a2),
        "same agent, same token: shared"
    );
    assert!(
        !a.shares_transport_with(&b),
        "another token is another identity"
    );
    let private = Client::new(base.clone().token("a").shared(false)).unwrap();
    assert!(
        !a.shares_transport_with(&private),
        "shared(false) keeps its own"
    );
    let other_ns = Client::new(base.token("a").namespace("team-b")).unwrap();
    assert!(!a.shares_transport_with(&other_ns), "another namespace");
}
