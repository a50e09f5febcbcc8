//! Every endpoint family against a live agent (consul-dev in process, or a real Consul when
//! `CONSUL_HTTP_ADDR` is set).

mod common;

use std::time::Duration;

use consul_api::agent::{CheckDefinition, CheckRegistration, ServiceRegistration};
use consul_api::catalog::{CatalogDeregistration, CatalogRegistration, CatalogServiceDefinition};
use consul_api::{CheckStatus, QueryOptions};

async fn register_ttl(c: &consul_api::Client, name: &str, id: &str, tags: &[&str]) {
    let mut reg = ServiceRegistration::new(name);
    reg.id = Some(id.to_owned());
    reg.port = Some(8000);
    reg.tags = tags.iter().map(|t| t.to_string()).collect();
    reg.check = Some(CheckDefinition::ttl(Duration::from_secs(60)));
    c.agent().register_service(&reg).await.unwrap();
}

#[tokio::test]
async fn catalog_family() {
    let agent = common::agent().await;
    let c = &agent.client;
    let name = common::unique("cat");
    register_ttl(c, &name, &format!("{name}-a"), &["a", "b"]).await;
    register_ttl(c, &name, &format!("{name}-b"), &["a"]).await;

    let (services, meta) = c
        .catalog()
        .services(&QueryOptions::default())
        .await
        .unwrap();
    assert!(
        services.contains_key("consul"),
        "the consul service is listed: {services:?}"
    );
    let mut tags = services[&name].clone();
    tags.sort();
    assert_eq!(tags, ["a", "b"], "unique tags merged over instances");
    assert!(meta.last_index > 0);

    let (list, _) = c
        .catalog()
        .service(&name, &QueryOptions::default().tag("b"))
        .await
        .unwrap();
    assert_eq!(list.len(), 1, "tag filter");
    assert_eq!(list[0].service_id, format!("{name}-a"));
    assert_eq!(list[0].service_port, 8000);
    assert_eq!(
        list[0].dial_address(),
        list[0].address,
        "no service address: the node's"
    );

    let dcs = c.catalog().datacenters().await.unwrap();
    assert!(!dcs.is_empty());

    let node_name = list[0].node.clone();
    let (nodes, _) = c.catalog().nodes(&QueryOptions::default()).await.unwrap();
    assert!(nodes.iter().any(|n| n.node == node_name));
    let (node, _) = c
        .catalog()
        .node(&node_name, &QueryOptions::default())
        .await
        .unwrap();
    let node = node.expect("the agent's node is known");
    assert!(node.services.contains_key(&format!("{name}-a")));

    // A node of our own through the catalog.
    let ext = common::unique("ext-node");
    let mut reg = CatalogRegistration::new(&ext, "10.9.8.7");
    let mut svc = CatalogServiceDefinition::new(format!("{name}-ext"));
    svc.port = Some(5432);
    reg.service = Some(svc);
    c.catalog().register(&reg).await.unwrap();
    let (list, _) = c
        .catalog()
        .service(&format!("{name}-ext"), &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].dial_address(), "10.9.8.7");
    c.catalog()
        .deregister(&CatalogDeregistration::node(&ext))
        .await
        .unwrap();
    let (list, _) = c
        .catalog()
        .service(&format!("{name}-ext"), &QueryOptions::default())
        .await
        .unwrap();
    assert!(list.is_empty(), "node deregistration removes its services");
    let (gone, _) = c
        .catalog()
        .node(&ext, &QueryOptions::default())
        .await
        .unwrap();
    assert!(gone.is_none(), "an unknown node reads as None");
}

#[tokio::test]
async fn health_family() {
    let agent = common::agent().await;
    let c = &agent.client;
    let name = common::unique("hl");
    let id = format!("{name}-1");
    register_ttl(c, &name, &id, &[]).await;
    let check_id = format!("service:{id}");

    let (checks, _) = c
        .health()
        .checks(&name, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(checks.len(), 1, "the service's own check: {checks:?}");
    assert_eq!(checks[0].check_id, check_id);

    let (critical, _) = c
        .health()
        .state(Some(CheckStatus::Critical), &QueryOptions::default())
        .await
        .unwrap();
    assert!(
        critical.iter().any(|k| k.check_id == check_id),
        "new checks are critical"
    );
    c.agent().pass_ttl(&check_id, "").await.unwrap();
    let (passing, _) = c
        .health()
        .state(Some(CheckStatus::Passing), &QueryOptions::default())
        .await
        .unwrap();
    assert!(passing.iter().any(|k| k.check_id == check_id));
    assert!(
        passing.iter().any(|k| k.check_id == "serfHealth"),
        "node checks are listed too"
    );
    let (any, _) = c
        .health()
        .state(None, &QueryOptions::default())
        .await
        .unwrap();
    assert!(any.len() >= passing.len());

    let node = checks[0].node.clone();
    let (on_node, _) = c
        .health()
        .node(&node, &QueryOptions::default())
        .await
        .unwrap();
    assert!(on_node.iter().any(|k| k.check_id == check_id));
}

#[tokio::test]
async fn agent_family() {
    let agent = common::agent().await;
    let c = &agent.client;
    let name = common::unique("ag");
    let id = format!("{name}-1");
    register_ttl(c, &name, &id, &["x"]).await;

    let (svc, meta) = c
        .agent()
        .service(&id, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(svc.service.id, id);
    assert!(!svc.content_hash.is_empty());
    assert_eq!(
        meta.content_hash.as_deref(),
        Some(svc.content_hash.as_str()),
        "header = body hash"
    );

    // Hash blocking returns early when the definition changes.
    let waiter = {
        let c = c.clone();
        let (id, hash) = (id.clone(), svc.content_hash.clone());
        tokio::spawn(async move {
            let opts = QueryOptions::blocking_hash(hash, Duration::from_secs(30));
            c.agent().service(&id, &opts).await
        })
    };
    register_ttl(c, &name, &id, &["x", "y"]).await;
    let (changed, _) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("hash blocking wakes on change")
        .unwrap()
        .unwrap();
    assert_ne!(changed.content_hash, svc.content_hash);
    assert_eq!(changed.service.tags, ["x", "y"]);

    // A check of its own on the service.
    let mut extra = CheckDefinition::ttl(Duration::from_secs(60));
    extra.check_id = Some(format!("{id}-extra"));
    extra.name = Some("extra".into());
    let reg = CheckRegistration::for_service(&id, extra);
    c.agent().register_check(&reg).await.unwrap();
    assert!(
        c.agent()
            .checks()
            .await
            .unwrap()
            .contains_key(&format!("{id}-extra"))
    );
    c.agent()
        .deregister_check(&format!("{id}-extra"))
        .await
        .unwrap();
    assert!(
        !c.agent()
            .checks()
            .await
            .unwrap()
            .contains_key(&format!("{id}-extra"))
    );

    // Aggregated health, by name and by ID.
    let (status, list) = c
        .agent()
        .health_by_name(&name)
        .await
        .unwrap()
        .expect("known");
    assert_eq!(status, CheckStatus::Critical, "a new TTL check is critical");
    assert_eq!(list.len(), 1);
    c.agent()
        .pass_ttl(&format!("service:{id}"), "")
        .await
        .unwrap();
    let (status, one) = c.agent().health_by_id(&id).await.unwrap().expect("known");
    assert_eq!(status, CheckStatus::Passing);
    assert_eq!(one.service.id, id);
    assert!(
        c.agent()
            .health_by_name("no-such-service-x")
            .await
            .unwrap()
            .is_none()
    );

    // Maintenance mode fails the instance until turned off.
    c.agent()
        .service_maintenance(&id, true, "deploying")
        .await
        .unwrap();
    let (status, _) = c.agent().health_by_id(&id).await.unwrap().unwrap();
    assert_eq!(status, CheckStatus::Maintenance);
    c.agent().service_maintenance(&id, false, "").await.unwrap();
    let (status, _) = c.agent().health_by_id(&id).await.unwrap().unwrap();
    assert_eq!(status, CheckStatus::Passing);

    let me = c.agent().self_info().await.unwrap();
    assert!(!me.config.node_name.is_empty());
    assert!(!me.config.datacenter.is_empty());
    let members = c.agent().members().await.unwrap();
    assert!(members.iter().any(|m| m.name == me.config.node_name));
}

#[tokio::test]
async fn status_family() {
    let agent = common::agent().await;
    let leader = agent.client.status().leader().await.unwrap();
    let peers = agent.client.status().peers().await.unwrap();
    assert!(
        peers.contains(&leader),
        "the leader {leader} is among the peers {peers:?}"
    );
}
