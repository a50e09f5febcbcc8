//! Binds a tonic server's lifecycle to a service registry.
//!
//! A server is published only once it can serve, and unpublished before it stops:
//!
//! - **start**: bind the listener (TCP_NODELAY on; port 0 picks a free port, and the real one
//!   is registered) → serve → mark `grpc.health.v1` SERVING → register, with a gRPC check
//!   against that health service by default;
//! - **while running**: a maintenance task keeps the registration alive: it retries a
//!   registration that failed (a registry that is down never stops the server; it is
//!   probed at most a second apart, so the server is back within a second of it
//!   answering), asks every check interval whether the registry still knows the instance
//!   and registers it again if not (an agent that restarted empty learns it within one
//!   interval), and reports TTL checks from the health state;
//! - **stop** (SIGINT, SIGTERM or a future of yours): NOT_SERVING → deregister → wait a
//!   drain period so resolvers see the removal → graceful tonic shutdown, with a deadline
//!   for in-flight calls;
//! - **a crash** leaves the registration critical until the registry removes it after the
//!   deregister-after (10 minutes unless set otherwise).
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//! use discovery_core::MemoryRegistry;
//! use grpc_register::Registered;
//! use tonic::transport::Server;
//!
//! # async fn run() -> Result<(), grpc_register::Error> {
//! let registry = Arc::new(MemoryRegistry::new());
//! let router = Server::builder().add_routes(Default::default()); // add your services here
//! Registered::builder(registry, "adder")
//!     .serve(router, "127.0.0.1:0".parse().unwrap())
//!     .await
//! # }
//! ```

#![forbid(unsafe_code)]

// Layers, each using only those before it: `error`, `signal`, `metrics`, `advertise`, `http_health`;
// `keepalive`; `server`; `builder` on top.
mod advertise;
mod builder;
mod error;
mod http_health;
mod keepalive;
pub mod metrics;
mod server;
mod signal;

pub use advertise::local_ip_toward;
pub use builder::{Builder, CheckKind, Registered, RouterLayer};
pub use error::Error;
pub use server::Running;
pub use signal::shutdown_signal;
