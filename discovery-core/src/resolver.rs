//! The trait callers learn instances through, and the stream its watch returns. Uses the
//! model, the error type and [`Update`].

use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

use crate::error::Error;
use crate::model::{Query, ServiceInstance};
use crate::update::Update;

/// The stream a watch returns. It never ends while the resolver lives: failures arrive as
/// [`Update::Error`] items.
pub type UpdateStream = Pin<Box<dyn Stream<Item = Update> + Send + 'static>>;

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
impl<T: Resolver + ?Sized> Resolver for std::sync::Arc<T> {
    async fn resolve(&self, query: &Query) -> Result<Vec<ServiceInstance>, Error> {
        (**self).resolve(query).await
    }

    fn watch(&self, query: &Query) -> UpdateStream {
        (**self).watch(query)
    }
}
