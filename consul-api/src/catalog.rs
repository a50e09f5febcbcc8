//! `/v1/catalog/...`: the cluster-wide registry of nodes and services, reached with
//! [`Client::catalog`]. Uses the client and the shared wire types; no other endpoint family.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{Client, QueryMeta, QueryOptions, escape};
use crate::error::Error;
use crate::types::{AgentService, CheckStatus, Meta, Node, ServiceAddress, Weights, nullable};

/// One instance as `GET /v1/catalog/service/:name` lists it: node and service fields flat.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct CatalogService {
    /// Node UUID.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Datacenter.
    #[serde(default)]
    pub datacenter: String,
    /// Node tagged addresses.
    #[serde(default, deserialize_with = "nullable")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(default, deserialize_with = "nullable")]
    pub node_meta: Meta,
    /// Service ID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// Service address; empty means the node's.
    #[serde(default)]
    pub service_address: String,
    /// Service tagged addresses.
    #[serde(default, deserialize_with = "nullable")]
    pub service_tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Service tags.
    #[serde(default, deserialize_with = "nullable")]
    pub service_tags: Vec<String>,
    /// Service metadata.
    #[serde(default, deserialize_with = "nullable")]
    pub service_meta: Meta,
    /// Service port.
    #[serde(default)]
    pub service_port: u16,
    /// Service weights.
    #[serde(default)]
    pub service_weights: Weights,
    /// Whether anti-entropy may overwrite tags.
    #[serde(default)]
    pub service_enable_tag_override: bool,
    /// Raft index at creation.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(default)]
    pub modify_index: u64,
}

impl CatalogService {
    /// The address to dial: the service's own, else its node's.
    pub fn dial_address(&self) -> &str {
        if self.service_address.is_empty() {
            &self.address
        } else {
            &self.service_address
        }
    }
}

/// A node with its services, from `GET /v1/catalog/node/:node`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct CatalogNode {
    /// The node.
    pub node: Node,
    /// Its services by ID.
    #[serde(default, deserialize_with = "nullable")]
    pub services: BTreeMap<String, AgentService>,
}

/// The body of `PUT /v1/catalog/register`: a node, optionally with a service and checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct CatalogRegistration {
    /// Node UUID.
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Node name.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Datacenter; the agent's when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// Node metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_meta: Meta,
    /// A service on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<CatalogServiceDefinition>,
    /// Checks on the node or service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CatalogCheck>,
    /// Keep the node's existing health info.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skip_node_update: bool,
}

impl CatalogRegistration {
    /// A registration of node `node` at `address`.
    pub fn new(node: impl Into<String>, address: impl Into<String>) -> Self {
        CatalogRegistration {
            node: node.into(),
            address: address.into(),
            ..Default::default()
        }
    }
}

/// A service inside a catalog registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct CatalogServiceDefinition {
    /// Service ID.
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Service name.
    pub service: String,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: Meta,
}

impl CatalogServiceDefinition {
    /// A service named `service`.
    pub fn new(service: impl Into<String>) -> Self {
        CatalogServiceDefinition {
            service: service.into(),
            ..Default::default()
        }
    }
}

/// A check inside a catalog registration (its status is set, not run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct CatalogCheck {
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Name.
    pub name: String,
    /// Status.
    pub status: String,
    /// The service the check belongs to; empty for a node check.
    #[serde(rename = "ServiceID", skip_serializing_if = "String::is_empty")]
    pub service_id: String,
    /// Output.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
}

impl CatalogCheck {
    /// A check with an ID, name and status.
    pub fn new(check_id: impl Into<String>, name: impl Into<String>, status: CheckStatus) -> Self {
        CatalogCheck {
            check_id: check_id.into(),
            name: name.into(),
            status: status.as_str().to_owned(),
            ..Default::default()
        }
    }
}

/// The body of `PUT /v1/catalog/deregister`: a node, or one of its services or checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct CatalogDeregistration {
    /// Node name.
    pub node: String,
    /// Datacenter; the agent's when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// Remove only this service.
    #[serde(rename = "ServiceID", skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// Remove only this check.
    #[serde(rename = "CheckID", skip_serializing_if = "Option::is_none")]
    pub check_id: Option<String>,
}

impl CatalogDeregistration {
    /// Removes node `node` with everything on it.
    pub fn node(node: impl Into<String>) -> Self {
        CatalogDeregistration {
            node: node.into(),
            ..Default::default()
        }
    }

    /// Removes one service of `node`.
    pub fn service(node: impl Into<String>, service_id: impl Into<String>) -> Self {
        CatalogDeregistration {
            node: node.into(),
            service_id: Some(service_id.into()),
            ..Default::default()
        }
    }

    /// Removes one check of `node`.
    pub fn check(node: impl Into<String>, check_id: impl Into<String>) -> Self {
        CatalogDeregistration {
            node: node.into(),
            check_id: Some(check_id.into()),
            ..Default::default()
        }
    }
}

/// The catalog endpoints, from [`Client::catalog`].
#[derive(Debug, Clone, Copy)]
pub struct Catalog<'a> {
    client: &'a Client,
}

// === impl Client ===

impl Client {
    /// The catalog endpoints (`/v1/catalog/...`).
    pub fn catalog(&self) -> Catalog<'_> {
        Catalog { client: self }
    }
}

// === impl Catalog ===

impl Catalog<'_> {
    /// `GET /v1/catalog/services`: every service name with its tags.
    pub async fn services(
        &self,
        opts: &QueryOptions,
    ) -> Result<(BTreeMap<String, Vec<String>>, QueryMeta), Error> {
        let (services, meta): (BTreeMap<String, Option<Vec<String>>>, QueryMeta) =
            self.client.get("/v1/catalog/services", opts).await?;
        let services = services
            .into_iter()
            .map(|(name, tags)| (name, tags.unwrap_or_default()))
            .collect();
        Ok((services, meta))
    }

    /// `GET /v1/catalog/service/:name`: the instances of a service, whatever their health.
    pub async fn service(
        &self,
        service: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<CatalogService>, QueryMeta), Error> {
        let path = format!("/v1/catalog/service/{}", escape(service));
        let (list, meta): (Option<Vec<CatalogService>>, QueryMeta) =
            self.client.get(&path, opts).await?;
        Ok((list.unwrap_or_default(), meta))
    }

    /// `GET /v1/catalog/nodes`.
    pub async fn nodes(&self, opts: &QueryOptions) -> Result<(Vec<Node>, QueryMeta), Error> {
        let (list, meta): (Option<Vec<Node>>, QueryMeta) =
            self.client.get("/v1/catalog/nodes", opts).await?;
        Ok((list.unwrap_or_default(), meta))
    }

    /// `GET /v1/catalog/node/:node`: `None` when the node is unknown.
    pub async fn node(
        &self,
        node: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<CatalogNode>, QueryMeta), Error> {
        let path = format!("/v1/catalog/node/{}", escape(node));
        self.client.get(&path, opts).await
    }

    /// `GET /v1/catalog/datacenters`.
    pub async fn datacenters(&self) -> Result<Vec<String>, Error> {
        let (list, _) = self
            .client
            .get("/v1/catalog/datacenters", &QueryOptions::default())
            .await?;
        Ok(list)
    }

    /// `PUT /v1/catalog/register`.
    pub async fn register(&self, registration: &CatalogRegistration) -> Result<(), Error> {
        self.client
            .put("/v1/catalog/register", &[], Some(registration))
            .await
            .map(drop)
    }

    /// `PUT /v1/catalog/deregister`.
    pub async fn deregister(&self, deregistration: &CatalogDeregistration) -> Result<(), Error> {
        self.client
            .put("/v1/catalog/deregister", &[], Some(deregistration))
            .await
            .map(drop)
    }
}
