//! The Consul backend of `discovery-core`: [`ConsulRegistry`] implements `Registry` and
//! `Resolver` over the agent and health endpoints.
//!
//! It sits downstream of the client, as Consul's Go `api/watch` sits downstream of `api`:
//! this module and its children use the client and its endpoint families, and nothing
//! below imports them. `convert` maps between the core model and Consul's wire types;
//! `options` adds Consul's own read options; `watch` runs the shared blocking-query loops
//! on top of them.

mod convert;
mod options;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use discovery_core::{
    HealthStatus, Query, Registration, Registry, Resolver, ServiceInstance, UpdateStream,
};

use crate::client::{Client, QueryOptions};
use crate::config::Config;
use crate::error::Error;
use crate::types::CheckStatus;

pub use convert::{to_instance, to_service_registration};
pub use options::QueryDefaults;
use options::read_options;
use watch::{WatchConfig, WatchHub};

/// Consul as a [`Registry`] and [`Resolver`].
///
/// Registries are cheap, and sharing is the default at every level: a registry's client
/// shares its connections with every client built from equal settings in the process, and
/// its watches run on the process's one hub for that client and [`WatchConfig`]; so a
/// hundred registries built with [`ConsulRegistry::from_env`], watching one service, cost
/// one blocking query.
#[derive(Debug, Clone)]
pub struct ConsulRegistry {
    client: Client,
    watch: WatchConfig,
    defaults: Arc<Defaults>,
}

/// The registry's Consul read options, and per service overrides.
#[derive(Debug, Clone, Default)]
struct Defaults {
    all: QueryDefaults,
    services: HashMap<String, QueryDefaults>,
}

// === impl ConsulRegistry ===

impl ConsulRegistry {
    /// A registry talking through `client`.
    pub fn new(client: Client) -> Self {
        ConsulRegistry {
            client,
            watch: WatchConfig::default(),
            defaults: Arc::default(),
        }
    }

    /// A registry for the agent the environment names (`CONSUL_HTTP_ADDR`…).
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(Client::new(Config::from_env()?)?))
    }

    /// Replaces the watch settings.
    #[must_use]
    pub fn watch_config(mut self, watch: WatchConfig) -> Self {
        self.watch = watch;
        self
    }

    /// Replaces the Consul read options of every resolve and watch (the agent cache,
    /// `near`, `node-meta`), except for services given their own.
    #[must_use]
    pub fn query_defaults(mut self, defaults: QueryDefaults) -> Self {
        Arc::make_mut(&mut self.defaults).all = defaults;
        self
    }

    /// Gives `service` Consul read options of its own, instead of the registry's.
    #[must_use]
    pub fn service_defaults(mut self, service: impl Into<String>, defaults: QueryDefaults) -> Self {
        Arc::make_mut(&mut self.defaults)
            .services
            .insert(service.into(), defaults);
        self
    }

    /// The hub this registry's watches run on in the current runtime: the one every
    /// registry with this client's transport and these watch settings shares.
    pub fn watch_hub(&self) -> WatchHub {
        WatchHub::shared(&self.client, &self.watch)
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The ID Consul gives the single check of service `instance_id`.
    pub fn check_id(instance_id: &str) -> String {
        format!("service:{instance_id}")
    }

    fn defaults_for(&self, service: &str) -> &QueryDefaults {
        self.defaults
            .services
            .get(service)
            .unwrap_or(&self.defaults.all)
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
        let opts = read_options(query, self.defaults_for(&query.service));
        let (entries, _) = self.client.health().service(&query.service, &opts).await?;
        Ok(entries.iter().map(to_instance).collect())
    }

    fn watch(&self, query: &Query) -> UpdateStream {
        self.watch_hub()
            .watch_with(query, self.defaults_for(&query.service))
    }
}
