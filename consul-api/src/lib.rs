//! A typed async client for Consul's HTTP API, and the Consul backend of `discovery-core`.
//!
//! [`Client`] reaches the endpoint families through handles (`client.agent()`,
//! `client.health()`, `client.status()`); reads return the value with its [`QueryMeta`],
//! whose `last_index` feeds the next blocking query. [`ConsulRegistry`] implements
//! `discovery_core::{Registry, Resolver}` on top: registration mapping, dial addresses, and
//! watches built on blocking queries with index hygiene and backoff.
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

pub mod agent;
pub mod catalog;
mod client;
mod config;
pub mod duration;
mod error;
pub mod health;
mod registry;
pub mod status;
mod types;
pub mod watch;

pub use client::{Client, Consistency, MAX_BODY, QueryMeta, QueryOptions};
pub use config::{BasicAuth, Config, DEFAULT_ADDRESS, TlsConfig, Token};
pub use error::Error;
pub use registry::{ConsulRegistry, to_instance, to_service_registration};
pub use types::{CheckStatus, HealthCheck, Meta, ServiceAddress, Weights};
pub use watch::{WatchConfig, WatchHub};
