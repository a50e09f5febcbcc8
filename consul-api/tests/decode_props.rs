//! Decoding arbitrary input never panics: it yields a value or a decode error.

use std::collections::BTreeMap;

use consul_api::HealthCheck;
use consul_api::agent::AgentService;
use consul_api::health::ServiceEntry;
use proptest::prelude::*;

/// Arbitrary JSON values, nested a few levels, with Consul-ish keys mixed in.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("ID".to_owned()),
        Just("Service".to_owned()),
        Just("Node".to_owned()),
        Just("Address".to_owned()),
        Just("Port".to_owned()),
        Just("Tags".to_owned()),
        Just("Checks".to_owned()),
        Just("Status".to_owned()),
        Just("Weights".to_owned()),
        "[A-Za-z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn health_entries_never_panic(value in json()) {
        let _ = serde_json::from_value::<Vec<ServiceEntry>>(value.clone());
        let _ = serde_json::from_value::<ServiceEntry>(value);
    }

    #[test]
    fn agent_maps_never_panic(value in json()) {
        let _ = serde_json::from_value::<BTreeMap<String, AgentService>>(value.clone());
        let _ = serde_json::from_value::<BTreeMap<String, HealthCheck>>(value);
    }

    #[test]
    fn raw_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<Vec<ServiceEntry>>(&bytes);
    }
}
