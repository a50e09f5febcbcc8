#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// Layers, each using only those before it: `error`, `duration`, `types`; `tls`, `config`,
// `options`; `transport` (the connections and their budget); `client`; the endpoint
// families `agent`, `catalog`, `health`, `status` (side by side, none importing another);
// `backend` (ConsulRegistry, conversions, watches) on top.
pub mod agent;
mod backend;
pub mod catalog;
mod client;
mod config;
pub mod duration;
mod error;
pub mod health;
pub mod metrics;
mod options;
pub mod status;
mod tls;
mod transport;
mod types;

pub use backend::watch::{self, WatchConfig, WatchHub};
pub use backend::{ConsulRegistry, QueryDefaults, to_instance, to_service_registration};
pub use client::Client;
pub use config::{BasicAuth, Config, DEFAULT_ADDRESS, DEFAULT_MAX_CONNECTIONS, Token};
pub use error::Error;
pub use options::{Consistency, QueryMeta, QueryOptions};
pub use tls::TlsConfig;
pub use transport::{BoxError, ClientStats, ConnectionId, Exchange, MAX_BODY, Protocol};
pub use types::{CheckStatus, HealthCheck, Meta, ServiceAddress, Weights};
