//! What a watch yields. Uses the model and the error type.

use crate::{Error, ServiceInstance};

/// One item of a [`Resolver::watch`](crate::Resolver::watch) stream.
///
/// # Why full snapshots
///
/// Every update carries the complete set of matching instances rather than linkerd-style
/// `Add`/`Remove` deltas. The registries this crate targets are level-triggered: a Consul
/// blocking query, an etcd range read and the in-memory backend all hand back the whole set
/// each time, so a snapshot is what the backend has; turning it into deltas would move the
/// diffing into every backend and make a lost or reordered delta a silent, lasting error.
/// With snapshots, any update can be dropped or coalesced (a slow consumer only ever needs
/// the latest), recovery after a reconnect is just the next snapshot, and the consumer that
/// needs deltas (the balancer) computes them once with a pure function. The cost is copying
/// the set on every change, which is small next to the network round trip that produced it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Update {
    /// The complete current set of matching instances. Empty means the service exists but
    /// no instance matches now (all failing, say): callers should wait, not give up.
    Snapshot(Vec<ServiceInstance>),
    /// The registry does not know the service at all (no instance was ever registered, or
    /// all were removed). Distinct from an empty snapshot where the backend can tell; a
    /// backend that cannot tell sends an empty snapshot.
    DoesNotExist,
    /// The backend failed to refresh. The last snapshot stays the best knowledge; the stream
    /// goes on and recovers by itself.
    Error(Error),
}

impl Update {
    /// The instances this update says are current, if it says anything about them: the
    /// snapshot's, none for [`Update::DoesNotExist`], and `None` for an error (which changes
    /// nothing).
    pub fn instances(&self) -> Option<&[ServiceInstance]> {
        match self {
            Update::Snapshot(instances) => Some(instances),
            Update::DoesNotExist => Some(&[]),
            Update::Error(_) => None,
        }
    }
}
