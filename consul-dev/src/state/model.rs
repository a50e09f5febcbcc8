//! The agent's model: nodes, service instances, checks and their statuses, weights and
//! tagged addresses, as the store keeps them. Uses nothing else of the crate: the wire
//! formats are built from it, never the other way round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Consul's default (and our maximum) check output size.
pub(crate) const DEFAULT_OUTPUT_MAX_SIZE: usize = 4096;

/// `(node, id)`: services and checks are keyed by node first, so iteration order matches
/// Consul's (node name, then ID).
pub(crate) type Key = (String, String);

/// A check status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Status {
    Passing,
    Warning,
    Critical,
}

impl Status {
    /// Parses Consul's status words.
    pub(crate) fn parse(s: &str) -> Option<Status> {
        match s {
            "passing" => Some(Status::Passing),
            "warning" => Some(Status::Warning),
            "critical" => Some(Status::Critical),
            _ => None,
        }
    }

    /// The status word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

/// A catalog node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) datacenter: String,
    pub(crate) tagged_addresses: BTreeMap<String, String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// A tagged address: `{Address, Port}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TaggedAddr {
    pub(crate) address: String,
    pub(crate) port: i64,
}

/// Service weights.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Weights {
    pub(crate) passing: i64,
    pub(crate) warning: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// A service instance on a node.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) node: String,
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) address: String,
    pub(crate) tagged_addresses: BTreeMap<String, TaggedAddr>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) port: i64,
    pub(crate) socket_path: String,
    pub(crate) weights: Weights,
    pub(crate) enable_tag_override: bool,
    pub(crate) locality: Option<Value>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// What the agent runs for a check.
#[derive(Debug, Clone)]
pub(crate) enum Runner {
    /// Nothing runs: catalog checks, maintenance checks, unsupported types.
    None,
    Ttl(Duration),
    Http,
    Tcp,
    Grpc,
}

/// What a check probes and on which timings, as registered: kept with the check so that
/// its runner can run it and reads can show its `Definition`. The rest of a registration
/// (IDs, names, thresholds) is copied into the [`Check`] itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckSpec {
    pub(crate) http: String,
    pub(crate) header: BTreeMap<String, Vec<String>>,
    pub(crate) method: String,
    pub(crate) body: String,
    pub(crate) disable_redirects: bool,
    pub(crate) tls_skip_verify: bool,
    pub(crate) tcp: String,
    pub(crate) udp: String,
    pub(crate) grpc: String,
    pub(crate) grpc_use_tls: bool,
    /// The name a TLS check sends and verifies instead of the target's host.
    pub(crate) tls_server_name: String,
    pub(crate) h2ping: String,
    /// Nanoseconds; may be negative as sent.
    pub(crate) interval: i64,
    pub(crate) timeout: i64,
    pub(crate) ttl: i64,
    pub(crate) deregister_critical_service_after: i64,
    pub(crate) output_max_size: i64,
}

/// A health check.
#[derive(Debug)]
pub(crate) struct Check {
    pub(crate) node: String,
    pub(crate) check_id: String,
    pub(crate) name: String,
    pub(crate) status: Status,
    pub(crate) notes: String,
    pub(crate) output: String,
    pub(crate) service_id: String,
    pub(crate) service_name: String,
    pub(crate) service_tags: Vec<String>,
    pub(crate) kind: String,
    pub(crate) interval: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) spec: Option<CheckSpec>,
    pub(crate) runner: Runner,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
    /// Bumped whenever a runner is (re)started, so a stale runner's result is ignored.
    pub(crate) generation: u64,
    pub(crate) successes: i64,
    pub(crate) failures: i64,
    pub(crate) success_before_passing: i64,
    pub(crate) failures_before_warning: i64,
    pub(crate) failures_before_critical: i64,
    pub(crate) output_max_size: usize,
    pub(crate) deregister_after: Option<Duration>,
    pub(crate) critical_since: Option<Instant>,
    pub(crate) ttl_reset: Option<Arc<Notify>>,
}

impl Check {
    /// A check with neutral defaults.
    pub(crate) fn new(node: &str, check_id: &str, name: &str, status: Status) -> Check {
        Check {
            node: node.to_owned(),
            check_id: check_id.to_owned(),
            name: name.to_owned(),
            status,
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            service_name: String::new(),
            service_tags: Vec::new(),
            kind: String::new(),
            interval: None,
            timeout: None,
            spec: None,
            runner: Runner::None,
            create_index: 0,
            modify_index: 0,
            generation: 0,
            successes: 0,
            failures: 0,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            output_max_size: DEFAULT_OUTPUT_MAX_SIZE,
            deregister_after: None,
            critical_since: None,
            ttl_reset: None,
        }
    }
}
