//! Configuring a [`DiscoveredChannel`]: the [`Builder`], and the constructors that start
//! one ([`DiscoveredChannel::builder`]), which live here so that the channel does not
//! depend on its builder.
//!
//! May use: `service` (the channel it builds); below it, the pool's settings and
//! `target`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use discovery_core::{Backoff, Query, Resolver};
use http::HeaderValue;

use super::budget::BudgetConfig;
use super::hedge::Hedging;
use super::service::DiscoveredChannel;
use crate::pool::{DEFAULT_CONNECT_TIMEOUT, PoolConfig};
use crate::target::Target;

/// Builds a [`DiscoveredChannel`]; made by [`DiscoveredChannel::builder`].
#[must_use = "a builder does nothing until built"]
pub struct Builder {
    resolver: Arc<dyn Resolver>,
    query: Query,
    empty_timeout: Duration,
    timeout: Option<Duration>,
    config: PoolConfig,
    budget: BudgetConfig,
    hedging: Option<Hedging>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    #[cfg(feature = "tls")]
    tls_server_name: Option<tokio_rustls::rustls::pki_types::ServerName<'static>>,
}

// === impl DiscoveredChannel ===

impl DiscoveredChannel {
    /// Starts building a channel to `service` as `resolver` finds it.
    pub fn builder<R>(resolver: R, service: impl Into<String>) -> Builder
    where
        R: Resolver + 'static,
    {
        Builder::new(Arc::new(resolver), Query::new(service))
    }

    /// Starts building a channel for a parsed target: its query, with `resolver` (which the
    /// caller makes for the target's address).
    pub fn builder_for_target<R>(resolver: R, target: &Target) -> Builder
    where
        R: Resolver + 'static,
    {
        Builder::new(Arc::new(resolver), target.query.clone())
    }
}

// === impl Builder ===

impl Builder {
    /// How long a call waits for an endpoint when none is ready, by default.
    pub const DEFAULT_EMPTY_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long one connection attempt may take, by default.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = DEFAULT_CONNECT_TIMEOUT;

    fn new(resolver: Arc<dyn Resolver>, query: Query) -> Self {
        Builder {
            resolver,
            query,
            empty_timeout: Self::DEFAULT_EMPTY_TIMEOUT,
            timeout: None,
            config: PoolConfig::default(),
            budget: BudgetConfig::default(),
            hedging: None,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_server_name: None,
        }
    }

    /// Only instances with this tag (repeatable: all must match).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.query = self.query.tag(tag);
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
        self.query = self.query.datacenter(dc);
        self
    }

    /// A registry-side filter expression.
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.query = self.query.filter(filter);
        self
    }

    /// Replaces the whole query, service name included (for instance one from a parsed
    /// [`Target`]).
    pub fn query(mut self, query: Query) -> Self {
        self.query = query;
        self
    }

    /// How long one connection attempt to one endpoint may take, handshakes included
    /// (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.settings.connect_timeout = Some(timeout);
        self
    }

    /// How long a call waits for a ready endpoint when there is none before failing with
    /// `Unavailable` (default 10 s). Covers start-up, when discovery has not answered yet
    /// or connections are still being made, and a service with no instances.
    pub fn empty_timeout(mut self, timeout: Duration) -> Self {
        self.empty_timeout = timeout;
        self
    }

    /// How long a call may take until its response headers arrive, waiting for an
    /// endpoint and a retry included (default: no limit of the channel's own). A call's own
    /// deadline (`grpc-timeout`, from `Request::set_timeout`) applies too; the shorter one
    /// wins. A call over time fails with `DeadlineExceeded`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// At most `limit` calls in flight on one endpoint. A full endpoint is not picked; when
    /// every ready endpoint is full, a call waits for one to finish (up to the empty
    /// timeout). Default: no limit but the server's own `MAX_CONCURRENT_STREAMS`.
    pub fn concurrency_limit(mut self, limit: usize) -> Self {
        self.config.concurrency_limit = Some(limit.max(1));
        self
    }

    /// Sends HTTP/2 pings every `interval` to check that each connection is alive; one
    /// unanswered for the [`keep_alive_timeout`](Builder::keep_alive_timeout) closes it
    /// (and its endpoint reconnects). Off by default.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use discovery_core::MemoryRegistry;
    /// # use grpc_resolve::DiscoveredChannel;
    /// # let builder = DiscoveredChannel::builder(MemoryRegistry::new(), "adder");
    /// let builder = builder
    ///     .http2_keep_alive_interval(Duration::from_secs(30))
    ///     .keep_alive_timeout(Duration::from_secs(10));
    /// ```
    pub fn http2_keep_alive_interval(mut self, interval: Duration) -> Self {
        self.config.settings.keep_alive_interval = Some(interval);
        self
    }

    /// How long a keepalive ping may go unanswered (default 20 s).
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.config.settings.keep_alive_timeout = Some(timeout);
        self
    }

    /// Pings idle connections too (default: only while calls are in flight).
    pub fn keep_alive_while_idle(mut self, yes: bool) -> Self {
        self.config.settings.keep_alive_while_idle = yes;
        self
    }

    /// TCP keepalive on every connection, probing after `idle` (default: off).
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.config.settings.tcp_keepalive = idle;
        self
    }

    /// The HTTP/2 flow-control window of each stream, in bytes (default: hyper's).
    pub fn initial_stream_window_size(mut self, size: u32) -> Self {
        self.config.settings.initial_stream_window_size = Some(size);
        self
    }

    /// The HTTP/2 flow-control window of each connection, in bytes (default: hyper's).
    pub fn initial_connection_window_size(mut self, size: u32) -> Self {
        self.config.settings.initial_connection_window_size = Some(size);
        self
    }

    /// Sizes HTTP/2 flow-control windows by measured bandwidth and delay, overriding the
    /// fixed window sizes (default: off).
    pub fn http2_adaptive_window(mut self, yes: bool) -> Self {
        self.config.settings.adaptive_window = yes;
        self
    }

    /// The `user-agent` sent with calls that set none (default `grpc-resolve/<version>`).
    pub fn user_agent(mut self, user_agent: HeaderValue) -> Self {
        self.config.settings.user_agent = user_agent;
        self
    }

    /// Connects to every endpoint over TLS with `config` (the `tls` feature). HTTP/2 is
    /// offered by ALPN unless the config offers protocols of its own. Certificates are
    /// checked against the endpoint's host unless [`Builder::tls_server_name`] names
    /// another.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use discovery_core::MemoryRegistry;
    /// # use grpc_resolve::DiscoveredChannel;
    /// use grpc_resolve::rustls::{ClientConfig, RootCertStore};
    ///
    /// # let builder = DiscoveredChannel::builder(MemoryRegistry::new(), "adder");
    /// # let roots = RootCertStore::empty();
    /// let provider = Arc::new(grpc_resolve::rustls::crypto::ring::default_provider());
    /// let config = ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let builder = builder.tls(Arc::new(config));
    /// # Ok::<(), grpc_resolve::rustls::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// The name endpoint certificates are checked against (and sent as SNI), for instance
    /// when instances register by IP address (default: each endpoint's host). Takes effect
    /// with [`Builder::tls`].
    #[cfg(feature = "tls")]
    pub fn tls_server_name(
        mut self,
        name: tokio_rustls::rustls::pki_types::ServerName<'static>,
    ) -> Self {
        self.tls_server_name = Some(name);
        self
    }

    /// The delay between failed connection attempts to one endpoint (default 100 ms
    /// growing to 5 s).
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
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

    // --- Failure rate, slow start, shrink guard, retry budget, hedging ---

    /// Outlier detection by failure rate (gRPC A50's failure percentage): every `interval`
    /// (default 10 s, at least 10 ms), an endpoint that failed at least `threshold_percent` of at least
    /// `request_volume` calls in it (defaults 20 % of 50), while it stands out from the
    /// others (see the README), is ejected for `interval` times its ejection count. A
    /// failure is a transport error or an `Unavailable`, `Unknown`, `Internal` or
    /// `DataLoss` answer. `threshold_percent == 0` turns it off.
    pub fn failure_rate(
        mut self,
        interval: Duration,
        threshold_percent: u32,
        request_volume: u64,
    ) -> Self {
        let rule = &mut self.config.failure_rate;
        rule.interval = interval.max(Duration::from_millis(10));
        rule.threshold_percent = threshold_percent.min(100);
        rule.request_volume = request_volume;
        self
    }

    /// The failure-rate rule judges nothing unless at least `hosts` endpoints had its
    /// request volume in the interval (default 3).
    pub fn failure_rate_minimum_hosts(mut self, hosts: usize) -> Self {
        self.config.failure_rate.minimum_hosts = hosts;
        self
    }

    /// Outlier detection ejects by failure rate only while fewer than `percent` of the
    /// endpoints are ejected (for any reason), but always allows one (default 10 %, as
    /// gRPC A50 and Envoy).
    pub fn max_ejection_percent(mut self, percent: u32) -> Self {
        self.config.failure_rate.max_ejection_percent = percent.min(100);
        self
    }

    /// Slow start: a new or reconnected endpoint's weight ramps linearly from the minimum
    /// weight percent to its full weight over `window` (default 10 s). Zero turns it off.
    pub fn slow_start_window(mut self, window: Duration) -> Self {
        self.config.slow_start.window = window;
        self
    }

    /// The share of its weight, in percent, a slow start begins from (default 10, as
    /// Envoy; at least 1).
    pub fn slow_start_min_weight_percent(mut self, percent: u32) -> Self {
        self.config.slow_start.min_weight_percent = percent.clamp(1, 100);
        self
    }

    /// The shrink guard: an answer that would leave fewer than `min_ready_percent` of the
    /// ready endpoints ready (default 50, Envoy's panic threshold) keeps the endpoints it
    /// drops that are still connected as a fallback, for `max_hold` at most (default 60 s).
    /// `min_ready_percent == 0` turns it off.
    pub fn shrink_guard(mut self, min_ready_percent: u32, max_hold: Duration) -> Self {
        self.config.shrink_guard.min_ready_percent = min_ready_percent.min(100);
        self.config.shrink_guard.max_hold = max_hold;
        self
    }

    /// The retry budget: retries may be at most `ratio` of the calls of the last `ttl`,
    /// plus `min_per_second` per second (default 20 % over 10 s plus 10 per second, as
    /// Finagle and tower). `ttl` is brought within 1 to 60 s and `ratio` within 0 to 10;
    /// `(_, 0, 0.0)` turns retries off.
    pub fn retry_budget(mut self, ttl: Duration, min_per_second: u32, ratio: f64) -> Self {
        self.budget = BudgetConfig::new(ttl, min_per_second, ratio);
        self
    }

    /// Hedges the calls `hedging` names (off by default): a call without an answer after
    /// the hedging delay is sent to another endpoint as well, and the first answer wins
    /// (see [`Hedging`]). Only for methods that are safe to run twice.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use discovery_core::MemoryRegistry;
    /// # use grpc_resolve::{DiscoveredChannel, Hedging};
    /// # let builder = DiscoveredChannel::builder(MemoryRegistry::new(), "adder");
    /// let builder = builder.hedging(Hedging::after(Duration::from_millis(20)).method("/adder.Adder/Add"));
    /// ```
    pub fn hedging(mut self, hedging: Hedging) -> Self {
        self.hedging = Some(hedging);
        self
    }

    // --- Client-side health checking and unresponsive endpoints ---

    /// Client-side health checking (gRPC's design, gRFC A17; on by default): each
    /// endpoint connection keeps a `grpc.health.v1.Health/Watch` stream for the
    /// [`health_service`](Builder::health_service), and an endpoint whose server answers
    /// anything but SERVING leaves rotation until it answers SERVING again, within one
    /// round trip of the change. A new connection is picked once the first answer came. A
    /// server without a health service (`UNIMPLEMENTED`) counts as serving; a stream that
    /// fails is opened again with the reconnect backoff and changes nothing by itself.
    ///
    /// ```
    /// # use discovery_core::MemoryRegistry;
    /// # use grpc_resolve::DiscoveredChannel;
    /// # let builder = DiscoveredChannel::builder(MemoryRegistry::new(), "adder");
    /// let builder = builder.health_service("adder.Adder"); // or .health_check(false)
    /// ```
    pub fn health_check(mut self, yes: bool) -> Self {
        self.config.liveness.health_check = yes;
        self
    }

    /// The service name the health `Watch` stream (and the probe of an unresponsive
    /// endpoint) asks about (default `""`, the server as a whole: what the `health` crate's
    /// handle and `grpc-register` report, and what a registry's gRPC check asks).
    pub fn health_service(mut self, service: impl Into<String>) -> Self {
        self.config.liveness.health_service = service.into();
        self
    }

    /// How long an endpoint may answer nothing while it has calls waiting and other
    /// endpoints answer before it is suspected of having stopped (default 300 ms, or four
    /// times the recent mean answer time if longer; `None` turns the detection off). A
    /// suspect leaves rotation and is probed with a health `Check` limited by the same
    /// time: an answer brings it back, none cuts its connection (failing the calls stuck
    /// on it) and it reconnects. The last usable endpoint is never suspected.
    pub fn unresponsive_after(mut self, silence: Option<Duration>) -> Self {
        self.config.liveness.unresponsive_after = silence;
        self
    }

    /// Starts discovery and returns the channel at once; endpoints connect in the
    /// background.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, since it spawns the discovery task.
    pub fn build(self) -> DiscoveredChannel {
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut config = self.config;
        #[cfg(feature = "tls")]
        {
            config.settings.tls = self
                .tls
                .map(|tls| crate::pool::Tls::new(tls, self.tls_server_name));
        }
        DiscoveredChannel::start(
            self.resolver,
            self.query,
            self.empty_timeout,
            self.timeout,
            config,
            self.budget,
            self.hedging,
        )
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("query", &self.query)
            .field("empty_timeout", &self.empty_timeout)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.config.settings.connect_timeout)
            .field("concurrency_limit", &self.config.concurrency_limit)
            .field("scheme", &self.config.settings.scheme())
            .field("locality", &self.config.locality)
            .field("hedging", &self.hedging)
            .finish_non_exhaustive()
    }
}
