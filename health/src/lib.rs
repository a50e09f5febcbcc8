#![doc = include_str!("../README.md")]
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
