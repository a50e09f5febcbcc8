//! Golden JSON from Consul's API documentation decodes into the client's types.

use std::collections::BTreeMap;

use consul_api::agent::AgentService;
use consul_api::health::ServiceEntry;
use consul_api::{CheckStatus, HealthCheck, to_instance};
use discovery_core::HealthStatus;

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} decodes: {e}"))
}

#[test]
fn health_service_entry_from_the_docs() {
    let entries: Vec<ServiceEntry> = fixture("health_service.json");
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.node.node, "foobar");
    assert_eq!(entry.service.id, "redis");
    assert_eq!(entry.service.port, 8000);
    assert_eq!(entry.service.weights.passing, 10);
    assert_eq!(
        entry.service.tagged_addresses["wan"].address, "198.18.1.2",
        "lowercase keys inside TaggedAddresses decode, as Consul's decoder is case-insensitive"
    );
    assert_eq!(entry.checks.len(), 2);
    assert_eq!(entry.checks[1].check_id, "serfHealth");
    assert_eq!(entry.aggregated_status(), CheckStatus::Passing);

    let instance = to_instance(entry);
    assert_eq!(instance.authority(), "10.1.10.12:8000");
    assert_eq!(instance.weights.passing, 10);
    assert_eq!(instance.status, HealthStatus::Passing);
    assert_eq!(instance.node.as_deref(), Some("foobar"));
    assert_eq!(instance.meta["redis_version"], "4.0");
}

#[test]
fn agent_services_from_the_docs() {
    let services: BTreeMap<String, AgentService> = fixture("agent_services.json");
    let redis = &services["redis"];
    assert_eq!(redis.address, "", "no service address: dial the node's");
    assert_eq!(redis.tagged_addresses["lan"].port, 8000);
    assert!(!redis.enable_tag_override);
}

#[test]
fn agent_checks_from_the_docs() {
    let checks: BTreeMap<String, HealthCheck> = fixture("agent_checks.json");
    let check = &checks["service:redis"];
    assert_eq!(check.status, CheckStatus::Passing);
    assert_eq!(check.service_tags, ["primary"]);
}

#[test]
fn node_address_is_dialled_when_the_service_has_none() {
    let mut entries: Vec<ServiceEntry> = fixture("health_service.json");
    let json = serde_json::json!({
        "ID": "redis", "Service": "redis", "Address": "", "Port": 8000
    });
    entries[0].service = serde_json::from_value(json).unwrap();
    assert_eq!(to_instance(&entries[0]).authority(), "10.1.10.12:8000");
}

#[test]
fn unknown_statuses_decode_and_count_as_critical() {
    let check: HealthCheck =
        serde_json::from_str(r#"{"CheckID":"x","Status":"degraded"}"#).unwrap();
    assert_eq!(check.status, CheckStatus::Unknown);
    assert_eq!(HealthStatus::from(check.status), HealthStatus::Critical);
}

#[test]
fn locality_comes_from_the_field_then_service_then_node_meta() {
    let mut entries: Vec<ServiceEntry> = fixture("health_service.json");
    assert_eq!(
        to_instance(&entries[0]).locality,
        None,
        "the docs' entry has no zone"
    );
    let node_zone =
        serde_json::json!({"Node": "n", "Address": "10.0.0.1", "Meta": {"zone": "z-node"}});
    entries[0].node = serde_json::from_value(node_zone).unwrap();
    assert_eq!(to_instance(&entries[0]).locality.as_deref(), Some("z-node"));
    entries[0]
        .service
        .meta
        .insert("zone".into(), "z-meta".into());
    assert_eq!(to_instance(&entries[0]).locality.as_deref(), Some("z-meta"));
    let svc = serde_json::json!({
        "ID": "redis", "Service": "redis", "Port": 1,
        "Locality": {"Region": "eu-west-1", "Zone": "eu-west-1a"}
    });
    entries[0].service = serde_json::from_value(svc).unwrap();
    assert_eq!(
        to_instance(&entries[0]).locality.as_deref(),
        Some("eu-west-1a")
    );
}
