//! A channel's running totals: [`Counters`] that the pool, its reconnect loops, the
//! discovery task and the call path record into, one method per event, and that produce
//! the public [`Stats`]; each method also records the event's metric (see the crate's
//! `metrics`).
//!
//! May use: the crate's `metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::metrics::{CallTimer, EjectionReason, ServiceMetrics};

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
    /// Retries the retry budget refused (the call got its first attempt's answer).
    pub retries_denied: u64,
    /// Endpoints the shrink guard kept as a fallback when discovery dropped them.
    pub fallbacks: u64,
    /// Connections cut because their server stopped answering (its calls stopped
    /// completing while others' completed, and it did not answer a probe).
    pub unresponsive: u64,
    /// Hedged attempts sent (see [`Hedging`](crate::Hedging)): attempts started beside
    /// one still waiting for its answer.
    pub hedges: u64,
}

/// The live counters behind [`Stats`]; each only ever goes up.
#[derive(Debug)]
pub(crate) struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
    no_endpoints: AtomicU64,
    ejections: AtomicU64,
    updates: AtomicU64,
    resolver_errors: AtomicU64,
    connect_failures: AtomicU64,
    metrics: ServiceMetrics,
    retries_denied: AtomicU64,
    fallbacks: AtomicU64,
    unresponsive: AtomicU64,
    hedges: AtomicU64,
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

// === impl Counters ===

impl Counters {
    /// The counters of the channel to `service`.
    pub(crate) fn new(service: &str) -> Self {
        Counters {
            calls: AtomicU64::default(),
            failures: AtomicU64::default(),
            retries: AtomicU64::default(),
            no_endpoints: AtomicU64::default(),
            ejections: AtomicU64::default(),
            updates: AtomicU64::default(),
            resolver_errors: AtomicU64::default(),
            connect_failures: AtomicU64::default(),
            retries_denied: AtomicU64::default(),
            fallbacks: AtomicU64::default(),
            unresponsive: AtomicU64::default(),
            hedges: AtomicU64::default(),
            metrics: ServiceMetrics::new(service),
        }
    }

    /// A call started; the timer behind the call latency metric ends when it is dropped.
    pub(crate) fn call_started(&self) -> CallTimer<'_> {
        inc(&self.calls);
        self.metrics.call_started()
    }

    /// An attempt failed in transport or was answered `Unavailable`.
    pub(crate) fn attempt_failed(&self) {
        inc(&self.failures);
    }

    /// A call is sent again, to another endpoint.
    pub(crate) fn retried(&self) {
        inc(&self.retries);
        self.metrics.retried();
    }

    /// A hedged attempt was sent.
    pub(crate) fn hedged(&self) {
        inc(&self.hedges);
        self.metrics.hedged();
    }

    /// A call found no endpoint in time.
    pub(crate) fn found_no_endpoint(&self) {
        inc(&self.no_endpoints);
        self.metrics.found_no_endpoint();
    }

    /// A call found no endpoint ready at once and waits for one (a metric only).
    pub(crate) fn call_waited(&self) {
        self.metrics.waited();
    }

    /// Outlier detection ejected an endpoint, for `reason`.
    pub(crate) fn endpoint_ejected(&self, reason: EjectionReason) {
        inc(&self.ejections);
        self.metrics.ejected(reason);
    }

    /// A discovery update is being applied.
    pub(crate) fn update_applied(&self) {
        inc(&self.updates);
        self.metrics.update_applied();
    }

    /// The pool finished applying an update received at `received` (a metric only).
    pub(crate) fn update_done(&self, received: Instant) {
        self.metrics.update_done(received);
    }

    /// The resolver reported an error.
    pub(crate) fn resolver_failed(&self) {
        inc(&self.resolver_errors);
        self.metrics.resolver_failed();
    }

    /// A connection attempt failed.
    pub(crate) fn connect_failed(&self) {
        inc(&self.connect_failures);
        self.metrics.connect_failed();
    }

    /// Calls started so far: what the retry budget's deposits are.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The retry budget refused a retry.
    pub(crate) fn retry_denied(&self) {
        inc(&self.retries_denied);
    }

    /// The shrink guard kept `n` dropped endpoints as a fallback.
    pub(crate) fn fallbacks_kept(&self, n: usize) {
        self.fallbacks.fetch_add(n as u64, Ordering::Relaxed);
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
            retries_denied: get(&self.retries_denied),
            fallbacks: get(&self.fallbacks),
            unresponsive: get(&self.unresponsive),
            hedges: get(&self.hedges),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_counts_in_its_own_total() {
        let counters = Counters::new("adder");
        drop(counters.call_started());
        drop(counters.call_started());
        counters.attempt_failed();
        counters.retried();
        counters.found_no_endpoint();
        counters.endpoint_ejected(EjectionReason::ConsecutiveFailures);
        counters.update_applied();
        counters.update_done(Instant::now());
        counters.resolver_failed();
        counters.connect_failed();
        counters.connect_failed();
        counters.connect_failed();
        counters.retry_denied();
        counters.fallbacks_kept(2);
        counters.endpoint_unresponsive();
        counters.hedged();
        counters.hedged();
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
                retries_denied: 1,
                fallbacks: 2,
                unresponsive: 1,
                hedges: 2,
            },
            "expected every event in its own field"
        );
    }
}
