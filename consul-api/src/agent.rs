//! `/v1/agent/...`: the local agent's services and checks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::client::{Client, QueryOptions};
use crate::duration::serde_go_opt;
use crate::types::{CheckStatus, HealthCheck, Meta, ServiceAddress, Weights, nullable};

/// The body of `PUT /v1/agent/service/register`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
#[non_exhaustive]
pub struct ServiceRegistration {
    /// Unique ID on the agent; Consul defaults it to the name.
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The service name.
    pub name: String,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Address to dial; empty means the node's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port to dial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: Meta,
    /// Traffic weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    /// One check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckDefinition>,
    /// More checks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDefinition>,
}

impl ServiceRegistration {
    /// A registration of service `name` with nothing else set.
    pub fn new(name: impl Into<String>) -> Self {
        ServiceRegistration {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// A check definition inside a service registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
#[non_exhaustive]
pub struct CheckDefinition {
    /// Check ID; Consul defaults it to `service:<service id>`.
    #[serde(rename = "CheckID", skip_serializing_if = "Option::is_none")]
    pub check_id: Option<String>,
    /// Name; Consul defaults it to `Service '<name>' check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Initial status; Consul starts checks critical.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<CheckStatus>,
    /// Notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// URL of an HTTP check.
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Method of an HTTP check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `host:port` of a TCP check.
    #[serde(rename = "TCP", skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// `host:port[/service]` of a gRPC check.
    #[serde(rename = "GRPC", skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    /// Use TLS for the gRPC check.
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "std::ops::Not::not")]
    pub grpc_use_tls: bool,
    /// TTL of a TTL check.
    #[serde(
        rename = "TTL",
        with = "serde_go_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
    /// Interval of a check the agent runs.
    #[serde(with = "serde_go_opt", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Deadline of one run.
    #[serde(with = "serde_go_opt", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Remove the service after the check has been critical this long.
    #[serde(with = "serde_go_opt", skip_serializing_if = "Option::is_none")]
    pub deregister_critical_service_after: Option<Duration>,
}

impl CheckDefinition {
    /// A TTL check: the service reports its status at least every `ttl`.
    pub fn ttl(ttl: Duration) -> Self {
        CheckDefinition {
            ttl: Some(ttl),
            ..Default::default()
        }
    }

    /// A gRPC health check against `target` (`host:port[/service]`) every `interval`.
    pub fn grpc(target: impl Into<String>, interval: Duration) -> Self {
        CheckDefinition {
            grpc: Some(target.into()),
            interval: Some(interval),
            ..Default::default()
        }
    }

    /// An HTTP check against `url` every `interval`.
    pub fn http(url: impl Into<String>, interval: Duration) -> Self {
        CheckDefinition {
            http: Some(url.into()),
            interval: Some(interval),
            ..Default::default()
        }
    }

    /// A TCP connect check against `address` every `interval`.
    pub fn tcp(address: impl Into<String>, interval: Duration) -> Self {
        CheckDefinition {
            tcp: Some(address.into()),
            interval: Some(interval),
            ..Default::default()
        }
    }
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
}

/// The agent endpoints, from [`Client::agent`].
#[derive(Debug, Clone, Copy)]
pub struct Agent<'a> {
    client: &'a Client,
}

// === impl Agent ===

impl<'a> Agent<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Agent { client }
    }

    /// `PUT /v1/agent/service/register`: adds or replaces a service on the local agent.
    pub async fn register_service(&self, registration: &ServiceRegistration) -> Result<(), Error> {
        self.client
            .put("/v1/agent/service/register", &[], Some(registration))
            .await
            .map(drop)
    }

    /// `PUT /v1/agent/service/deregister/:id`.
    pub async fn deregister_service(&self, service_id: &str) -> Result<(), Error> {
        let path = format!("/v1/agent/service/deregister/{}", escape(service_id));
        self.client.put::<()>(&path, &[], None).await.map(drop)
    }

    /// `PUT /v1/agent/check/pass/:id`: marks a TTL check passing with a note.
    pub async fn pass_ttl(&self, check_id: &str, note: &str) -> Result<(), Error> {
        self.ttl("pass", check_id, note).await
    }

    /// `PUT /v1/agent/check/warn/:id`.
    pub async fn warn_ttl(&self, check_id: &str, note: &str) -> Result<(), Error> {
        self.ttl("warn", check_id, note).await
    }

    /// `PUT /v1/agent/check/fail/:id`.
    pub async fn fail_ttl(&self, check_id: &str, note: &str) -> Result<(), Error> {
        self.ttl("fail", check_id, note).await
    }

    async fn ttl(&self, verb: &str, check_id: &str, note: &str) -> Result<(), Error> {
        let path = format!("/v1/agent/check/{verb}/{}", escape(check_id));
        self.client
            .put::<()>(&path, &[("note", note)], None)
            .await
            .map(drop)
    }

    /// `PUT /v1/agent/check/update/:id`: sets a TTL check's status and output in one call.
    pub async fn update_ttl(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Update<'a> {
            status: CheckStatus,
            output: &'a str,
        }
        let path = format!("/v1/agent/check/update/{}", escape(check_id));
        self.client
            .put(&path, &[], Some(&Update { status, output }))
            .await
            .map(drop)
    }

    /// `GET /v1/agent/services`: the services registered on this agent, by ID.
    pub async fn services(&self) -> Result<BTreeMap<String, AgentService>, Error> {
        let (services, _) = self
            .client
            .get("/v1/agent/services", &QueryOptions::default())
            .await?;
        Ok(services)
    }

    /// `GET /v1/agent/checks`: the checks on this agent, by check ID.
    pub async fn checks(&self) -> Result<BTreeMap<String, HealthCheck>, Error> {
        let (checks, _) = self
            .client
            .get("/v1/agent/checks", &QueryOptions::default())
            .await?;
        Ok(checks)
    }
}

/// Escapes one path segment.
pub(crate) fn escape(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registration_serializes_to_consul_field_names() {
        let mut reg = ServiceRegistration::new("adder");
        reg.id = Some("adder-1".into());
        reg.port = Some(50051);
        reg.address = Some("10.0.0.5".into());
        reg.check = Some(CheckDefinition {
            grpc: Some("10.0.0.5:50051".into()),
            interval: Some(Duration::from_secs(10)),
            timeout: Some(Duration::from_millis(1500)),
            deregister_critical_service_after: Some(Duration::from_secs(90)),
            ..Default::default()
        });
        let got = serde_json::to_value(&reg).unwrap();
        let want = json!({
            "ID": "adder-1",
            "Name": "adder",
            "Address": "10.0.0.5",
            "Port": 50051,
            "Check": {
                "GRPC": "10.0.0.5:50051",
                "Interval": "10s",
                "Timeout": "1.5s",
                "DeregisterCriticalServiceAfter": "1m30s"
            }
        });
        assert_eq!(got, want);
    }

    #[test]
    fn ttl_check_round_trips() {
        let check = CheckDefinition {
            ttl: Some(Duration::from_secs(15)),
            status: Some(CheckStatus::Passing),
            ..Default::default()
        };
        let text = serde_json::to_string(&check).unwrap();
        assert_eq!(text, r#"{"Status":"passing","TTL":"15s"}"#);
        let back: CheckDefinition = serde_json::from_str(&text).unwrap();
        assert_eq!(back, check);
    }

    #[test]
    fn escape_keeps_ids_in_one_segment() {
        assert_eq!(escape("web 1/x"), "web%201%2Fx");
    }
}
