//! The Consul backend of `discovery-core`: [`ConsulRegistry`] implements `Registry` and
//! `Resolver` over the agent and health endpoints.
//!
//! It sits downstream of the client, as Consul's Go `api/watch` sits downstream of `api`:
//! this module and its children use the client and its endpoint families, and nothing
//! below imports them. `convert` maps between the core model and Consul's wire types;
//! `watch` runs the shared blocking-query loops on top of it.

mod convert;
pub mod watch;

use async_trait::async_trait;
use discovery_core::{
    HealthStatus, Query, Registration, Registry, Resolver, ServiceInstance, UpdateStream,
};

use crate::client::{Client, QueryOptions};
use crate::config::Config;
use crate::error::Error;
use crate::types::CheckStatus;

use convert::query_options;
pub use convert::{to_instance, to_service_registration};
use watch::{WatchConfig, WatchHub};

/// Consul as a [`Registry`] and [`Resolver`].
#[derive(Debug, Clone)]
pub struct ConsulRegistry {
    client: Client,
    hub: WatchHub,
}

// === impl ConsulRegistry ===

impl ConsulRegistry {
    /// A registry talking through `client`.
    pub fn new(client: Client) -> Self {
        let hub = WatchHub::new(client.clone(), WatchConfig::default());
        ConsulRegistry { client, hub }
    }

    /// A registry for the agent the environment names (`CONSUL_HTTP_ADDR`…).
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(Client::new(Config::from_env()?)?))
    }

    /// Replaces the watch settings.
    #[must_use]
    pub fn watch_config(mut self, watch: WatchConfig) -> Self {
        self.hub = WatchHub::new(self.client.clone(), watch);
        self
    }

    /// The hub that shares one blocking-query loop among all watchers of a query.
    pub fn watch_hub(&self) -> &WatchHub {
        &self.hub
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The ID Consul gives the single check of service `instance_id`.
    pub fn check_id(instance_id: &str) -> String {
        format!("service:{instance_id}")
    }
}

#[async_trait]
impl Registry for ConsulRegistry {
    async fn register(&self, registration: &Registration) -> Result<(), discovery_core::Error> {
        let body = to_service_registration(registration);
        Ok(self.client.agent().register_service(&body).await?)
    }

    async fn deregister(&self, instance_id: &str) -> Result<(), discovery_core::Error> {
        Ok(self.client.agent().deregister_service(instance_id).await?)
    }

    async fn is_registered(&self, instance_id: &str) -> Result<bool, discovery_core::Error> {
        match self
            .client
            .agent()
            .service(instance_id, &QueryOptions::default())
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.is_not_found() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    async fn report(
        &self,
        instance_id: &str,
        status: HealthStatus,
        output: &str,
    ) -> Result<(), discovery_core::Error> {
        let check = Self::check_id(instance_id);
        Ok(self
            .client
            .agent()
            .update_ttl(&check, CheckStatus::from(status), output)
            .await?)
    }
}

#[async_trait]
impl Resolver for ConsulRegistry {
    async fn resolve(&self, query: &Query) -> Result<Vec<ServiceInstance>, discovery_core::Error> {
        let (entries, _) = self
            .client
            .health()
            .service(&query.service, &query_options(query))
            .await?;
        Ok(entries.iter().map(to_instance).collect())
    }

    fn watch(&self, query: &Query) -> UpdateStream {
        self.hub.watch(query)
    }
}
