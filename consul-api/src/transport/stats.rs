//! What a transport has done, counted as it goes: the figures tests assert and benchmarks
//! print. Uses the protocol type of `split`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::split::Protocol;

/// Counters shared by a transport and its lanes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) preemptions: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a client's transport (shared by its clones and everything built on them) has done
/// so far, from [`Client::stats`](crate::Client::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// The protocol spoken with the agent.
    pub protocol: Protocol,
    /// Requests sent (each retry counts).
    pub requests: u64,
    /// Answers `429 Too Many Requests` (retried with backoff).
    pub throttled: u64,
    /// Connections opened to the agent so far (not how many are open now).
    pub connections_opened: u64,
    /// Polls sent for watches outside the blocking set.
    pub polls: u64,
    /// Blocking queries asked to give their connection to a watch that changed more
    /// recently.
    pub preemptions: u64,
    /// Blocking queries that may be in flight at once (the budget's blocking part).
    pub blocking_capacity: usize,
    /// Blocking slots held now.
    pub blocking_held: usize,
}

impl ClientStats {
    pub(crate) fn from_counters(counters: &Counters) -> Self {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClientStats {
            requests: get(&counters.requests),
            throttled: get(&counters.throttled),
            connections_opened: get(&counters.connections_opened),
            polls: get(&counters.polls),
            preemptions: get(&counters.preemptions),
            ..ClientStats::default()
        }
    }
}
