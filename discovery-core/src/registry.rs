//! The trait servers publish themselves through. Uses the model and the error type.

use async_trait::async_trait;

use crate::error::Error;
use crate::model::{HealthStatus, Registration};

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

    /// Reports the status of an instance registered with a [`CheckSpec::Ttl`](crate::CheckSpec::Ttl) check, with
    /// a human-readable output, and restarts its TTL. Fails with [`Error::NotFound`] when
    /// the registry does not know the check (re-register, then report again).
    async fn report(
        &self,
        instance_id: &str,
        status: HealthStatus,
        output: &str,
    ) -> Result<(), Error>;
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
