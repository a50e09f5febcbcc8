//! A typed async client for Consul's HTTP API, and the Consul backend of `discovery-core`.
//!
//! [`Client`] reaches the endpoint families through handles (`client.agent()`,
//! `client.health()`, `client.status()`); reads return the value with its [`QueryMeta`],
//! whose `last_index` feeds the next blocking query. [`ConsulRegistry`] implements
//! `discovery_core::{Registry, Resolver}` on top: registration mapping, dial addresses, and
//! watches built on blocking queries with index hygiene and backoff.
//!
//! A client holds at most [`Config::max_connections`] connections to its agent (16 by
//! default, so a dozen processes fit under Consul's 200 per client address), shared by its
//! clones and by every client built from equal settings in the process. Watches beyond its
//! blocking slots poll at a bounded pace and take a slot when their service moves; over
//! HTTP/2 (an HTTPS agent) every watch blocks, 200 to a connection. The crate's README gives
//! the design and its measured cost.
//!
//! # Examples
//!
//! ```no_run
//! use consul_api::{Client, Config, QueryOptions};
//!
//! # async fn run() -> Result<(), consul_api::Error> {
//! let client = Client::new(Config::from_env()?)?;
//! let (entries, meta) = client
//!     .health()
//!     .service("adder", &QueryOptions::default().passing(true))
//!     .await?;
//! for entry in &entries {
//!     println!("{} at {}:{}", entry.service.id, entry.dial_address(), entry.service.port);
//! }
//! // Block until the set changes (or the wait runs out).
//! let (_changed, _) = client
//!     .health()
//!     .service("adder", &QueryOptions::blocking(meta.last_index, std::time::Duration::from_secs(60)))
//!     .await?;
//! # Ok(())
//! # }
//! ```

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
