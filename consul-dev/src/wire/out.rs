//! Response shapes: the JSON Consul answers with (`*Out`), each rendered from `state`'s
//! model. Uses `go` (durations as Go prints them) and the model.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::go::{go_duration, nanos_to_duration};
use crate::state::{Check, Node, Service, TaggedAddr, Weights};

/// Output of a check as `/v1/agent/checks` and the health endpoints show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckOut {
    pub(crate) node: String,
    #[serde(rename = "CheckID")]
    pub(crate) check_id: String,
    pub(crate) name: String,
    pub(crate) status: &'static str,
    pub(crate) notes: String,
    pub(crate) output: String,
    #[serde(rename = "ServiceID")]
    pub(crate) service_id: String,
    pub(crate) service_name: String,
    pub(crate) service_tags: Vec<String>,
    pub(crate) r#type: String,
    pub(crate) interval: String,
    pub(crate) timeout: String,
    pub(crate) exposed_port: u16,
    pub(crate) definition: Value,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

impl CheckOut {
    /// Renders a stored check.
    pub(crate) fn from_check(c: &Check) -> CheckOut {
        let mut def = serde_json::Map::new();
        if let Some(d) = &c.spec {
            let mut put = |k: &str, v: &str| {
                if !v.is_empty() {
                    def.insert(k.to_owned(), Value::String(v.to_owned()));
                }
            };
            put("HTTP", &d.http);
            put("Method", &d.method);
            put("TCP", &d.tcp);
            put("UDP", &d.udp);
            put("GRPC", &d.grpc);
            put("H2PING", &d.h2ping);
            for (k, n) in [
                ("Interval", d.interval),
                ("Timeout", d.timeout),
                ("TTL", d.ttl),
                (
                    "DeregisterCriticalServiceAfter",
                    d.deregister_critical_service_after,
                ),
            ] {
                if n > 0 {
                    def.insert(
                        k.to_owned(),
                        Value::String(go_duration(nanos_to_duration(n))),
                    );
                }
            }
        }
        let dur = |d: Option<Duration>| d.map(go_duration).unwrap_or_default();
        CheckOut {
            node: c.node.clone(),
            check_id: c.check_id.clone(),
            name: c.name.clone(),
            status: c.status.as_str(),
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: c.service_name.clone(),
            service_tags: c.service_tags.clone(),
            r#type: c.kind.clone(),
            interval: dur(c.interval),
            timeout: dur(c.timeout),
            exposed_port: 0,
            definition: Value::Object(def),
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

/// A service as the agent endpoints show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentServiceOut {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) kind: String,
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) tags: Vec<String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) port: i64,
    pub(crate) address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) socket_path: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) tagged_addresses: BTreeMap<String, TaggedAddr>,
    pub(crate) weights: Weights,
    pub(crate) enable_tag_override: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) locality: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content_hash: Option<String>,
    pub(crate) datacenter: String,
}

impl AgentServiceOut {
    /// Renders a stored service.
    pub(crate) fn from_service(s: &Service, dc: &str) -> AgentServiceOut {
        AgentServiceOut {
            kind: s.kind.clone(),
            id: s.id.clone(),
            service: s.name.clone(),
            tags: s.tags.clone(),
            meta: s.meta.clone(),
            port: s.port,
            address: s.address.clone(),
            socket_path: s.socket_path.clone(),
            tagged_addresses: s.tagged_addresses.clone(),
            weights: s.weights,
            enable_tag_override: s.enable_tag_override,
            locality: s.locality.clone(),
            content_hash: None,
            datacenter: dc.to_owned(),
        }
    }
}

/// A node as the health and catalog endpoints show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NodeOut {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) node: String,
    pub(crate) address: String,
    pub(crate) datacenter: String,
    pub(crate) tagged_addresses: BTreeMap<String, String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

impl NodeOut {
    /// Renders a stored node.
    pub(crate) fn from_node(n: &Node) -> NodeOut {
        NodeOut {
            id: n.id.clone(),
            node: n.name.clone(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            meta: n.meta.clone(),
            create_index: n.create_index,
            modify_index: n.modify_index,
        }
    }
}

fn is_zero(p: &i64) -> bool {
    *p == 0
}

/// A service as `/v1/health/service` shows it (Consul's `NodeService`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NodeServiceOut {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) kind: String,
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) tags: Vec<String>,
    pub(crate) address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) tagged_addresses: BTreeMap<String, TaggedAddr>,
    pub(crate) meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) socket_path: String,
    pub(crate) weights: Weights,
    pub(crate) enable_tag_override: bool,
    pub(crate) proxy: Value,
    pub(crate) connect: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) locality: Option<Value>,
    pub(crate) peer_name: String,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// The empty proxy object Consul prints for non-proxy services.
fn empty_proxy() -> Value {
    serde_json::json!({"Mode": "", "MeshGateway": {}, "Expose": {}})
}

impl NodeServiceOut {
    /// Renders a stored service.
    pub(crate) fn from_service(s: &Service) -> NodeServiceOut {
        NodeServiceOut {
            kind: s.kind.clone(),
            id: s.id.clone(),
            service: s.name.clone(),
            tags: s.tags.clone(),
            address: s.address.clone(),
            tagged_addresses: s.tagged_addresses.clone(),
            meta: s.meta.clone(),
            port: s.port,
            socket_path: s.socket_path.clone(),
            weights: s.weights,
            enable_tag_override: s.enable_tag_override,
            proxy: empty_proxy(),
            connect: Value::Object(serde_json::Map::new()),
            locality: s.locality.clone(),
            peer_name: String::new(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// One `/v1/health/service` entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceEntryOut {
    pub(crate) node: NodeOut,
    pub(crate) service: NodeServiceOut,
    pub(crate) checks: Vec<CheckOut>,
}

/// One local instance with its aggregated status, as `/v1/agent/health/service/*` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentHealthOut {
    pub(crate) aggregated_status: &'static str,
    pub(crate) service: AgentServiceOut,
    pub(crate) checks: Vec<CheckOut>,
}

// === Catalog ===

/// One flat `/v1/catalog/service` entry (Consul's `ServiceNode`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceNodeOut {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: BTreeMap<String, String>,
    node_meta: BTreeMap<String, String>,
    service_kind: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    service_tags: Vec<String>,
    service_address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    service_tagged_addresses: BTreeMap<String, TaggedAddr>,
    service_weights: Weights,
    service_meta: BTreeMap<String, String>,
    service_port: i64,
    service_socket_path: String,
    service_enable_tag_override: bool,
    service_proxy: Value,
    service_connect: Value,
    service_peer_name: String,
    create_index: u64,
    modify_index: u64,
}

impl ServiceNodeOut {
    /// Renders a stored service on its node.
    pub(crate) fn from_service(n: &Node, s: &Service) -> ServiceNodeOut {
        ServiceNodeOut {
            id: n.id.clone(),
            node: n.name.clone(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            node_meta: n.meta.clone(),
            service_kind: s.kind.clone(),
            service_id: s.id.clone(),
            service_name: s.name.clone(),
            service_tags: s.tags.clone(),
            service_address: s.address.clone(),
            service_tagged_addresses: s.tagged_addresses.clone(),
            service_weights: s.weights,
            service_meta: s.meta.clone(),
            service_port: s.port,
            service_socket_path: s.socket_path.clone(),
            service_enable_tag_override: s.enable_tag_override,
            service_proxy: empty_proxy(),
            service_connect: Value::Object(serde_json::Map::new()),
            service_peer_name: String::new(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// A node with its services, as `/v1/catalog/node/:node` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NodeServicesOut {
    pub(crate) node: NodeOut,
    pub(crate) services: BTreeMap<String, NodeServiceOut>,
}
