//! The client's metrics, through the [`metrics`] facade: their names, labels and units,
//! [`describe`], what a watch request's outcome was, and the handles the watch loops and
//! the transport record into.
//!
//! This crate installs no recorder; without one every handle is the facade's no-op.
//! Handles are registered once, when a watch loop or a transport starts. Labels stay few
//! and bounded: `service` (a watched service's name), `outcome` (the fixed set of
//! [`WATCH_REQUESTS`]), `agent` (the agent's `host:port`). Never a token, never a request's
//! field.
//!
//! Uses nothing else of the crate.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use metrics::{Counter, Gauge, Unit};

/// Requests of watch loops, by outcome (counter; `service`, `outcome`: `ok`, `woken`,
/// `timeout`, `throttled`, `error`).
pub const WATCH_REQUESTS: &str = "consul_api_watch_requests_total";
/// Watch loops running (gauge): one per distinct watched query.
pub const WATCHES_ACTIVE: &str = "consul_api_watches_active";
/// Watch loops holding a blocking slot of the connection budget (gauge); the others poll.
pub const WATCHES_BLOCKING: &str = "consul_api_watches_blocking";
/// Times a watch's index went backwards and the watch read afresh (counter; `service`).
pub const INDEX_RESETS: &str = "consul_api_watch_index_resets_total";
/// Connections to the agent carrying a request now (gauge; `agent`).
pub const CONNECTIONS_IN_USE: &str = "consul_api_connections_in_use";
/// The connection budget: the most connections the client opens to the agent (gauge;
/// `agent`).
pub const CONNECTIONS_BUDGET: &str = "consul_api_connections_budget";

/// Describes every metric of this crate to the installed recorder (help text and units).
/// Call it once, after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        WATCH_REQUESTS,
        Unit::Count,
        "Watch requests by outcome: ok (a read that does not block, or a poll), woken (a blocking query answered by a change), timeout (a blocking query whose wait ended unchanged), throttled (429), error."
    );
    describe_gauge!(
        WATCHES_ACTIVE,
        Unit::Count,
        "Watch loops running, one per watched query."
    );
    describe_gauge!(
        WATCHES_BLOCKING,
        Unit::Count,
        "Watch loops holding a blocking slot of the connection budget."
    );
    describe_counter!(
        INDEX_RESETS,
        Unit::Count,
        "Times a watch's index went backwards and the watch read afresh."
    );
    describe_gauge!(
        CONNECTIONS_IN_USE,
        Unit::Count,
        "Connections to the agent carrying a request now."
    );
    describe_gauge!(
        CONNECTIONS_BUDGET,
        Unit::Count,
        "The most connections the client opens to the agent."
    );
}

/// How one watch request ended: the `outcome` label of [`WATCH_REQUESTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchOutcome {
    /// An answer to a read that does not block (the first, one after a failure, a poll).
    Ok,
    /// A blocking query answered because the index moved.
    Woken,
    /// A blocking query answered unchanged when its wait ended.
    Timeout,
    /// Refused with `429 Too Many Requests`.
    Throttled,
    /// Any other failure.
    Error,
}

const OUTCOMES: [WatchOutcome; 5] = [
    WatchOutcome::Ok,
    WatchOutcome::Woken,
    WatchOutcome::Timeout,
    WatchOutcome::Throttled,
    WatchOutcome::Error,
];

impl WatchOutcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            WatchOutcome::Ok => "ok",
            WatchOutcome::Woken => "woken",
            WatchOutcome::Timeout => "timeout",
            WatchOutcome::Throttled => "throttled",
            WatchOutcome::Error => "error",
        }
    }

    /// The outcome of a request sent with index `sent`, `blocking` on a held slot, that
    /// came back with index `returned` (`Ok`) or failed with an HTTP status if the agent
    /// answered one (`Err`).
    ///
    /// ```text
    /// blocking, sent 7, returned 9  → woken
    /// blocking, sent 7, returned 7  → timeout
    /// not blocking (a poll, a first read) → ok
    /// failed 429 → throttled; other failure → error
    /// ```
    pub(crate) fn of(blocking: bool, sent: u64, returned: Result<u64, Option<u16>>) -> Self {
        match returned {
            Err(Some(429)) => WatchOutcome::Throttled,
            Err(_) => WatchOutcome::Error,
            Ok(_) if !blocking || sent == 0 => WatchOutcome::Ok,
            Ok(returned) if returned.max(1) != sent => WatchOutcome::Woken,
            Ok(_) => WatchOutcome::Timeout,
        }
    }
}

/// One watch loop's handles, registered when it starts; it counts as active until dropped.
#[derive(Debug)]
pub(crate) struct WatchMetrics {
    requests: [Counter; OUTCOMES.len()],
    index_resets: Counter,
    active: Gauge,
    blocking: Gauge,
    /// Whether this loop is counted in `blocking` now.
    hot: AtomicBool,
}

// === impl WatchMetrics ===

impl WatchMetrics {
    pub(crate) fn new(service: &str) -> Self {
        let active = metrics::gauge!(WATCHES_ACTIVE);
        active.increment(1);
        WatchMetrics {
            requests: OUTCOMES.map(|outcome| {
                metrics::counter!(WATCH_REQUESTS, "service" => service.to_owned(), "outcome" => outcome.label())
            }),
            index_resets: metrics::counter!(INDEX_RESETS, "service" => service.to_owned()),
            active,
            blocking: metrics::gauge!(WATCHES_BLOCKING),
            hot: AtomicBool::new(false),
        }
    }

    pub(crate) fn request(&self, outcome: WatchOutcome) {
        self.requests[outcome as usize].increment(1);
    }

    pub(crate) fn index_reset(&self) {
        self.index_resets.increment(1);
    }

    /// The loop holds a blocking slot (`true`) or polls.
    pub(crate) fn hot(&self, hot: bool) {
        if self.hot.swap(hot, Ordering::Relaxed) == hot {
            return;
        }
        if hot {
            self.blocking.increment(1);
        } else {
            self.blocking.decrement(1);
        }
    }
}

impl Drop for WatchMetrics {
    fn drop(&mut self) {
        self.hot(false);
        self.active.decrement(1);
    }
}

/// A transport's handles: its budget and the connections carrying a request.
#[derive(Debug)]
pub(crate) struct TransportMetrics {
    in_use: Gauge,
    budget: Gauge,
}

// === impl TransportMetrics ===

impl TransportMetrics {
    /// The handles of the transport to `agent` (`host:port`).
    pub(crate) fn new(agent: String) -> Self {
        TransportMetrics {
            in_use: metrics::gauge!(CONNECTIONS_IN_USE, "agent" => agent.clone()),
            budget: metrics::gauge!(CONNECTIONS_BUDGET, "agent" => agent),
        }
    }

    /// The budget is `connections`.
    pub(crate) fn budget(&self, connections: usize) {
        self.budget.set(connections as f64);
    }

    /// A request goes on the connection whose count of requests is `requests`; the
    /// connection counts as in use until the returned guard is dropped.
    pub(crate) fn using<'a>(&'a self, requests: &'a AtomicUsize) -> InUse<'a> {
        if requests.fetch_add(1, Ordering::Relaxed) == 0 {
            self.in_use.increment(1);
        }
        InUse {
            metrics: self,
            requests,
        }
    }
}

/// One request on a connection; see [`TransportMetrics::using`].
#[derive(Debug)]
pub(crate) struct InUse<'a> {
    metrics: &'a TransportMetrics,
    requests: &'a AtomicUsize,
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        if self.requests.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.metrics.in_use.decrement(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_readback::{DebuggingRecorder, MetricKind, Recorded};

    use super::*;

    #[test]
    fn outcomes_tell_a_woken_blocking_query_from_one_that_timed_out() {
        use WatchOutcome::{Error, Throttled, Timeout, Woken};
        assert_eq!(WatchOutcome::of(true, 7, Ok(9)), Woken, "the index moved");
        assert_eq!(WatchOutcome::of(true, 7, Ok(7)), Timeout, "the wait ended");
        assert_eq!(
            WatchOutcome::of(true, 7, Ok(3)),
            Woken,
            "backwards is a change"
        );
        assert_eq!(WatchOutcome::of(true, 1, Ok(0)), Timeout, "0 reads as 1");
        assert_eq!(
            WatchOutcome::of(true, 0, Ok(5)),
            WatchOutcome::Ok,
            "a first read does not block"
        );
        assert_eq!(
            WatchOutcome::of(false, 7, Ok(9)),
            WatchOutcome::Ok,
            "a poll does not block"
        );
        assert_eq!(WatchOutcome::of(true, 7, Err(Some(429))), Throttled, "429");
        assert_eq!(WatchOutcome::of(false, 0, Err(Some(500))), Error, "500");
        assert_eq!(WatchOutcome::of(true, 7, Err(None)), Error, "no answer");
    }

    #[test]
    fn a_watch_counts_as_active_until_dropped_and_as_blocking_while_hot() {
        let recorder = DebuggingRecorder::new();
        let recorded = Recorded::new(&recorder);
        metrics::with_local_recorder(&recorder, || {
            let a = WatchMetrics::new("adder");
            let b = WatchMetrics::new("multiplier");
            a.hot(true);
            a.hot(true);
            b.request(WatchOutcome::Woken);
            b.request(WatchOutcome::Woken);
            b.index_reset();
            assert_eq!(
                recorded.value(MetricKind::Gauge, WATCHES_ACTIVE, &[]),
                2.0,
                "two loops"
            );
            assert_eq!(
                recorded.value(MetricKind::Gauge, WATCHES_BLOCKING, &[]),
                1.0,
                "a holds a slot, counted once"
            );
            drop(a);
            assert_eq!(
                recorded.value(MetricKind::Gauge, WATCHES_BLOCKING, &[]),
                0.0,
                "a gone: its slot with it"
            );
            assert_eq!(
                recorded.value(MetricKind::Gauge, WATCHES_ACTIVE, &[]),
                1.0,
                "one loop left"
            );
        });
        assert_eq!(
            recorded.value(
                MetricKind::Counter,
                WATCH_REQUESTS,
                &[("service", "multiplier"), ("outcome", "woken")]
            ),
            2.0,
            "two woken requests of multiplier"
        );
        assert_eq!(
            recorded.value(
                MetricKind::Counter,
                INDEX_RESETS,
                &[("service", "multiplier")]
            ),
            1.0,
            "one index reset"
        );
    }

    #[test]
    fn a_connection_is_in_use_while_any_request_is_on_it() {
        let recorder = DebuggingRecorder::new();
        let recorded = Recorded::new(&recorder);
        let in_use = || {
            recorded.value(
                MetricKind::Gauge,
                CONNECTIONS_IN_USE,
                &[("agent", "127.0.0.1:8500")],
            )
        };
        metrics::with_local_recorder(&recorder, || {
            let transport = TransportMetrics::new("127.0.0.1:8500".to_owned());
            let (first, second) = (AtomicUsize::new(0), AtomicUsize::new(0));
            let one = transport.using(&first);
            let two = transport.using(&first);
            assert_eq!(in_use(), 1.0, "two streams on one connection: one in use");
            let three = transport.using(&second);
            assert_eq!(in_use(), 2.0, "a second connection");
            drop(one);
            drop(three);
            assert_eq!(in_use(), 1.0, "the first still carries a request");
            drop(two);
            assert_eq!(in_use(), 0.0, "none in use");
        });
    }
}
