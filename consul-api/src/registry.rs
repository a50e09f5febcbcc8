//! The Consul backend of `discovery-core`: [`ConsulRegistry`] implements `Registry` and
//! `Resolver` over the agent and health endpoints.

use std::time::Duration;

use async_trait::async_trait;
use discovery_core::{
    CheckSpec, HealthStatus, Query, Registration, Registry, Resolver, ServiceInstance, Update,
    UpdateStream,
};
use tokio::time::Instant;

use crate::agent::{CheckDefinition, ServiceRegistration};
use crate::client::{Client, QueryOptions};
use crate::health::ServiceEntry;
use crate::types::CheckStatus;
use crate::{Config, Error};

/// Blocking-query and retry settings of a [`ConsulRegistry`]'s watches.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchConfig {
    /// How long one blocking query may wait at the server.
    pub wait: Duration,
    /// Least time between the starts of two queries, so a server answering at once with
    /// nothing new cannot spin the loop.
    pub min_interval: Duration,
    /// First backoff after a failure; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Backoff ceiling.
    pub backoff_max: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            wait: Duration::from_secs(300),
            min_interval: Duration::from_millis(20),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// Consul as a [`Registry`] and [`Resolver`].
#[derive(Debug, Clone)]
pub struct ConsulRegistry {
    client: Client,
    watch: WatchConfig,
}

// === impl ConsulRegistry ===

impl ConsulRegistry {
    /// A registry talking through `client`.
    pub fn new(client: Client) -> Self {
        ConsulRegistry {
            client,
            watch: WatchConfig::default(),
        }
    }

    /// A registry for the agent the environment names (`CONSUL_HTTP_ADDR`…).
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(Client::new(Config::from_env()?)?))
    }

    /// Replaces the watch settings.
    #[must_use]
    pub fn with_watch_config(mut self, watch: WatchConfig) -> Self {
        self.watch = watch;
        self
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
    .with_tags(entry.service.tags.iter().cloned())
    .with_weights(discovery_core::Weights {
        passing: entry.service.weights.passing,
        warning: entry.service.weights.warning,
    })
    .with_status(entry.aggregated_status().into());
    instance.meta = entry.service.meta.clone();
    instance.node = Some(entry.node.node.clone());
    instance
}

fn query_options(query: &Query) -> QueryOptions {
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
        let state = WatchLoop {
            client: self.client.clone(),
            config: self.watch.clone(),
            service: query.service.clone(),
            opts: query_options(query),
            index: 0,
            last: None,
            failures: 0,
            last_start: None,
        };
        Box::pin(futures_util::stream::unfold(
            state,
            |mut state| async move {
                let update = state.next().await;
                Some((update, state))
            },
        ))
    }
}

/// One blocking-query loop: the state carried between two updates of a watch.
struct WatchLoop {
    client: Client,
    config: WatchConfig,
    service: String,
    opts: QueryOptions,
    /// The index to block on; 0 until the first answer.
    index: u64,
    /// The last snapshot emitted, so identical answers (timeouts) emit nothing.
    last: Option<Vec<ServiceInstance>>,
    /// Consecutive failures, for the backoff.
    failures: u32,
    last_start: Option<Instant>,
}

impl WatchLoop {
    /// Runs queries until there is something to say.
    async fn next(&mut self) -> Update {
        loop {
            self.pace().await;
            self.last_start = Some(Instant::now());
            let mut opts = self.opts.clone();
            if self.index > 0 {
                opts.index = Some(self.index);
                opts.wait = Some(self.config.wait);
            }
            match self.client.health().service(&self.service, &opts).await {
                Ok((entries, meta)) => {
                    self.failures = 0;
                    // Consul's rules: an index that goes backwards means the data was reset
                    // (restore, agent restart): start over from 0. A zero index must never
                    // be sent back, so read it as 1.
                    self.index = if meta.last_index < self.index {
                        0
                    } else {
                        meta.last_index.max(1)
                    };
                    let instances: Vec<ServiceInstance> = entries.iter().map(to_instance).collect();
                    if self.last.as_ref() != Some(&instances) {
                        self.last = Some(instances.clone());
                        return Update::Snapshot(instances);
                    }
                }
                Err(err) => {
                    self.failures = self.failures.saturating_add(1);
                    // The next blocking query starts from scratch: the agent may be a new one.
                    self.index = 0;
                    tracing::debug!(service = %self.service, error = %err, failures = self.failures, "consul watch failed");
                    return Update::Error(err.into());
                }
            }
        }
    }

    /// Waits as the rate limit and the backoff require before the next query.
    async fn pace(&self) {
        let Some(last_start) = self.last_start else {
            return;
        };
        let mut gap = self.config.min_interval;
        if self.failures > 0 {
            let exp = self
                .config
                .backoff_base
                .saturating_mul(1 << self.failures.min(16))
                .min(self.config.backoff_max);
            // Full jitter in [exp/2, exp): spreads reconnecting watchers apart.
            let half = exp / 2;
            gap = gap.max(half + half.mul_f64(fastrand::f64()));
        }
        tokio::time::sleep_until(last_start + gap).await;
    }
}
