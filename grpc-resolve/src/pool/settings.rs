//! Every setting of the pool, with its default, in one place: how endpoints connect
//! ([`Settings`]), how many calls each takes, how they reconnect and when they are ejected
//! ([`PoolConfig`], [`Outlier`]). The channel's builder only changes these values.
//!
//! May use: `tls` (the type of the TLS setting).

use std::time::Duration;

use discovery_core::Backoff;
use http::HeaderValue;
use http::uri::Scheme;

/// How long one connection attempt may take, by default.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the pool connects and ejects.
#[derive(Clone)]
pub(crate) struct PoolConfig {
    pub(crate) settings: Settings,
    /// At most this many calls in flight on one endpoint.
    pub(crate) concurrency_limit: Option<usize>,
    pub(crate) backoff: Backoff,
    pub(crate) outlier: Outlier,
    /// The locality to prefer: when any usable endpoint is in it, calls go only there.
    pub(crate) locality: Option<String>,
    pub(crate) liveness: Liveness,
    // The set-wide rules.
    /// Ejection by failure rate, beside `outlier`'s failures in a row.
    pub(crate) failure_rate: FailureRate,
    /// How far a new or returning endpoint's weight ramps up.
    pub(crate) slow_start: SlowStart,
    /// When an answer that drops most endpoints at once is held back.
    pub(crate) shrink_guard: ShrinkGuard,
}

/// Outlier detection by failure percentage (gRPC A50's `failure_percentage_ejection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FailureRate {
    /// How often failure percentages are computed, over the calls since the last time.
    pub(crate) interval: Duration,
    /// An endpoint failing at least this percentage of its calls may be ejected; 0 turns
    /// the rule off.
    pub(crate) threshold_percent: u32,
    /// Endpoints with fewer calls in the interval are not judged.
    pub(crate) request_volume: u64,
    /// Nothing is judged unless at least this many endpoints had the volume.
    pub(crate) minimum_hosts: usize,
    /// Ejected endpoints (for any reason) may be at most this share of the set, but at
    /// least one.
    pub(crate) max_ejection_percent: u32,
}

/// Slow start (Envoy's `slow_start_config`, linear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlowStart {
    /// How long the ramp takes; zero turns slow start off.
    pub(crate) window: Duration,
    /// The weight, in percent of the full weight, a ramp starts from.
    pub(crate) min_weight_percent: u32,
}

/// The shrink guard (a panic threshold for discovery answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShrinkGuard {
    /// An answer is held back when the endpoints it leaves ready would be fewer than this
    /// percentage of those ready now; 0 turns the guard off.
    pub(crate) min_ready_percent: u32,
    /// How long dropped endpoints are kept as a fallback at most.
    pub(crate) max_hold: Duration,
}

// === impl FailureRate ===

impl Default for FailureRate {
    fn default() -> Self {
        FailureRate {
            interval: Duration::from_secs(10),
            threshold_percent: 20,
            request_volume: 50,
            minimum_hosts: 3,
            max_ejection_percent: 10,
        }
    }
}

// === impl SlowStart ===

impl Default for SlowStart {
    fn default() -> Self {
        SlowStart {
            window: Duration::from_secs(10),
            min_weight_percent: 10,
        }
    }
}

// === impl ShrinkGuard ===

impl Default for ShrinkGuard {
    fn default() -> Self {
        ShrinkGuard {
            min_ready_percent: 50,
            max_hold: Duration::from_secs(60),
        }
    }
}

// --- Client-side health checking and unresponsive endpoints (see `health_watch` and
// `monitor`) ---

/// Whether the pool watches each connection's health service and its calls' progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Liveness {
    /// Whether each connection has a health `Watch` stream (client-side health checking).
    pub(crate) health_check: bool,
    /// The `grpc.health.v1` service name the `Watch` stream and the probe ask about.
    pub(crate) health_service: String,
    /// The least silence (calls waiting, no answer, others answering) that makes an
    /// endpoint a suspect; `None` turns the detection off.
    pub(crate) unresponsive_after: Option<Duration>,
}

/// The health service watched by default: the server as a whole (`""`), which is what
/// `health::Health` and `grpc-register` report (and what the registry's gRPC check asks
/// about by default), so a server set NOT_SERVING through its handle leaves rotation.
pub(crate) const DEFAULT_HEALTH_SERVICE: &str = "";

/// The least silence that makes an endpoint a suspect, by default (see `monitor`).
pub(crate) const DEFAULT_UNRESPONSIVE_AFTER: Duration = Duration::from_millis(300);

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            health_check: true,
            health_service: DEFAULT_HEALTH_SERVICE.to_owned(),
            unresponsive_after: Some(DEFAULT_UNRESPONSIVE_AFTER),
        }
    }
}

/// Passive outlier detection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outlier {
    pub(crate) consecutive_failures: u32,
    pub(crate) base_ejection: Duration,
    pub(crate) max_ejection: Duration,
}

/// How every endpoint's connection is made and configured.
#[derive(Clone)]
pub(crate) struct Settings {
    /// Bounds one whole attempt: TCP, TLS and the HTTP/2 handshake.
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) keep_alive_interval: Option<Duration>,
    pub(crate) keep_alive_timeout: Option<Duration>,
    pub(crate) keep_alive_while_idle: bool,
    pub(crate) initial_stream_window_size: Option<u32>,
    pub(crate) initial_connection_window_size: Option<u32>,
    pub(crate) adaptive_window: bool,
    pub(crate) user_agent: HeaderValue,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<super::tls::Tls>,
}

// === impl PoolConfig ===

impl Default for PoolConfig {
    /// The defaults a channel's builder starts from.
    fn default() -> Self {
        PoolConfig {
            settings: Settings::new(Some(DEFAULT_CONNECT_TIMEOUT)),
            concurrency_limit: None,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            outlier: Outlier {
                consecutive_failures: 5,
                base_ejection: Duration::from_secs(1),
                max_ejection: Duration::from_secs(60),
            },
            locality: None,
            failure_rate: FailureRate::default(),
            slow_start: SlowStart::default(),
            shrink_guard: ShrinkGuard::default(),
            liveness: Liveness::default(),
        }
    }
}

// === impl Settings ===

impl Settings {
    pub(crate) fn new(connect_timeout: Option<Duration>) -> Self {
        Settings {
            connect_timeout,
            tcp_keepalive: None,
            keep_alive_interval: None,
            keep_alive_timeout: None,
            keep_alive_while_idle: false,
            initial_stream_window_size: None,
            initial_connection_window_size: None,
            adaptive_window: false,
            user_agent: HeaderValue::from_static(concat!(
                "grpc-resolve/",
                env!("CARGO_PKG_VERSION")
            )),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The scheme calls to every endpoint carry: `https` with TLS.
    pub(crate) fn scheme(&self) -> Scheme {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return Scheme::HTTPS;
        }
        Scheme::HTTP
    }
}
