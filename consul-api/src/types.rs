//! Wire types shared by several endpoint families: statuses, checks, weights, nodes and
//! agent services. Uses only Go durations and discovery-core's health status.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Reads `null` as the type's default: Go writes empty slices and maps as `null`.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The status of a check, or of an instance aggregated over its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CheckStatus {
    /// The check passes.
    Passing,
    /// The check warns.
    Warning,
    /// The check fails.
    Critical,
    /// Maintenance mode (the agent's aggregate views only).
    Maintenance,
    /// A status this client does not know, from a newer Consul.
    #[serde(other)]
    Unknown,
}

impl CheckStatus {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
            CheckStatus::Maintenance => "maintenance",
            CheckStatus::Unknown => "unknown",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<discovery_core::HealthStatus> for CheckStatus {
    fn from(s: discovery_core::HealthStatus) -> Self {
        match s {
            discovery_core::HealthStatus::Passing => CheckStatus::Passing,
            discovery_core::HealthStatus::Warning => CheckStatus::Warning,
            discovery_core::HealthStatus::Critical => CheckStatus::Critical,
        }
    }
}

impl From<CheckStatus> for discovery_core::HealthStatus {
    fn from(s: CheckStatus) -> Self {
        match s {
            CheckStatus::Passing => discovery_core::HealthStatus::Passing,
            CheckStatus::Warning => discovery_core::HealthStatus::Warning,
            // Maintenance and anything unknown must not receive traffic.
            _ => discovery_core::HealthStatus::Critical,
        }
    }
}

/// Traffic weights of a service instance by health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight while passing.
    pub passing: u32,
    /// Weight while warning.
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// An address and port, as in `TaggedAddresses` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceAddress {
    /// The address.
    #[serde(alias = "address")]
    pub address: String,
    /// The port.
    #[serde(alias = "port")]
    pub port: u16,
}

/// A check as the agent and health endpoints report it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct HealthCheck {
    /// The node the check belongs to.
    #[serde(default)]
    pub node: String,
    /// The check's ID, unique on its node.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: String,
    /// Current status.
    pub status: CheckStatus,
    /// Free-form notes.
    #[serde(default)]
    pub notes: String,
    /// The last output of the check.
    #[serde(default)]
    pub output: String,
    /// The service the check belongs to; empty for node checks.
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    /// The name of that service.
    #[serde(default)]
    pub service_name: String,
    /// The tags of that service.
    #[serde(default, deserialize_with = "nullable")]
    pub service_tags: Vec<String>,
    /// The check type (`ttl`, `http`, `grpc`, `tcp`, `serf`…).
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// How often the agent runs the check (agent views; `None` for TTL and node checks).
    #[serde(default, with = "crate::duration::serde_go_opt")]
    pub interval: Option<std::time::Duration>,
    /// The deadline of one run (agent views).
    #[serde(default, with = "crate::duration::serde_go_opt")]
    pub timeout: Option<std::time::Duration>,
    /// Raft index at creation.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// Free-form string map, as Consul's `Meta` fields.
pub type Meta = BTreeMap<String, String>;

/// A node as the health and catalog endpoints report it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct Node {
    /// The node's UUID.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// The node's name.
    pub node: String,
    /// The node's address: what to dial when a service has none of its own.
    pub address: String,
    /// The node's datacenter.
    #[serde(default)]
    pub datacenter: String,
    /// Tagged addresses (`lan`, `wan`…).
    #[serde(default, deserialize_with = "nullable")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(default, deserialize_with = "nullable")]
    pub meta: Meta,
}

/// A service as `GET /v1/agent/services` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct AgentService {
    /// Unique ID on the agent.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags.
    #[serde(default, deserialize_with = "nullable")]
    pub tags: Vec<String>,
    /// Metadata.
    #[serde(default, deserialize_with = "nullable")]
    pub meta: Meta,
    /// Port (absent when 0).
    #[serde(default)]
    pub port: u16,
    /// Address; empty means the node's.
    #[serde(default)]
    pub address: String,
    /// Tagged addresses (`lan_ipv4`, `wan_ipv4`…).
    #[serde(default, deserialize_with = "nullable")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Weights.
    #[serde(default)]
    pub weights: Weights,
    /// Whether anti-entropy may overwrite tags.
    #[serde(default)]
    pub enable_tag_override: bool,
    /// Datacenter of the agent.
    #[serde(default)]
    pub datacenter: String,
    /// Where the instance runs (Consul 1.17+), for locality-aware routing.
    #[serde(default)]
    pub locality: Option<Locality>,
}

/// A service's `Locality`: the cloud region and zone it runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct Locality {
    /// The region.
    #[serde(default)]
    pub region: String,
    /// The zone within the region.
    #[serde(default)]
    pub zone: String,
}
