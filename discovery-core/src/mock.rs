//! Test doubles: mockall mocks of the traits, and a resolver driven by hand. Uses the traits
//! and the model.
//!
//! mockall suits request/response calls (`register`, `deregister`); a watch stream is easier
//! to drive through a channel, which [`channel_resolver`] gives.
//!
//! # Examples
//!
//! ```
//! use discovery_core::mock::{channel_resolver, MockRegistry};
//! use discovery_core::{Query, Resolver, ServiceInstance, Update};
//! use futures_util::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (resolver, handle) = channel_resolver();
//! let mut updates = resolver.watch(&Query::new("adder"));
//! handle.send(Update::Snapshot(vec![ServiceInstance::new("a", "adder", "10.0.0.1", 80)]));
//! assert!(matches!(updates.next().await, Some(Update::Snapshot(s)) if s.len() == 1));
//!
//! let mut registry = MockRegistry::new();
//! registry.expect_deregister().returning(|_| Ok(()));
//! # }
//! ```

use async_trait::async_trait;
use tokio::sync::watch;

pub use crate::registry::MockRegistry;
pub use crate::resolver::MockResolver;
use crate::{Error, Query, Resolver, ServiceInstance, Update, UpdateStream};

/// A resolver whose every watch yields what its [`ResolverHandle`] sends, whatever the query.
#[derive(Debug, Clone)]
pub struct ChannelResolver {
    rx: watch::Receiver<Option<Update>>,
}

/// Feeds a [`ChannelResolver`].
#[derive(Debug)]
pub struct ResolverHandle {
    tx: watch::Sender<Option<Update>>,
}

/// A linked resolver and handle. Watches see the latest update sent (intermediate ones may be
/// coalesced, as with any watch) and nothing before the first.
pub fn channel_resolver() -> (ChannelResolver, ResolverHandle) {
    let (tx, rx) = watch::channel(None);
    (ChannelResolver { rx }, ResolverHandle { tx })
}

// === impl ResolverHandle ===

impl ResolverHandle {
    /// Sends an update to every watch.
    pub fn send(&self, update: Update) {
        self.tx.send_replace(Some(update));
    }

    /// Sends a snapshot of `instances`.
    pub fn set(&self, instances: Vec<ServiceInstance>) {
        self.send(Update::Snapshot(instances));
    }
}

// === impl ChannelResolver ===

#[async_trait]
impl Resolver for ChannelResolver {
    async fn resolve(&self, _query: &Query) -> Result<Vec<ServiceInstance>, Error> {
        match &*self.rx.borrow() {
            Some(Update::Snapshot(instances)) => Ok(instances.clone()),
            Some(Update::Error(err)) => Err(err.clone()),
            Some(Update::DoesNotExist) | None => Ok(Vec::new()),
        }
    }

    fn watch(&self, _query: &Query) -> UpdateStream {
        let mut rx = self.rx.clone();
        rx.mark_changed();
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                // When the handle is dropped the stream ends: tests use that to stop.
                rx.changed().await.ok()?;
                let update = rx.borrow_and_update().clone();
                if let Some(update) = update {
                    return Some((update, rx));
                }
            }
        }))
    }
}
