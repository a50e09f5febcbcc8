//! Discovery as a tower `Discover` stream, for callers that bring their own balancer.
//!
//! May use: `diff`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use discovery_core::{Query, Resolver, ServiceInstance, Update, UpdateStream};
use futures_core::Stream;
use tower::discover::Change;

use super::diff::diff;

type MakeEndpoint = Box<dyn FnMut(&ServiceInstance) -> Option<tonic::transport::Endpoint> + Send>;

/// A stream of `Change<String, tonic::transport::Endpoint>` keyed by instance id, made by
/// [`changes`]. It implements tower's `Discover` (any `TryStream` of `Change` does).
pub struct ChangeStream {
    updates: UpdateStream,
    current: HashMap<String, ServiceInstance>,
    pending: VecDeque<Change<String, tonic::transport::Endpoint>>,
    make: MakeEndpoint,
}

/// Follows `resolver.watch(query)` and yields the endpoint changes, keyed by instance id.
///
/// `make` turns an instance into the endpoint to connect to (`None` skips it, for instance
/// when its address is unusable). An instance whose address changed is removed and
/// inserted again; changes of weight or status yield nothing, since a plain `Endpoint` has
/// no weight. Resolver errors yield nothing: the last good set stays.
///
/// # Examples
///
/// ```
/// use discovery_core::{MemoryRegistry, Query};
/// use futures_util::StreamExt;
/// use tonic::transport::Endpoint;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = MemoryRegistry::new();
/// let changes = grpc_resolve::discover::changes(registry, Query::new("adder"), |instance| {
///     Endpoint::from_shared(format!("http://{}", instance.authority())).ok()
/// });
/// // Feed `changes` to a tower balancer, or forward it to `Channel::balance_channel`.
/// # drop(changes);
/// # }
/// ```
pub fn changes<R, F>(resolver: R, query: Query, make: F) -> ChangeStream
where
    R: Resolver,
    F: FnMut(&ServiceInstance) -> Option<tonic::transport::Endpoint> + Send + 'static,
{
    ChangeStream {
        updates: resolver.watch(&query),
        current: HashMap::new(),
        pending: VecDeque::new(),
        make: Box::new(make),
    }
}

// === impl ChangeStream ===

impl ChangeStream {
    fn queue(&mut self, snapshot: &[ServiceInstance]) {
        let changes = diff(&self.current, snapshot);
        for id in &changes.remove {
            if self.current.remove(id).is_some() {
                self.pending.push_back(Change::Remove(id.clone()));
            }
        }
        for instance in &changes.insert {
            match (self.make)(instance) {
                Some(endpoint) => {
                    self.current.insert(instance.id.clone(), instance.clone());
                    self.pending
                        .push_back(Change::Insert(instance.id.clone(), endpoint));
                }
                None => {
                    tracing::warn!(endpoint = %instance.id, "skipping an instance with no endpoint")
                }
            }
        }
        for instance in changes.update {
            if let Some(known) = self.current.get_mut(&instance.id) {
                *known = instance;
            }
        }
    }
}

impl Stream for ChangeStream {
    type Item = Result<Change<String, tonic::transport::Endpoint>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            let update = match self.updates.as_mut().poll_next(cx) {
                Poll::Ready(Some(update)) => update,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            match update {
                Update::Snapshot(instances) => self.queue(&instances),
                Update::DoesNotExist => self.queue(&[]),
                Update::Error(error) => {
                    tracing::warn!(%error, "resolver failed; keeping the last known endpoints");
                }
                _ => {}
            }
        }
    }
}

impl fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeStream")
            .field("current", &self.current.keys().collect::<Vec<_>>())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use discovery_core::mock::channel_resolver;
    use futures_util::StreamExt;

    fn endpoint(instance: &ServiceInstance) -> Option<tonic::transport::Endpoint> {
        tonic::transport::Endpoint::from_shared(format!("http://{}", instance.authority())).ok()
    }

    fn describe(change: &Change<String, tonic::transport::Endpoint>) -> String {
        match change {
            Change::Insert(id, ep) => format!("+{id}@{}", ep.uri()),
            Change::Remove(id) => format!("-{id}"),
        }
    }

    fn is_discover<D: tower::discover::Discover<Key = String>>(_: &D) {}

    #[tokio::test]
    async fn snapshots_become_inserts_and_removes() {
        let (resolver, handle) = channel_resolver();
        let mut stream = changes(resolver, Query::new("adder"), endpoint);
        is_discover(&stream);
        let a = ServiceInstance::new("a", "adder", "127.0.0.1", 1);
        let b = ServiceInstance::new("b", "adder", "127.0.0.1", 2);
        handle.set(vec![a.clone(), b.clone()]);
        let mut seen = Vec::new();
        for _ in 0..2 {
            seen.push(describe(
                &stream.next().await.expect("a change").expect("infallible"),
            ));
        }
        seen.sort();
        assert_eq!(
            seen,
            ["+a@http://127.0.0.1:1/", "+b@http://127.0.0.1:2/"],
            "both inserted"
        );

        handle.set(vec![ServiceInstance::new("a", "adder", "127.0.0.1", 3)]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(describe(
                &stream.next().await.expect("a change").expect("infallible"),
            ));
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["+a@http://127.0.0.1:3/", "-a", "-b"],
            "a moved (removed, inserted) and b left"
        );
        let moved_out = seen.iter().position(|s| s == "-a").expect("a removed");
        let moved_in = seen
            .iter()
            .position(|s| s == "+a@http://127.0.0.1:3/")
            .expect("a re-inserted");
        assert!(moved_out < moved_in, "removal before re-insert: {seen:?}");
    }
}
