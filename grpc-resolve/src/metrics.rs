//! The channel's metrics, through the [`metrics`] facade: their names, labels and units,
//! [`describe`], and the handles the pool and the call path record into.
//!
//! This crate installs no recorder. Without one every handle is the facade's no-op, so
//! recording costs a branch; handles are registered once (per channel, per endpoint when
//! discovery adds it), never on the call path. Call latency needs two clock reads per
//! call, so it is timed only once [`describe`] was called (which an application that
//! installs a recorder does to get the descriptions): a process without a recorder reads
//! no clock for it.
//!
//! Labels stay few and bounded: `service` (the channel's), `endpoint` (the instance id
//! discovery reported), `state` and `reason` (fixed sets below). Never a request's field.
//!
//! May use: nothing else of the crate.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use metrics::{Counter, Gauge, Histogram, Unit};
use tokio::time::Instant;

/// Calls started (counter; `service`).
pub const CALLS: &str = "grpc_resolve_calls_total";
/// Attempts sent to an endpoint (counter; `service`, `endpoint`). A call retried elsewhere
/// counts on both endpoints, as [`EndpointInfo::calls`](crate::EndpointInfo::calls) does.
pub const ENDPOINT_CALLS: &str = "grpc_resolve_endpoint_calls_total";
/// Attempts on an endpoint that failed in transport or were answered `Unavailable`
/// (counter; `service`, `endpoint`).
pub const ENDPOINT_FAILURES: &str = "grpc_resolve_endpoint_failures_total";
/// Endpoints in each state (gauge; `service`, `state`: `connecting`, `ready`, `stale`,
/// `ejected`). A removed endpoint leaves the count.
pub const ENDPOINTS: &str = "grpc_resolve_endpoints";
/// Attempts sent again to another endpoint (counter; `service`).
pub const RETRIES: &str = "grpc_resolve_retries_total";
/// Hedged attempts sent beside one still waiting for its answer (counter; `service`).
pub const HEDGES: &str = "grpc_resolve_hedges_total";
/// Endpoints ejected by outlier detection (counter; `service`, `reason`).
pub const EJECTIONS: &str = "grpc_resolve_ejections_total";
/// Discovery updates applied, unchanged ones included (counter; `service`).
pub const UPDATES: &str = "grpc_resolve_discovery_updates_total";
/// Errors the resolver reported; the last good set was kept (counter; `service`).
pub const RESOLVER_ERRORS: &str = "grpc_resolve_resolver_errors_total";
/// From the discovery task receiving a resolver update to the pool having applied it
/// (histogram, seconds; `service`).
pub const APPLY_SECONDS: &str = "grpc_resolve_discovery_apply_seconds";
/// Calls that found no endpoint ready at once and waited for one (counter; `service`).
pub const WAITED: &str = "grpc_resolve_calls_waited_total";
/// Calls that found no endpoint within the empty timeout (counter; `service`).
pub const NO_ENDPOINT: &str = "grpc_resolve_calls_no_endpoint_total";
/// Failed connection attempts (counter; `service`).
pub const CONNECT_FAILURES: &str = "grpc_resolve_connect_failures_total";
/// From a call's start to its response headers, or its error (histogram, seconds;
/// `service`). Recorded only after [`describe`].
pub const CALL_SECONDS: &str = "grpc_resolve_call_duration_seconds";

/// Whether calls are timed: set by [`describe`].
static TIMING: AtomicBool = AtomicBool::new(false);

/// Describes every metric of this crate to the installed recorder (help text and units),
/// and turns on call timing. Call it once, after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(CALLS, Unit::Count, "Calls started.");
    describe_counter!(
        ENDPOINT_CALLS,
        Unit::Count,
        "Attempts sent to the endpoint (a retried call counts on both endpoints)."
    );
    describe_counter!(
        ENDPOINT_FAILURES,
        Unit::Count,
        "Attempts on the endpoint that failed in transport or were answered Unavailable."
    );
    describe_gauge!(
        ENDPOINTS,
        Unit::Count,
        "Endpoints by state: connecting, ready, stale, ejected."
    );
    describe_counter!(
        RETRIES,
        Unit::Count,
        "Attempts sent again to another endpoint."
    );
    describe_counter!(
        HEDGES,
        Unit::Count,
        "Hedged attempts sent beside one still waiting for its answer."
    );
    describe_counter!(
        EJECTIONS,
        Unit::Count,
        "Endpoints ejected by outlier detection, by reason."
    );
    describe_counter!(UPDATES, Unit::Count, "Discovery updates applied.");
    describe_counter!(
        RESOLVER_ERRORS,
        Unit::Count,
        "Errors the resolver reported (the last good set was kept)."
    );
    describe_histogram!(
        APPLY_SECONDS,
        Unit::Seconds,
        "From receiving a resolver update to the pool having applied it."
    );
    describe_counter!(
        WAITED,
        Unit::Count,
        "Calls that found no ready endpoint at once and waited for one."
    );
    describe_counter!(
        NO_ENDPOINT,
        Unit::Count,
        "Calls that found no endpoint within the empty timeout."
    );
    describe_counter!(CONNECT_FAILURES, Unit::Count, "Failed connection attempts.");
    describe_histogram!(
        CALL_SECONDS,
        Unit::Seconds,
        "From a call's start to its response headers or its error."
    );
    TIMING.store(true, Ordering::Relaxed);
}

/// Where an endpoint stands, as the `state` label of [`ENDPOINTS`] says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointState {
    Connecting,
    Ready,
    Stale,
    Ejected,
    /// Up, but its health service says it is not serving (or has not answered yet).
    NotServing,
    /// Up, but suspected of no longer answering.
    Unresponsive,
}

const STATES: [EndpointState; 6] = [
    EndpointState::Connecting,
    EndpointState::Ready,
    EndpointState::Stale,
    EndpointState::Ejected,
    EndpointState::NotServing,
    EndpointState::Unresponsive,
];

/// No state: the endpoint was removed (or not counted yet).
const NO_STATE: u8 = u8::MAX;

impl EndpointState {
    pub(crate) fn label(self) -> &'static str {
        match self {
            EndpointState::Connecting => "connecting",
            EndpointState::Ready => "ready",
            EndpointState::Stale => "stale",
            EndpointState::Ejected => "ejected",
            EndpointState::NotServing => "not_serving",
            EndpointState::Unresponsive => "unresponsive",
        }
    }

    fn index(self) -> u8 {
        self as u8
    }
}

/// Why outlier detection ejected an endpoint: the `reason` label of [`EJECTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EjectionReason {
    /// Failed attempts in a row reached the threshold.
    ConsecutiveFailures,
    /// Its failure rate over an interval stood out from the others'.
    FailureRate,
}

const REASONS: [EjectionReason; 2] = [
    EjectionReason::ConsecutiveFailures,
    EjectionReason::FailureRate,
];

impl EjectionReason {
    pub(crate) fn label(self) -> &'static str {
        match self {
            EjectionReason::ConsecutiveFailures => "consecutive_failures",
            EjectionReason::FailureRate => "failure_rate",
        }
    }
}

/// One channel's handles, registered when the channel is built.
#[derive(Debug)]
pub(crate) struct ServiceMetrics {
    calls: Counter,
    retries: Counter,
    hedges: Counter,
    ejections: [Counter; REASONS.len()],
    updates: Counter,
    resolver_errors: Counter,
    apply_seconds: Histogram,
    waited: Counter,
    no_endpoint: Counter,
    connect_failures: Counter,
    call_seconds: Histogram,
}

// === impl ServiceMetrics ===

impl ServiceMetrics {
    pub(crate) fn new(service: &str) -> Self {
        let counter = |name: &'static str| metrics::counter!(name, "service" => service.to_owned());
        ServiceMetrics {
            calls: counter(CALLS),
            retries: counter(RETRIES),
            hedges: counter(HEDGES),
            ejections: REASONS.map(|reason| {
                metrics::counter!(EJECTIONS, "service" => service.to_owned(), "reason" => reason.label())
            }),
            updates: counter(UPDATES),
            resolver_errors: counter(RESOLVER_ERRORS),
            apply_seconds: metrics::histogram!(APPLY_SECONDS, "service" => service.to_owned()),
            waited: counter(WAITED),
            no_endpoint: counter(NO_ENDPOINT),
            connect_failures: counter(CONNECT_FAILURES),
            call_seconds: metrics::histogram!(CALL_SECONDS, "service" => service.to_owned()),
        }
    }

    /// A call started; the timer records its duration when dropped (if calls are timed).
    pub(crate) fn call_started(&self) -> CallTimer<'_> {
        self.calls.increment(1);
        CallTimer {
            histogram: &self.call_seconds,
            started: TIMING.load(Ordering::Relaxed).then(Instant::now),
        }
    }

    pub(crate) fn retried(&self) {
        self.retries.increment(1);
    }

    pub(crate) fn hedged(&self) {
        self.hedges.increment(1);
    }

    pub(crate) fn ejected(&self, reason: EjectionReason) {
        self.ejections[reason as usize].increment(1);
    }

    pub(crate) fn update_applied(&self) {
        self.updates.increment(1);
    }

    /// The pool has applied an update received at `received`.
    pub(crate) fn update_done(&self, received: Instant) {
        self.apply_seconds.record(received.elapsed().as_secs_f64());
    }

    pub(crate) fn resolver_failed(&self) {
        self.resolver_errors.increment(1);
    }

    pub(crate) fn waited(&self) {
        self.waited.increment(1);
    }

    pub(crate) fn found_no_endpoint(&self) {
        self.no_endpoint.increment(1);
    }

    pub(crate) fn connect_failed(&self) {
        self.connect_failures.increment(1);
    }
}

/// Times one call, from [`ServiceMetrics::call_started`] until dropped, however the call
/// ends (an answer, an error, or the caller giving up).
#[derive(Debug)]
pub(crate) struct CallTimer<'a> {
    histogram: &'a Histogram,
    started: Option<Instant>,
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            self.histogram.record(started.elapsed().as_secs_f64());
        }
    }
}

/// One endpoint's handles, registered when discovery adds it.
#[derive(Debug)]
pub(crate) struct EndpointMetrics {
    calls: Counter,
    failures: Counter,
    /// The service's gauge for each state, by [`EndpointState::index`].
    states: [Gauge; STATES.len()],
    /// The state this endpoint is counted in now, or [`NO_STATE`].
    state: AtomicU8,
}

// === impl EndpointMetrics ===

impl EndpointMetrics {
    /// Handles for endpoint `id` of `service`, counted as connecting.
    pub(crate) fn new(service: &str, id: &str) -> Self {
        let metrics = EndpointMetrics {
            calls: metrics::counter!(ENDPOINT_CALLS, "service" => service.to_owned(), "endpoint" => id.to_owned()),
            failures: metrics::counter!(ENDPOINT_FAILURES, "service" => service.to_owned(), "endpoint" => id.to_owned()),
            states: STATES.map(|state| {
                metrics::gauge!(ENDPOINTS, "service" => service.to_owned(), "state" => state.label())
            }),
            state: AtomicU8::new(NO_STATE),
        };
        metrics.moved_to(Some(EndpointState::Connecting));
        metrics
    }

    /// An attempt was sent to it.
    pub(crate) fn called(&self) {
        self.calls.increment(1);
    }

    /// An attempt on it failed.
    pub(crate) fn failed(&self) {
        self.failures.increment(1);
    }

    /// It is now in `state` (`None`: removed); moves it between the state gauges.
    pub(crate) fn moved_to(&self, state: Option<EndpointState>) {
        let new = state.map_or(NO_STATE, EndpointState::index);
        let old = self.state.swap(new, Ordering::Relaxed);
        if old == new {
            return;
        }
        if let Some(gauge) = self.states.get(usize::from(old)) {
            gauge.decrement(1);
        }
        if let Some(gauge) = self.states.get(usize::from(new)) {
            gauge.increment(1);
        }
    }
}

impl Drop for EndpointMetrics {
    /// An endpoint dropped without being removed first leaves the count all the same.
    fn drop(&mut self) {
        self.moved_to(None);
    }
}

#[cfg(test)]
mod tests {
    use metrics_readback::{DebuggingRecorder, Recorded};

    use super::*;

    /// The endpoint-state gauge of `state`.
    fn endpoints(recorded: &Recorded, state: &str) -> f64 {
        recorded.gauge(ENDPOINTS, &[("service", "adder"), ("state", state)])
    }

    #[test]
    fn an_endpoint_is_counted_in_exactly_one_state_until_removed() {
        let recorder = DebuggingRecorder::new();
        let recorded = Recorded::new(&recorder);
        metrics::with_local_recorder(&recorder, || {
            let a = EndpointMetrics::new("adder", "a");
            let b = EndpointMetrics::new("adder", "b");
            assert_eq!(
                endpoints(&recorded, "connecting"),
                2.0,
                "both start connecting"
            );
            a.moved_to(Some(EndpointState::Ready));
            a.moved_to(Some(EndpointState::Ready));
            assert_eq!(
                endpoints(&recorded, "ready"),
                1.0,
                "a moved once, however told"
            );
            assert_eq!(
                endpoints(&recorded, "connecting"),
                1.0,
                "b still connecting"
            );
            a.moved_to(Some(EndpointState::Ejected));
            assert_eq!(endpoints(&recorded, "ready"), 0.0, "a left ready");
            assert_eq!(endpoints(&recorded, "ejected"), 1.0, "a is ejected");
            a.moved_to(None);
            drop(a);
            assert_eq!(
                endpoints(&recorded, "ejected"),
                0.0,
                "a removed, counted nowhere"
            );
            drop(b);
            assert_eq!(
                endpoints(&recorded, "connecting"),
                0.0,
                "b dropped: counted nowhere"
            );
        });
    }

    #[test]
    fn ejections_count_by_reason_and_calls_by_endpoint() {
        let recorder = DebuggingRecorder::new();
        let recorded = Recorded::new(&recorder);
        metrics::with_local_recorder(&recorder, || {
            let service = ServiceMetrics::new("adder");
            service.ejected(EjectionReason::ConsecutiveFailures);
            let endpoint = EndpointMetrics::new("adder", "a");
            endpoint.called();
            endpoint.called();
            endpoint.failed();
        });
        assert_eq!(
            recorded.counter(EJECTIONS, &[("reason", "consecutive_failures")]),
            1,
            "one ejection, by its reason"
        );
        assert_eq!(
            recorded.counter(ENDPOINT_CALLS, &[("endpoint", "a")]),
            2,
            "two attempts on a"
        );
        assert_eq!(
            recorded.counter(ENDPOINT_FAILURES, &[("endpoint", "a")]),
            1,
            "one failure on a"
        );
    }
}
