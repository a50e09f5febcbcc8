//! Configuring a [`DiscoveredChannel`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use discovery_core::{Query, Resolver};

use super::DiscoveredChannel;
use crate::pool::connect::Backoff;
use crate::pool::{ConfigureEndpoint, Outlier, PoolConfig};

/// Builds a [`DiscoveredChannel`]; made by [`DiscoveredChannel::builder`].
#[must_use = "a builder does nothing until built"]
pub struct Builder {
    resolver: Arc<dyn Resolver>,
    query: Query,
    empty_timeout: Duration,
    config: PoolConfig,
}

// === impl Builder ===

impl Builder {
    /// How long a call waits for an endpoint when none is ready, by default.
    pub const DEFAULT_EMPTY_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long one connection attempt may take, by default.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    pub(super) fn new(resolver: Arc<dyn Resolver>, query: Query) -> Self {
        Builder {
            resolver,
            query,
            empty_timeout: Self::DEFAULT_EMPTY_TIMEOUT,
            config: PoolConfig {
                scheme: "http",
                connect_timeout: Some(Self::DEFAULT_CONNECT_TIMEOUT),
                configure: None,
                backoff: Backoff {
                    base: Duration::from_millis(100),
                    max: Duration::from_secs(5),
                },
                outlier: Outlier {
                    consecutive_failures: 5,
                    base_ejection: Duration::from_secs(1),
                    max_ejection: Duration::from_secs(60),
                },
                locality: None,
            },
        }
    }

    /// Only instances with this tag (repeatable: all must match).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.query = self.query.with_tag(tag);
        self
    }

    /// Only instances whose checks pass (the default), or also warning and critical ones
    /// (`false`; warning instances then get their warning weight, critical ones are used
    /// only when nothing else is ready).
    pub fn passing_only(mut self, yes: bool) -> Self {
        self.query = self.query.passing_only(yes);
        self
    }

    /// Instances in this datacenter instead of the registry's own.
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.query = self.query.with_datacenter(dc);
        self
    }

    /// A registry-side filter expression.
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.query = self.query.with_filter(filter);
        self
    }

    /// Replaces the whole query, service name included (for instance one from a parsed
    /// [`Target`](crate::Target)).
    pub fn query(mut self, query: Query) -> Self {
        self.query = query;
        self
    }

    /// How long one connection attempt to one endpoint may take, handshakes included
    /// (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = Some(timeout);
        self
    }

    /// How long a call waits for a ready endpoint when there is none before failing with
    /// `Unavailable` (default 10 s). Covers start-up, when discovery has not answered yet
    /// or connections are still being made, and a service with no instances.
    pub fn empty_timeout(mut self, timeout: Duration) -> Self {
        self.empty_timeout = timeout;
        self
    }

    /// Configures every endpoint before it connects: TLS, HTTP/2 keepalive, concurrency
    /// limits, timeouts. The endpoint arrives with `tcp_nodelay(true)`; the builder's
    /// [`connect_timeout`](Builder::connect_timeout) bounds each whole connection attempt
    /// without touching the endpoint (tonic's `Endpoint::connect_timeout` would also put a
    /// timeout layer under every read and write). The connection is made by this crate's
    /// own TCP connector (so that it can tell when it closes), which honours the endpoint's
    /// TCP settings, connect timeout and TLS but not `local_address`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use discovery_core::MemoryRegistry;
    /// # use grpc_resolve::DiscoveredChannel;
    /// # let builder = DiscoveredChannel::builder(MemoryRegistry::new(), "adder");
    /// let builder = builder.endpoint(|ep| {
    ///     ep.http2_keep_alive_interval(Duration::from_secs(30))
    ///         .keep_alive_timeout(Duration::from_secs(10))
    /// });
    /// ```
    pub fn endpoint<F>(mut self, configure: F) -> Self
    where
        F: Fn(tonic::transport::Endpoint) -> tonic::transport::Endpoint + Send + Sync + 'static,
    {
        self.config.configure = Some(Arc::new(configure) as ConfigureEndpoint);
        self
    }

    /// Connects with `https://` URIs, as tonic needs for the TLS configured through
    /// [`Builder::endpoint`] (`ep.tls_config(..)`, which needs one of tonic's TLS features,
    /// such as `tls-ring`, enabled in the application's own tonic dependency; this crate's
    /// `tests/tls.rs` shows the whole setup).
    pub fn https(mut self, yes: bool) -> Self {
        self.config.scheme = if yes { "https" } else { "http" };
        self
    }

    /// The delay between failed connection attempts to one endpoint: exponential from
    /// `base` up to `max`, jittered (default 100 ms to 5 s).
    pub fn reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.backoff = Backoff {
            base,
            max: max.max(base),
        };
        self
    }

    /// Passive outlier detection: eject an endpoint after `failures` failed calls in a row
    /// (transport errors or `Unavailable` answers) for `base`, doubling with each ejection
    /// in a row up to 60 s (default 5 failures, 1 s). `failures == 0` turns it off.
    pub fn eject_after(mut self, failures: u32, base: Duration) -> Self {
        self.config.outlier.consecutive_failures = failures;
        self.config.outlier.base_ejection = base;
        self.config.outlier.max_ejection = self.config.outlier.max_ejection.max(base);
        self
    }

    /// Prefers endpoints whose instance is in `locality` (a zone or region, as
    /// `ServiceInstance::locality` carries it): while any of them is ready, calls go only to
    /// those, balanced as usual; when none is, calls go to every ready endpoint. Instances
    /// whose registry reports no locality are never preferred.
    ///
    /// ```
    /// # use discovery_core::MemoryRegistry;
    /// # use grpc_resolve::DiscoveredChannel;
    /// # let builder = DiscoveredChannel::builder(MemoryRegistry::new(), "adder");
    /// let builder = builder.prefer_locality("eu-west-1a");
    /// ```
    pub fn prefer_locality(mut self, locality: impl Into<String>) -> Self {
        self.config.locality = Some(locality.into());
        self
    }

    /// Starts discovery and returns the channel at once; endpoints connect in the
    /// background.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, since it spawns the discovery task.
    pub fn build(self) -> DiscoveredChannel {
        DiscoveredChannel::start(self.resolver, self.query, self.empty_timeout, self.config)
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("query", &self.query)
            .field("empty_timeout", &self.empty_timeout)
            .field("connect_timeout", &self.config.connect_timeout)
            .field("scheme", &self.config.scheme)
            .field("locality", &self.config.locality)
            .finish_non_exhaustive()
    }
}
