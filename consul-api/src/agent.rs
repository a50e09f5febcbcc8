//! `/v1/agent/...`: the local agent's services and checks, reached with [`Client::agent`].
//! Uses the client, the shared wire types and Go durations; no other endpoint family.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{Client, QueryMeta, QueryOptions, decode, escape, status_error};
use crate::duration::serde_go_opt;
use crate::error::Error;
pub use crate::types::{AgentService, Locality};
use crate::types::{CheckStatus, HealthCheck, Meta, Weights, nullable};

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
    /// Where the instance runs (Consul 1.17+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
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

/// The body of `PUT /v1/agent/check/register`: a check on its own, for the node or for an
/// existing service.
///
/// Consul decodes this body as its `CheckDefinition`, whose ID field is `ID`, not the
/// `CheckID` of the check embedded in a service registration (Consul's `CheckType`), and it
/// refuses unknown fields; so the check's `check_id` is sent as `ID` here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckRegistration {
    /// The service the check belongs to; `None` for a node check.
    pub service_id: Option<String>,
    /// The check itself; its `name` is required here.
    pub check: CheckDefinition,
}

impl Serialize for CheckRegistration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut fields = match serde_json::to_value(&self.check).map_err(S::Error::custom)? {
            serde_json::Value::Object(fields) => fields,
            _ => return Err(S::Error::custom("a check definition is a JSON object")),
        };
        if let Some(id) = fields.remove("CheckID") {
            fields.insert("ID".to_owned(), id);
        }
        if let Some(service_id) = &self.service_id {
            fields.insert("ServiceID".to_owned(), service_id.clone().into());
        }
        fields.serialize(serializer)
    }
}

impl CheckRegistration {
    /// A check on the existing service `service_id`.
    pub fn for_service(service_id: impl Into<String>, check: CheckDefinition) -> Self {
        CheckRegistration {
            service_id: Some(service_id.into()),
            check,
        }
    }

    /// A check on the node.
    pub fn for_node(check: CheckDefinition) -> Self {
        CheckRegistration {
            service_id: None,
            check,
        }
    }
}

/// A service with its content hash, from `GET /v1/agent/service/:id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct AgentServiceWithHash {
    /// The service.
    #[serde(flatten)]
    pub service: AgentService,
    /// A hash of the definition: pass it back as `QueryOptions::hash` to block for a change.
    #[serde(default)]
    pub content_hash: String,
}

/// One instance with its checks, from the agent's health endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct AgentServiceChecks {
    /// Worst status of the instance's checks (or `maintenance`).
    pub aggregated_status: CheckStatus,
    /// The instance.
    pub service: AgentService,
    /// Its checks.
    #[serde(default, deserialize_with = "nullable")]
    pub checks: Vec<HealthCheck>,
}

/// The local agent's description of itself, from `GET /v1/agent/self`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct AgentSelf {
    /// The agent's configuration summary.
    pub config: AgentConfig,
    /// Everything else the agent reports (`Member`, `Stats`, `Meta`, `DebugConfig`…), as
    /// JSON: its shape varies across Consul versions.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The `Config` part of [`AgentSelf`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct AgentConfig {
    /// The agent's datacenter.
    pub datacenter: String,
    /// The agent's node name.
    pub node_name: String,
    /// The agent's node UUID.
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    /// Whether the agent is a server.
    #[serde(default)]
    pub server: bool,
    /// Consul's version.
    #[serde(default)]
    pub version: String,
}

/// A gossip pool member, from `GET /v1/agent/members`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct AgentMember {
    /// Node name.
    pub name: String,
    /// Address.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Serf tags.
    #[serde(default, deserialize_with = "nullable")]
    pub tags: BTreeMap<String, String>,
    /// Serf status (1 = alive).
    pub status: i64,
}

/// The agent endpoints, from [`Client::agent`].
#[derive(Debug, Clone, Copy)]
pub struct Agent<'a> {
    client: &'a Client,
}

// === impl Client ===

impl Client {
    /// The agent endpoints (`/v1/agent/...`).
    pub fn agent(&self) -> Agent<'_> {
        Agent { client: self }
    }
}

// === impl Agent ===

impl Agent<'_> {
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

    /// `GET /v1/agent/service/:id`: one local service with its content hash; with
    /// `opts.hash` set, blocks until the definition changes or `opts.wait` passes.
    pub async fn service(
        &self,
        service_id: &str,
        opts: &QueryOptions,
    ) -> Result<(AgentServiceWithHash, QueryMeta), Error> {
        let path = format!("/v1/agent/service/{}", escape(service_id));
        self.client.get(&path, opts).await
    }

    /// `PUT /v1/agent/check/register`.
    pub async fn register_check(&self, registration: &CheckRegistration) -> Result<(), Error> {
        self.client
            .put("/v1/agent/check/register", &[], Some(registration))
            .await
            .map(drop)
    }

    /// `PUT /v1/agent/check/deregister/:id`.
    pub async fn deregister_check(&self, check_id: &str) -> Result<(), Error> {
        let path = format!("/v1/agent/check/deregister/{}", escape(check_id));
        self.client.put::<()>(&path, &[], None).await.map(drop)
    }

    /// `PUT /v1/agent/service/maintenance/:id`: puts a service in (or out of) maintenance,
    /// which fails its health until turned off.
    pub async fn service_maintenance(
        &self,
        service_id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), Error> {
        let path = format!("/v1/agent/service/maintenance/{}", escape(service_id));
        let enable = if enable { "true" } else { "false" };
        let mut query = vec![("enable", enable)];
        if !reason.is_empty() {
            query.push(("reason", reason));
        }
        self.client.put::<()>(&path, &query, None).await.map(drop)
    }

    /// `PUT /v1/agent/maintenance`: the same for the whole node.
    pub async fn node_maintenance(&self, enable: bool, reason: &str) -> Result<(), Error> {
        let enable = if enable { "true" } else { "false" };
        let mut query = vec![("enable", enable)];
        if !reason.is_empty() {
            query.push(("reason", reason));
        }
        self.client
            .put::<()>("/v1/agent/maintenance", &query, None)
            .await
            .map(drop)
    }

    /// `GET /v1/agent/health/service/name/:name`: the aggregated health of every local
    /// instance of a service. `Ok(None)` when the agent has no such service.
    pub async fn health_by_name(
        &self,
        service: &str,
    ) -> Result<Option<(CheckStatus, Vec<AgentServiceChecks>)>, Error> {
        let path = format!("/v1/agent/health/service/name/{}", escape(service));
        self.health_view(&path).await
    }

    /// `GET /v1/agent/health/service/id/:id`: the aggregated health of one local instance.
    pub async fn health_by_id(
        &self,
        service_id: &str,
    ) -> Result<Option<(CheckStatus, AgentServiceChecks)>, Error> {
        let path = format!("/v1/agent/health/service/id/{}", escape(service_id));
        // By ID the body is one object, not a list.
        let (status, _, body) = self
            .client
            .get_any_status(&path, &QueryOptions::default())
            .await?;
        match status.as_u16() {
            404 => Ok(None),
            200 | 429 | 503 => {
                let one: AgentServiceChecks = decode(&body)?;
                Ok(Some((one.aggregated_status, one)))
            }
            _ => Err(status_error(status, &body)),
        }
    }

    async fn health_view(
        &self,
        path: &str,
    ) -> Result<Option<(CheckStatus, Vec<AgentServiceChecks>)>, Error> {
        let (status, _, body) = self
            .client
            .get_any_status(path, &QueryOptions::default())
            .await?;
        match status.as_u16() {
            // The agent answers with its verdict in the status code: 200 passing,
            // 429 warning, 503 critical or maintenance; 404 unknown.
            404 => Ok(None),
            200 | 429 | 503 => {
                let list: Vec<AgentServiceChecks> = decode(&body)?;
                let worst = list
                    .iter()
                    .map(|s| s.aggregated_status)
                    .max()
                    .unwrap_or(CheckStatus::Passing);
                Ok(Some((worst, list)))
            }
            _ => Err(status_error(status, &body)),
        }
    }

    /// `GET /v1/agent/self`.
    pub async fn self_info(&self) -> Result<AgentSelf, Error> {
        let (info, _) = self
            .client
            .get("/v1/agent/self", &QueryOptions::default())
            .await?;
        Ok(info)
    }

    /// `GET /v1/agent/members`.
    pub async fn members(&self) -> Result<Vec<AgentMember>, Error> {
        let (members, _): (Option<Vec<AgentMember>>, _) = self
            .client
            .get("/v1/agent/members", &QueryOptions::default())
            .await?;
        Ok(members.unwrap_or_default())
    }
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
    fn a_check_registered_on_its_own_sends_its_id_as_id() {
        let mut check = CheckDefinition::ttl(Duration::from_secs(60));
        check.check_id = Some("web-1-extra".into());
        check.name = Some("extra".into());
        let got = serde_json::to_value(CheckRegistration::for_service("web-1", check)).unwrap();
        let want = json!({
            "ID": "web-1-extra",
            "Name": "extra",
            "ServiceID": "web-1",
            "TTL": "1m0s"
        });
        assert_eq!(
            got, want,
            "Consul's CheckDefinition knows ID, not CheckID (which it refuses with 400)"
        );
        let node = serde_json::to_value(CheckRegistration::for_node(CheckDefinition::ttl(
            Duration::from_secs(5),
        )))
        .unwrap();
        assert_eq!(node, json!({"TTL": "5s"}), "a node check has no ServiceID");
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
}
