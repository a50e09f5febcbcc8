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
mod update;

use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

pub use backoff::Backoff;
pub use error::{Error, SharedError};
pub use memory::MemoryRegistry;
pub use model::{
    CheckSpec, HealthStatus, ParseHealthStatusError, Query, Registration, ServiceInstance, Weights,
};
pub use update::Update;

/// The stream a watch returns. It never ends while the resolver lives: failures arrive as
/// [`Update::Error`] items.
pub type UpdateStream = Pin<Box<dyn Stream<Item = Update> + Send + 'static>>;

/// Where servers publish themselves.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Registry: Send + Sync {
    /// Publishes an instance, replacing any earlier registration with the same id.
    async fn register(&self, registration: &Registration) -> Result<(), Error>;

    /// Removes an instance and its check. Fails with [`Error::NotFound`] when the registry
    /// does not know it.
    async fn deregister(&self, instance_id: &str) -> Result<(), Error>;

    /// Whether the registry still knows the instance. A server asks periodically, so that a
    /// registry that lost its state (an agent restarted empty) learns the instance again
    /// within one check interval.
    async fn is_registered(&self, instance_id: &str) -> Result<bool, Error>;

    /// Reports the status of an instance registered with a [`CheckSpec::Ttl`] check, with
    /// a human-readable output, and restarts its TTL. Fails with [`Error::NotFound`] when
    /// the registry does not know the check (re-register, then report again).
    async fn report(
        &self,
        instance_id: &str,
        status: HealthStatus,
        output: &str,
    ) -> Result<(), Error>;
}

/// Where callers learn the instances of a service.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Resolver: Send + Sync {
    /// The instances matching `query` now.
    async fn resolve(&self, query: &Query) -> Result<Vec<ServiceInstance>, Error>;

    /// A stream of the instances matching `query`: first what the backend knows now, then
    /// each change. Consecutive identical snapshots may be coalesced, and a slow consumer
    /// may miss intermediate ones; it always gets the latest.
    fn watch(&self, query: &Query) -> UpdateStream;
}

#[async_trait]
impl<T: Registry + ?Sized> Registry for std::sync::Arc<T> {
    async fn register(&self, registration: &Registration) -> Result<(), Error> {
        (**self).register(registration).await
    }

    async fn deregister(&self, instance_id: &str) -> Result<(), Error> {
        (**self).deregister(instance_id).await
    }

    async fn is_registered(&self, instance_id: &str) -> Result<bool, Error> {
        (**self).is_registered(instance_id).await
    }

    async fn report(
        &self,
        instance_id: &str,
        status: HealthStatus,
        output: &str,
    ) -> Result<(), Error> {
        (**self).report(instance_id, status, output).await
    }
}

#[async_trait]
impl<T: Resolver + ?Sized> Resolver for std::sync::Arc<T> {
    async fn resolve(&self, query: &Query) -> Result<Vec<ServiceInstance>, Error> {
        (**self).resolve(query).await
    }

    fn watch(&self, query: &Query) -> UpdateStream {
        (**self).watch(query)
    }
}
