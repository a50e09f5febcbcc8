//! A channel's running totals: [`Counters`] that the pool, its reconnect loops, the
//! discovery task and the call path record into, one method per event, and that produce
//! the public [`Stats`].
//!
//! May use: nothing else of the crate.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals of what a channel did; see [`DiscoveredChannel::stats`].
///
/// [`DiscoveredChannel::stats`]: crate::DiscoveredChannel::stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls started.
    pub calls: u64,
    /// Attempts that ended in a transport error or an `Unavailable` answer (a call retried
    /// elsewhere counts its failed first attempt here).
    pub failures: u64,
    /// Attempts sent again to another endpoint.
    pub retries: u64,
    /// Calls that found no endpoint within the empty timeout.
    pub no_endpoints: u64,
    /// Endpoints ejected by outlier detection.
    pub ejections: u64,
    /// Discovery updates applied (snapshots, including unchanged ones).
    pub updates: u64,
    /// Errors the resolver reported (the last good set was kept).
    pub resolver_errors: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Connections cut because their server stopped answering (its calls stopped
    /// completing while others' completed, and it did not answer a probe).
    pub unresponsive: u64,
}

/// The live counters behind [`Stats`]; each only ever goes up.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
    no_endpoints: AtomicU64,
    ejections: AtomicU64,
    updates: AtomicU64,
    resolver_errors: AtomicU64,
    connect_failures: AtomicU64,
    unresponsive: AtomicU64,
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

// === impl Counters ===

impl Counters {
    /// A call started.
    pub(crate) fn call_started(&self) {
        inc(&self.calls);
    }

    /// An attempt failed in transport or was answered `Unavailable`.
    pub(crate) fn attempt_failed(&self) {
        inc(&self.failures);
    }

    /// A call is sent again, to another endpoint.
    pub(crate) fn retried(&self) {
        inc(&self.retries);
    }

    /// A call found no endpoint in time.
    pub(crate) fn found_no_endpoint(&self) {
        inc(&self.no_endpoints);
    }

    /// Outlier detection ejected an endpoint.
    pub(crate) fn endpoint_ejected(&self) {
        inc(&self.ejections);
    }

    /// A discovery update was applied.
    pub(crate) fn update_applied(&self) {
        inc(&self.updates);
    }

    /// The resolver reported an error.
    pub(crate) fn resolver_failed(&self) {
        inc(&self.resolver_errors);
    }

    /// A connection attempt failed.
    pub(crate) fn connect_failed(&self) {
        inc(&self.connect_failures);
    }

    /// A connection was cut: its server did not answer a probe.
    pub(crate) fn endpoint_unresponsive(&self) {
        inc(&self.unresponsive);
    }

    /// The totals so far.
    pub(crate) fn stats(&self) -> Stats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            calls: get(&self.calls),
            failures: get(&self.failures),
            retries: get(&self.retries),
            no_endpoints: get(&self.no_endpoints),
            ejections: get(&self.ejections),
            updates: get(&self.updates),
            resolver_errors: get(&self.resolver_errors),
            connect_failures: get(&self.connect_failures),
            unresponsive: get(&self.unresponsive),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_counts_in_its_own_total() {
        let counters = Counters::default();
        counters.call_started();
        counters.call_started();
        counters.attempt_failed();
        counters.retried();
        counters.found_no_endpoint();
        counters.endpoint_ejected();
        counters.update_applied();
        counters.resolver_failed();
        counters.connect_failed();
        counters.connect_failed();
        counters.connect_failed();
        counters.endpoint_unresponsive();
        assert_eq!(
            counters.stats(),
            Stats {
                calls: 2,
                failures: 1,
                retries: 1,
                no_endpoints: 1,
                ejections: 1,
                updates: 1,
                resolver_errors: 1,
                connect_failures: 3,
                unresponsive: 1,
            },
            "expected every event in its own field"
        );
    }
}
