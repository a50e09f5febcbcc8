//! "No such service" and "no matching instance" told apart: Consul's health endpoint says
//! `[]` for both, the watch asks the catalog, and says `DoesNotExist` only for a service the
//! catalog does not know. Against consul-dev, or a real Consul named by `CONSUL_HTTP_ADDR`.

mod common;

use std::time::Duration;

use consul_api::ConsulRegistry;
use consul_api::agent::{CheckDefinition, ServiceRegistration};
use discovery_core::{Query, Resolver, Update, UpdateStream};
use futures_util::StreamExt;

async fn next(updates: &mut UpdateStream) -> Update {
    tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .expect("an update within 10 s")
        .expect("watch streams never end")
}

#[tokio::test]
async fn a_typo_an_all_critical_service_and_a_tag_nobody_has_are_told_apart() {
    let agent = common::agent().await;
    let registry = ConsulRegistry::new(agent.client.clone());
    let name = common::unique("exists");
    let mut reg = ServiceRegistration::new(&name);
    reg.id = Some(format!("{name}-1"));
    reg.port = Some(7000);
    // A TTL check starts critical: the service exists, no instance passes.
    reg.check = Some(CheckDefinition::ttl(Duration::from_secs(60)));
    agent.client.agent().register_service(&reg).await.unwrap();

    let mut typo = registry.watch(&Query::new(format!("{name}-typo")));
    assert!(
        matches!(next(&mut typo).await, Update::DoesNotExist),
        "a service the catalog does not know does not exist"
    );
    let mut critical = registry.watch(&Query::new(&name));
    match next(&mut critical).await {
        Update::Snapshot(s) => assert!(s.is_empty(), "{s:?}"),
        other => {
            panic!("an existing service with no passing instance is an empty set, got {other:?}")
        }
    }
    let mut tagged = registry.watch(&Query::new(&name).passing_only(false).tag("nobody-has-it"));
    match next(&mut tagged).await {
        Update::Snapshot(s) => assert!(s.is_empty(), "{s:?}"),
        other => panic!("a tag no instance carries is an empty set, got {other:?}"),
    }
}
