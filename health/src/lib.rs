//! `grpc.health.v1` for tonic servers, with health indicators that decide the status.
//!
//! tonic-health serves the protocol; this crate adds what service discovery needs on top:
//!
//! - a [`Health`] handle that remembers every status it set (tonic-health's reporter can
//!   only write) and turns the whole server NOT_SERVING in one call at shutdown;
//! - **indicators**: async probes of your own ([`Indicator`], or a closure through
//!   [`indicator_fn`]) run on an interval with a timeout; one that reports
//!   [`Level::Down`] turns the services it covers NOT_SERVING until it recovers. Built in: an
//!   in-flight request limit ([`InFlightLimitLayer`], a tower layer with hysteresis) and a
//!   dependency probe ([`TcpProbe`]);
//! - the registry-facing status derived from the same state ([`Health::registry_status`]):
//!   passing, warning (an indicator is [`Level::Degraded`]) or critical, with an output text
//!   naming the indicators that said so, which a TTL check reports.
//!
//! Everything starts NOT_SERVING, the overall server (`""`) included: a server says it is
//! ready only once it is, which is what a registry's health check must see before it sends
//! traffic.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use discovery_core::HealthStatus;
//! use health::{indicator_fn, Health, IndicatorOptions, Level, Probe};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (health, server) = Health::new();
//! // Mount `server` on a tonic router: `Server::builder().add_service(server)`.
//! # drop(server);
//! health.set_serving("adder.Adder").await;
//! assert_eq!(health.registry_status("adder.Adder").0, HealthStatus::Passing);
//!
//! // A probe of a dependency, every 5 seconds with a 1 second deadline.
//! health.add_indicator(
//!     "database",
//!     IndicatorOptions::every(Duration::from_secs(5)).timeout(Duration::from_secs(1)),
//!     indicator_fn(|| async { Probe::new(Level::Down, "connection refused") }),
//! );
//! # health.report("database", health::Scope::All, Probe::new(Level::Down, "connection refused")).await;
//! let (status, output) = health.registry_status("adder.Adder");
//! assert_eq!(status, HealthStatus::Critical);
//! assert!(output.contains("database: connection refused"));
//! # }
//! ```

#![forbid(unsafe_code)]

mod handle;
mod indicator;
mod inflight;

pub use handle::{Health, SERVER};
pub use indicator::{
    FnIndicator, Indicator, IndicatorOptions, Level, Probe, Scope, TcpProbe, indicator_fn,
};
pub use inflight::{InFlight, InFlightFuture, InFlightLimitLayer};
pub use tonic_health::ServingStatus;
pub use tonic_health::pb::health_server::HealthServer;
pub use tonic_health::server::HealthService;
