//! The service discovery model and the two traits every backend implements.
//!
//! A server publishes itself through a [`Registry`]; a caller learns the healthy instances of
//! a service through a [`Resolver`], once ([`Resolver::resolve`]) or as a stream of
//! [`Update`]s ([`Resolver::watch`]). This crate knows nothing of Consul or gRPC: backends
//! (such as `consul-api`) implement the traits, adapters (such as `grpc-register` and
//! `grpc-resolve`) consume them, and tests plug in [`MemoryRegistry`] or, with the `mock`
//! feature, the mocks in [`mock`].
//!
//! # Examples
//!
//! ```
//! use discovery_core::{MemoryRegistry, Query, Registration, Registry, Resolver, ServiceInstance, Update};
//! use futures_util::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), discovery_core::Error> {
//! let registry = MemoryRegistry::new();
//! let mut updates = registry.watch(&Query::new("adder"));
//! // The watch first says what it sees now, then every change.
//! assert!(matches!(updates.next().await, Some(Update::DoesNotExist)));
//!
//! let instance = ServiceInstance::new("adder-1", "adder", "127.0.0.1", 50051);
//! registry.register(&Registration::new(instance)).await?;
//!
//! let found = registry.resolve(&Query::new("adder")).await?;
//! assert_eq!(found[0].authority(), "127.0.0.1:50051");
//! assert!(matches!(updates.next().await, Some(Update::Snapshot(s)) if s.len() == 1));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod backoff;
mod error;
mod memory;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
mod model;
mod registry;
mod resolver;
mod update;

pub use backoff::Backoff;
pub use error::{Error, SharedError};
pub use memory::MemoryRegistry;
pub use model::{
    CheckSpec, HealthStatus, ParseHealthStatusError, Query, Registration, ServiceInstance, Weights,
};
#[cfg(any(test, feature = "mock"))]
pub use registry::MockRegistry;
pub use registry::Registry;
#[cfg(any(test, feature = "mock"))]
pub use resolver::MockResolver;
pub use resolver::{Resolver, UpdateStream};
pub use update::Update;
