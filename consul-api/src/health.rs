//! `/v1/health/...`: instances with their checks, the source of discovery, reached with
//! [`Client::health`]. Uses the client and the shared wire types; no other endpoint family.

use serde::Deserialize;

use crate::client::{Client, QueryMeta, QueryOptions, escape};
use crate::error::Error;
pub use crate::types::Node;
use crate::types::{AgentService, CheckStatus, HealthCheck, nullable};

/// One instance with its node and checks, from `GET /v1/health/service/:name`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ServiceEntry {
    /// The node the instance runs on.
    pub node: Node,
    /// The instance.
    pub service: AgentService,
    /// The node's checks and the instance's.
    #[serde(default, deserialize_with = "nullable")]
    pub checks: Vec<HealthCheck>,
}

// === impl ServiceEntry ===

impl ServiceEntry {
    /// The address to dial: the service's own, else its node's (Consul's rule).
    pub fn dial_address(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }

    /// The worst status among all checks (node checks included); passing with no checks.
    pub fn aggregated_status(&self) -> CheckStatus {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(CheckStatus::Passing)
    }
}

/// The health endpoints, from [`Client::health`].
#[derive(Debug, Clone, Copy)]
pub struct Health<'a> {
    client: &'a Client,
}

// === impl Client ===

impl Client {
    /// The health endpoints (`/v1/health/...`).
    pub fn health(&self) -> Health<'_> {
        Health { client: self }
    }
}

// === impl Health ===

impl Health<'_> {
    /// `GET /v1/health/service/:service`: the instances of a service with their checks.
    /// Pass `opts.index` from the last answer's [`QueryMeta::last_index`] to block until
    /// something changes.
    pub async fn service(
        &self,
        service: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<ServiceEntry>, QueryMeta), Error> {
        let path = format!("/v1/health/service/{}", escape(service));
        let (entries, meta): (Option<Vec<ServiceEntry>>, QueryMeta) =
            self.client.get(&path, opts).await?;
        Ok((entries.unwrap_or_default(), meta))
    }

    /// `GET /v1/health/checks/:service`: the checks of every instance of a service.
    pub async fn checks(
        &self,
        service: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), Error> {
        let path = format!("/v1/health/checks/{}", escape(service));
        self.list(&path, opts).await
    }

    /// `GET /v1/health/node/:node`: the checks of a node and its services.
    pub async fn node(
        &self,
        node: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), Error> {
        let path = format!("/v1/health/node/{}", escape(node));
        self.list(&path, opts).await
    }

    /// `GET /v1/health/state/:state`: every check in `state` (`None`: any state).
    pub async fn state(
        &self,
        state: Option<CheckStatus>,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), Error> {
        let word = state.map_or("any", CheckStatus::as_str);
        self.list(&format!("/v1/health/state/{word}"), opts).await
    }

    async fn list(
        &self,
        path: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), Error> {
        let (list, meta): (Option<Vec<HealthCheck>>, QueryMeta) =
            self.client.get(path, opts).await?;
        Ok((list.unwrap_or_default(), meta))
    }
}
