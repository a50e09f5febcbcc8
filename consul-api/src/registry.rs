//! The Consul backend of `discovery-core`: [`ConsulRegistry`] implements `Registry` and
//! `Resolver` over the agent and health endpoints.

use async_trait::async_trait;
use discovery_core::{
    CheckSpec, HealthStatus, Query, Registration, Registry, Resolver, ServiceInstance, UpdateStream,
};

use crate::agent::{CheckDefinition, ServiceRegistration};
use crate::client::{Client, QueryOptions};
use crate::health::ServiceEntry;
use crate::types::CheckStatus;
use crate::watch::{WatchConfig, WatchHub};
use crate::{Config, Error};

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

/// Maps a registration onto Consul's service definition.
pub fn to_service_registration(registration: &Registration) -> ServiceRegistration {
    let instance = &registration.instance;
    let check = registration.check.as_ref().map(|spec| {
        let mut check = CheckDefinition {
            deregister_critical_service_after: registration.deregister_after,
            ..Default::default()
        };
        match spec {
            CheckSpec::Grpc {
                target,
                use_tls,
                interval,
                timeout,
            } => {
                check.grpc = Some(target.clone());
                check.grpc_use_tls = *use_tls;
                check.interval = Some(*interval);
                check.timeout = Some(*timeout);
            }
            CheckSpec::Http {
                url,
                interval,
                timeout,
            } => {
                check.http = Some(url.clone());
                check.interval = Some(*interval);
                check.timeout = Some(*timeout);
            }
            CheckSpec::Tcp {
                address,
                interval,
                timeout,
            } => {
                check.tcp = Some(address.clone());
                check.interval = Some(*interval);
                check.timeout = Some(*timeout);
            }
            CheckSpec::Ttl { ttl } => check.ttl = Some(*ttl),
            // A spec this version cannot express: register without a check rather than
            // guess (CheckSpec is non_exhaustive).
            _ => {}
        }
        check
    });
    let mut out = ServiceRegistration::new(instance.service.clone());
    out.id = (!instance.id.is_empty()).then(|| instance.id.clone());
    out.tags = instance.tags.clone();
    out.address = (!instance.host.is_empty()).then(|| instance.host.clone());
    out.port = Some(instance.port);
    out.meta = instance.meta.clone();
    out.weights = Some(crate::types::Weights {
        passing: instance.weights.passing,
        warning: instance.weights.warning,
    });
    out.locality = instance
        .locality
        .as_ref()
        .map(|zone| crate::agent::Locality {
            region: String::new(),
            zone: zone.clone(),
        });
    out.check = check;
    out
}

/// Maps a health entry onto an instance: dial address is the service's, else the node's.
pub fn to_instance(entry: &ServiceEntry) -> ServiceInstance {
    let mut instance = ServiceInstance::new(
        entry.service.id.clone(),
        entry.service.service.clone(),
        entry.dial_address().to_owned(),
        entry.service.port,
    )
    .tags(entry.service.tags.iter().cloned())
    .weights(discovery_core::Weights {
        passing: entry.service.weights.passing,
        warning: entry.service.weights.warning,
    })
    .status(entry.aggregated_status().into());
    instance.meta = entry.service.meta.clone();
    instance.node = Some(entry.node.node.clone());
    instance.locality = locality(entry);
    instance
}

/// The instance's zone: the service's `Locality.Zone` (Consul 1.17+), else a `zone` entry in
/// the service's or its node's metadata, the common convention before that field existed.
fn locality(entry: &ServiceEntry) -> Option<String> {
    let from_field = entry
        .service
        .locality
        .as_ref()
        .map(|l| l.zone.clone())
        .filter(|z| !z.is_empty());
    from_field
        .or_else(|| entry.service.meta.get("zone").cloned())
        .or_else(|| entry.node.meta.get("zone").cloned())
        .filter(|z| !z.is_empty())
}

pub(crate) fn query_options(query: &Query) -> QueryOptions {
    QueryOptions {
        datacenter: query.datacenter.clone(),
        tags: query.tags.clone(),
        passing: query.passing_only,
        filter: query.filter.clone(),
        ..Default::default()
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
