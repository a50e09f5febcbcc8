//! The agent, health and status families against a live agent (consul-dev in process, or a
//! real Consul when `CONSUL_HTTP_ADDR` is set).

mod common;

use std::time::Duration;

use consul_api::agent::{CheckDefinition, ServiceRegistration};
use consul_api::{CheckStatus, ConsulRegistry, QueryOptions};
use discovery_core::{
    CheckSpec, HealthStatus, Query, Registration, Registry, Resolver, ServiceInstance, Update,
};
use futures_util::StreamExt;

fn ttl_service(name: &str, id: &str, port: u16) -> ServiceRegistration {
    let mut reg = ServiceRegistration::new(name);
    reg.id = Some(id.to_owned());
    reg.address = Some("127.0.0.1".into());
    reg.port = Some(port);
    reg.tags = vec!["v1".into()];
    reg.check = Some(CheckDefinition::ttl(Duration::from_secs(30)));
    reg
}

#[tokio::test]
async fn register_pass_list_and_deregister() {
    let agent = common::agent().await;
    let c = &agent.client;
    let name = common::unique("web");
    let id = format!("{name}-1");
    c.agent()
        .register_service(&ttl_service(&name, &id, 8080))
        .await
        .unwrap();

    let services = c.agent().services().await.unwrap();
    let svc = services.get(&id).expect("the service is listed by ID");
    assert_eq!(svc.service, name);
    assert_eq!(svc.port, 8080);
    assert_eq!(svc.tags, ["v1"]);
    assert_eq!(svc.weights.passing, 1, "default weights");

    let check_id = format!("service:{id}");
    let checks = c.agent().checks().await.unwrap();
    assert_eq!(
        checks[&check_id].status,
        CheckStatus::Critical,
        "checks start critical"
    );

    let (entries, _) = c
        .health()
        .service(&name, &QueryOptions::default().passing(true))
        .await
        .unwrap();
    assert!(entries.is_empty(), "critical instances are not passing");

    c.agent().pass_ttl(&check_id, "all good").await.unwrap();
    let (entries, meta) = c
        .health()
        .service(&name, &QueryOptions::default().passing(true))
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].dial_address(), "127.0.0.1");
    assert!(meta.last_index > 0, "X-Consul-Index is never 0");
    assert!(meta.known_leader);
    let check = entries[0]
        .checks
        .iter()
        .find(|k| k.check_id == check_id)
        .unwrap();
    assert_eq!(check.output, "all good");

    c.agent()
        .update_ttl(&check_id, CheckStatus::Warning, "slow")
        .await
        .unwrap();
    assert_eq!(
        c.agent().checks().await.unwrap()[&check_id].status,
        CheckStatus::Warning
    );

    c.agent().deregister_service(&id).await.unwrap();
    assert!(!c.agent().services().await.unwrap().contains_key(&id));
    let err = c.agent().deregister_service(&id).await.unwrap_err();
    assert!(
        err.is_not_found(),
        "a second deregistration is a 404: {err:?}"
    );
    let err = c.agent().pass_ttl(&check_id, "").await.unwrap_err();
    assert!(err.is_not_found(), "its check is gone too: {err:?}");
}

#[tokio::test]
async fn bad_registrations_are_rejected_with_consul_text() {
    let agent = common::agent().await;
    let err = agent
        .client
        .agent()
        .register_service(&ServiceRegistration::new(""))
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));
    assert!(err.to_string().contains("Missing service name"), "{err}");
    assert!(!err.is_retryable());
    let core: discovery_core::Error = err.into();
    assert!(
        matches!(core, discovery_core::Error::Rejected { .. }),
        "{core:?}"
    );
}

#[tokio::test]
async fn blocking_query_wakes_on_change() {
    let agent = common::agent().await;
    let c = agent.client.clone();
    let name = common::unique("api");
    let (entries, meta) = c
        .health()
        .service(&name, &QueryOptions::default())
        .await
        .unwrap();
    assert!(entries.is_empty(), "unknown service: empty list");
    let waiter = {
        let c = c.clone();
        let name = name.clone();
        tokio::spawn(async move {
            c.health()
                .service(
                    &name,
                    &QueryOptions::blocking(meta.last_index, Duration::from_secs(30)),
                )
                .await
        })
    };
    c.agent()
        .register_service(&ttl_service(&name, &format!("{name}-1"), 9000))
        .await
        .unwrap();
    let (entries, after) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the blocked query returns promptly")
        .unwrap()
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert!(after.last_index > meta.last_index, "the index moved");
}

#[tokio::test]
async fn leader_is_an_address() {
    let agent = common::agent().await;
    let leader = agent.client.status().leader().await.unwrap();
    assert!(leader.contains(':'), "leader {leader:?} is host:port");
}

#[tokio::test]
async fn consul_registry_implements_the_core_traits() {
    let agent = common::agent().await;
    let registry = ConsulRegistry::new(agent.client.clone());
    let name = common::unique("adder");
    let mut updates = registry.watch(&Query::new(&name));
    match tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .unwrap()
    {
        Some(Update::DoesNotExist) => {}
        other => panic!("a service the catalog does not know does not exist, got {other:?}"),
    }

    let mut instance = ServiceInstance::new(format!("{name}-1"), &name, "127.0.0.1", 7000)
        .tags(["blue"])
        .weights(discovery_core::Weights {
            passing: 3,
            warning: 1,
        });
    instance.locality = Some("zone-a".into());
    let reg = Registration::new(instance).check(CheckSpec::ttl(Duration::from_secs(30)));
    registry.register(&reg).await.unwrap();
    registry
        .report(&format!("{name}-1"), HealthStatus::Passing, "ok")
        .await
        .unwrap();

    let found = loop {
        match tokio::time::timeout(Duration::from_secs(10), updates.next())
            .await
            .unwrap()
        {
            Some(Update::Snapshot(s)) if !s.is_empty() => break s,
            Some(_) => continue,
            None => panic!("watch ended"),
        }
    };
    assert_eq!(found[0].authority(), "127.0.0.1:7000");
    assert_eq!(
        found[0].weights.passing, 3,
        "Consul Weights carried into the instance"
    );
    assert_eq!(found[0].status, HealthStatus::Passing);
    assert_eq!(found[0].tags, ["blue"]);
    assert_eq!(
        found[0].locality.as_deref(),
        Some("zone-a"),
        "Locality round-trips"
    );

    let resolved = registry
        .resolve(&Query::new(&name).tag("BLUE"))
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1, "tags match case-insensitively");

    registry
        .report(&format!("{name}-1"), HealthStatus::Critical, "down")
        .await
        .unwrap();
    assert!(
        registry
            .resolve(&Query::new(&name))
            .await
            .unwrap()
            .is_empty(),
        "critical is not passing"
    );
    let all = registry
        .resolve(&Query::new(&name).passing_only(false))
        .await
        .unwrap();
    assert_eq!(all[0].status, HealthStatus::Critical);

    let empty = loop {
        match tokio::time::timeout(Duration::from_secs(10), updates.next())
            .await
            .unwrap()
        {
            Some(Update::Snapshot(s)) if s.is_empty() => break s,
            Some(Update::Snapshot(_)) => continue,
            other => panic!("a critical instance leaves an existing, empty service, got {other:?}"),
        }
    };
    assert!(empty.is_empty());

    assert!(registry.is_registered(&format!("{name}-1")).await.unwrap());
    registry.deregister(&format!("{name}-1")).await.unwrap();
    assert!(!registry.is_registered(&format!("{name}-1")).await.unwrap());
    match tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .unwrap()
    {
        Some(Update::DoesNotExist) => {}
        other => panic!("with its last instance gone the service does not exist, got {other:?}"),
    }
    let err = registry
        .report(&format!("{name}-1"), HealthStatus::Passing, "")
        .await
        .unwrap_err();
    assert!(
        err.is_not_found(),
        "reports on a forgotten check say NotFound: {err:?}"
    );
}
