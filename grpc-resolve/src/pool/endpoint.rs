//! One endpoint: its instance, where its connection stands (one [`State`]), when its
//! ejection ends, its load and its outlier record.
//!
//! May use: `http2` (the connection it holds), `outlier` (its failure record), the crate's
//! `balance` (the view of it a pick weighs) and `metrics` (its handles).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use discovery_core::{HealthStatus, ServiceInstance};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::http2::Connection;
use super::outlier;
use super::slow_start::Ramp;
use crate::balance::Candidate;
use crate::metrics::{EndpointMetrics, EndpointState};

/// One instance of the service and its connection.
pub(crate) struct Endpoint {
    pub(crate) id: String,
    pub(crate) authority: String,
    instance: Mutex<ServiceInstance>,
    weight: AtomicU32,
    /// Whether the instance is in the preferred locality.
    local: AtomicBool,
    /// Everything that decides whether a call may pick it, behind one lock: a pick reads it
    /// for every endpoint.
    readiness: Mutex<Readiness>,
    /// Tells the reconnect loop that the current connection takes no new calls.
    pub(super) stale: Notify,
    /// Tells the reconnect loop that the endpoint was ejected.
    pub(super) ejected: Notify,
    in_flight: AtomicUsize,
    /// Attempts sent to it, ever.
    calls: AtomicU64,
    outlier: outlier::Record,
    /// The reconnect loop's task.
    task: Mutex<Option<AbortHandle>>,
    /// Its metric handles, registered once, when discovery adds it.
    pub(crate) metrics: EndpointMetrics,
    // --- issue 14 (R2) ---
    /// Its slow-start ramp: the share of its weight it gets now.
    ramp: Ramp,
}

/// Where an endpoint's connection stands.
///
/// The reconnect loop moves it between `Connecting` and `Up`; a call that learns the
/// connection takes no new calls makes it `Stale` (and the loop connects afresh);
/// discovery's removal makes it `Removed`, for good.
enum State {
    /// No connection: the reconnect loop is making one, backing off, or waiting out an
    /// ejection.
    Connecting,
    /// Connected: calls may pick it, unless it is ejected.
    Up {
        connection: Connection,
        /// Which of the endpoint's connections this is, so that news about one
        /// connection (it takes no new calls) is not applied to the next.
        generation: u64,
    },
    /// The connection takes no new calls (the server sent GOAWAY, or it closed while
    /// streams keep its socket open); the reconnect loop was told to connect afresh.
    Stale,
    /// Left discovery, or the channel is gone: never picked, never connected again.
    Removed,
}

/// What decides whether a call may pick an endpoint: its [`State`] and its ejection.
struct Readiness {
    state: State,
    /// Connections made so far: numbers the next one's generation.
    connections: u64,
    /// Until when outlier detection keeps it out of rotation.
    ejected_until: Option<Instant>,
}

/// What one endpoint looks like now; see [`DiscoveredChannel::endpoints`].
///
/// [`DiscoveredChannel::endpoints`]: crate::DiscoveredChannel::endpoints
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointInfo {
    /// The instance id from discovery.
    pub id: String,
    /// `host:port`.
    pub authority: String,
    /// Whether it is connected and not ejected: calls may pick it.
    pub ready: bool,
    /// Calls sent to it whose response has not ended.
    pub in_flight: usize,
    /// Calls sent to it since discovery added it (a call retried elsewhere counts on
    /// both endpoints).
    pub calls: u64,
    /// Whether outlier detection took it out of rotation for now.
    pub ejected: bool,
    /// Its balancing weight: the instance's weight for its health status.
    pub weight: u32,
    /// Its health status as discovery reported it.
    pub status: HealthStatus,
    /// Its locality (zone or region) as discovery reported it.
    pub locality: Option<String>,
    /// Failed calls in a row.
    pub consecutive_failures: u32,
    // --- issue 14 (R2) ---
    /// Whether discovery dropped it but the shrink guard keeps it as a fallback (see the
    /// crate's README, "Shrink guard").
    pub fallback: bool,
    /// The percentage of its weight it gets now: below 100 during slow start.
    pub weight_percent: u32,
}

/// Locks, ignoring poisoning: every critical section in the pool leaves the data
/// consistent.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Endpoint ===

impl Endpoint {
    /// An endpoint for `instance`; `prefer` is the preferred locality, if any.
    pub(super) fn new(instance: ServiceInstance, prefer: Option<&str>) -> Self {
        Endpoint {
            id: instance.id.clone(),
            authority: instance.authority(),
            weight: AtomicU32::new(instance.effective_weight()),
            local: AtomicBool::new(in_locality(&instance, prefer)),
            readiness: Mutex::new(Readiness::new()),
            stale: Notify::new(),
            ejected: Notify::new(),
            in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            outlier: outlier::Record::default(),
            task: Mutex::new(None),
            metrics: EndpointMetrics::new(&instance.service, &instance.id),
            instance: Mutex::new(instance),
            ramp: Ramp::default(),
        }
    }

    /// Discovery changed the instance in place (weight, status, locality...).
    pub(super) fn update(&self, instance: ServiceInstance, prefer: Option<&str>) {
        self.weight
            .store(instance.effective_weight(), Ordering::Relaxed);
        self.local
            .store(in_locality(&instance, prefer), Ordering::Relaxed);
        *lock(&self.instance) = instance;
    }

    /// Hands it the reconnect loop that keeps it connected, to abort when it is retired.
    pub(super) fn set_task(&self, task: AbortHandle) {
        *lock(&self.task) = Some(task);
    }

    /// The reconnect loop made a connection (`Some`) or lost it (`None`); nothing changes
    /// once the endpoint is removed.
    pub(super) fn set_connection(&self, connection: Option<Connection>) {
        let mut readiness = lock(&self.readiness);
        match connection {
            Some(connection) => readiness.connected(connection),
            None => readiness.disconnected(),
        }
        self.metrics.moved_to(readiness.metric_state());
    }

    /// Connection `generation` takes no new calls. Returns whether that was the current
    /// connection, which then leaves rotation and the reconnect loop is told.
    pub(super) fn mark_stale(&self, generation: u64) -> bool {
        if !lock(&self.readiness).stale(generation) {
            return false;
        }
        self.refresh_state_metric();
        self.stale.notify_one();
        true
    }

    /// Outlier detection takes it out of rotation until `until`; the reconnect loop drops
    /// its connection and connects again after that.
    pub(super) fn eject_until(&self, until: Instant) {
        lock(&self.readiness).ejected_until = Some(until);
        self.refresh_state_metric();
        self.ejected.notify_one();
    }

    /// When its ejection ends, if it is ejected now.
    pub(super) fn ejected_until(&self) -> Option<Instant> {
        let until = lock(&self.readiness).ejected_until;
        until.filter(|t| *t > Instant::now())
    }

    pub(super) fn is_removed(&self) -> bool {
        matches!(lock(&self.readiness).state, State::Removed)
    }

    /// Whether a call may pick it now.
    pub(super) fn is_usable(&self, now: &mut LazyNow) -> bool {
        lock(&self.readiness).is_usable(now)
    }

    /// Whether it may take one more call under `limit`.
    pub(super) fn has_room(&self, limit: Option<usize>) -> bool {
        limit.is_none_or(|limit| self.in_flight.load(Ordering::Relaxed) < limit)
    }

    pub(super) fn is_local(&self) -> bool {
        self.local.load(Ordering::Relaxed)
    }

    pub(super) fn candidate(&self) -> Candidate {
        Candidate {
            load: self.in_flight.load(Ordering::Relaxed) as u64,
            weight: self.weight.load(Ordering::Relaxed),
        }
    }

    /// Its current connection and that connection's generation, if it is up.
    pub(super) fn connection(&self) -> Option<(Connection, u64)> {
        lock(&self.readiness).connection()
    }

    /// A call picked it: counts the call in flight and sent.
    pub(super) fn picked(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.metrics.called();
    }

    /// The call that picked it is over; returns how many calls were in flight before.
    pub(super) fn release(&self) -> usize {
        self.in_flight.fetch_sub(1, Ordering::Relaxed)
    }

    pub(super) fn outlier(&self) -> &outlier::Record {
        &self.outlier
    }

    // --- issue 14 (R2) ---

    /// Its slow-start ramp.
    pub(super) fn ramp(&self) -> &Ramp {
        &self.ramp
    }

    /// The generation of its connection, if it is up (without cloning the connection).
    pub(super) fn generation(&self) -> Option<u64> {
        match lock(&self.readiness).state {
            State::Up { generation, .. } => Some(generation),
            _ => None,
        }
    }

    /// Whether, dropped by discovery, it may stay as the shrink guard's fallback: it could
    /// serve a call now (connected, not ejected). Client-side health, where on, belongs
    /// here too: an endpoint known not to serve is no fallback.
    pub(super) fn is_fallback_worthy(&self, now: &mut LazyNow) -> bool {
        self.is_usable(now)
    }

    /// Takes it out of rotation for good: no new calls, no reconnects. In-flight calls hold
    /// their own handles on its connection and finish.
    pub(super) fn retire(&self) {
        let task = lock(&self.task).take();
        if let Some(task) = task {
            task.abort();
        }
        lock(&self.readiness).remove();
        self.refresh_state_metric();
    }

    /// Counts it in the state gauge of where it stands now (an ejection that ended moves
    /// it without an event of its own, so the reconnect loop calls this then).
    pub(super) fn refresh_state_metric(&self) {
        // Under the lock, so two transitions are counted in the order they happened.
        let readiness = lock(&self.readiness);
        self.metrics.moved_to(readiness.metric_state());
    }

    pub(super) fn info(&self, now: Instant) -> EndpointInfo {
        let instance = lock(&self.instance);
        let (ready, ejected) = {
            let readiness = lock(&self.readiness);
            let ejected = readiness.ejected_until.is_some_and(|until| until > now);
            (readiness.is_usable(&mut LazyNow::at(now)), ejected)
        };
        EndpointInfo {
            id: self.id.clone(),
            authority: self.authority.clone(),
            ready,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            ejected,
            weight: instance.effective_weight(),
            status: instance.status,
            locality: instance.locality.clone(),
            consecutive_failures: self.outlier.consecutive_failures(),
            fallback: false,
            weight_percent: self.ramp.percent(),
        }
    }
}

// === impl Readiness ===

impl Readiness {
    fn new() -> Self {
        Readiness {
            state: State::Connecting,
            connections: 0,
            ejected_until: None,
        }
    }

    /// A new connection is up, with the next generation.
    fn connected(&mut self, connection: Connection) {
        if matches!(self.state, State::Removed) {
            return;
        }
        self.connections += 1;
        self.state = State::Up {
            connection,
            generation: self.connections,
        };
    }

    /// The connection is gone (it ended, or the reconnect loop dropped it); the loop
    /// connects again.
    fn disconnected(&mut self) {
        if matches!(self.state, State::Removed) {
            return;
        }
        self.state = State::Connecting;
    }

    /// Connection `generation` takes no new calls; returns whether it was the current one
    /// (only then does anything change).
    fn stale(&mut self, generation: u64) -> bool {
        match self.state {
            State::Up { generation: up, .. } if up == generation => {
                self.state = State::Stale;
                true
            }
            _ => false,
        }
    }

    /// Dropping the connection here drops only the endpoint's handle: calls in flight keep
    /// theirs.
    fn remove(&mut self) {
        self.state = State::Removed;
    }

    /// Up and not ejected.
    fn is_usable(&self, now: &mut LazyNow) -> bool {
        matches!(self.state, State::Up { .. })
            && self.ejected_until.is_none_or(|until| until <= now.get())
    }

    /// The state the metrics count it in; `None` once removed. Reads the clock only while
    /// an ejection is set.
    fn metric_state(&self) -> Option<EndpointState> {
        let ejected = self
            .ejected_until
            .is_some_and(|until| until > Instant::now());
        match self.state {
            State::Removed => None,
            _ if ejected => Some(EndpointState::Ejected),
            State::Connecting => Some(EndpointState::Connecting),
            State::Up { .. } => Some(EndpointState::Ready),
            State::Stale => Some(EndpointState::Stale),
        }
    }

    fn connection(&self) -> Option<(Connection, u64)> {
        match &self.state {
            State::Up {
                connection,
                generation,
            } => Some((connection.clone(), *generation)),
            _ => None,
        }
    }
}

/// The current time, read at most once and only when needed: picking an endpoint needs it
/// only while some endpoint is ejected, and reading the clock is not free on every machine
/// (it traps to the hypervisor on some virtual ones).
#[derive(Debug, Default)]
pub(super) struct LazyNow(Option<Instant>);

// === impl LazyNow ===

impl LazyNow {
    pub(super) fn at(now: Instant) -> Self {
        LazyNow(Some(now))
    }

    fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// Whether `instance` is in the preferred locality `prefer` (never, without a preference).
fn in_locality(instance: &ServiceInstance, prefer: Option<&str>) -> bool {
    prefer.is_some() && instance.locality.as_deref() == prefer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(readiness: &Readiness) -> Option<u64> {
        readiness.connection().map(|(_, generation)| generation)
    }

    #[tokio::test(start_paused = true)]
    async fn connecting_then_up_then_stale_then_connecting_again() {
        let mut readiness = Readiness::new();
        let mut now = LazyNow::default();
        assert!(
            matches!(readiness.state, State::Connecting),
            "a new endpoint starts connecting"
        );
        assert!(
            !readiness.is_usable(&mut now),
            "not usable before connecting"
        );

        readiness.connected(Connection::unanswered().await);
        assert_eq!(generation(&readiness), Some(1), "the first connection");
        assert!(readiness.is_usable(&mut now), "usable once up");

        assert!(
            !readiness.stale(0),
            "news of another connection changes nothing"
        );
        assert!(readiness.is_usable(&mut now), "still up");
        assert!(readiness.stale(1), "the current connection went stale");
        assert!(matches!(readiness.state, State::Stale), "stale");
        assert!(
            !readiness.is_usable(&mut now),
            "a stale endpoint is not picked"
        );
        assert!(
            !readiness.stale(1),
            "stale once: the news is not applied twice"
        );

        readiness.disconnected();
        assert!(
            matches!(readiness.state, State::Connecting),
            "the loop drops it and connects again"
        );
        readiness.connected(Connection::unanswered().await);
        assert_eq!(
            generation(&readiness),
            Some(2),
            "a new connection, a new generation"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_while_up_replaces_the_connection_with_a_new_generation() {
        let mut readiness = Readiness::new();
        readiness.connected(Connection::unanswered().await);
        readiness.connected(Connection::unanswered().await);
        assert_eq!(generation(&readiness), Some(2), "the second connection");
        assert!(
            !readiness.stale(1),
            "news of the first leaves the second up"
        );
        assert!(
            readiness.is_usable(&mut LazyNow::default()),
            "the second connection is usable"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn removed_is_for_good() {
        let mut readiness = Readiness::new();
        readiness.connected(Connection::unanswered().await);
        readiness.remove();
        assert!(matches!(readiness.state, State::Removed), "removed");
        assert_eq!(generation(&readiness), None, "its connection is dropped");
        readiness.connected(Connection::unanswered().await);
        readiness.disconnected();
        assert!(
            matches!(readiness.state, State::Removed),
            "neither a connection nor its loss brings it back"
        );
        assert!(!readiness.stale(1), "nor is staleness news to it");
        assert!(
            !readiness.is_usable(&mut LazyNow::default()),
            "never usable again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejected_connection_is_not_usable_until_the_ejection_ends() {
        let mut readiness = Readiness::new();
        readiness.connected(Connection::unanswered().await);
        readiness.ejected_until = Some(Instant::now() + std::time::Duration::from_secs(1));
        assert!(
            !readiness.is_usable(&mut LazyNow::default()),
            "up but ejected: not usable"
        );
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(
            readiness.is_usable(&mut LazyNow::default()),
            "usable once the ejection has ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_state_gauge_follows_connect_ejection_and_removal() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        // A snapshot takes the gauges back to 0, so each one adds to what was seen.
        let mut seen = std::collections::HashMap::<String, f64>::new();
        let mut state = move || {
            for (key, _, _, value) in snapshotter.snapshot().into_vec() {
                if let DebugValue::Gauge(v) = value {
                    let label = key
                        .key()
                        .labels()
                        .find(|l| l.key() == "state")
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default();
                    *seen.entry(label).or_default() += v.into_inner();
                }
            }
            let mut counted: Vec<(String, f64)> = seen
                .iter()
                .filter(|(_, n)| **n != 0.0)
                .map(|(s, n)| (s.clone(), *n))
                .collect();
            counted.sort_by(|a, b| a.0.cmp(&b.0));
            counted
        };
        let one = |s: &str| vec![(s.to_owned(), 1.0)];

        let endpoint = Endpoint::new(ServiceInstance::new("a", "adder", "127.0.0.1", 1), None);
        assert_eq!(state(), one("connecting"), "a new endpoint connects");
        endpoint.set_connection(Some(Connection::unanswered().await));
        assert_eq!(state(), one("ready"), "connected: ready");
        let until = Instant::now() + std::time::Duration::from_secs(1);
        endpoint.eject_until(until);
        assert_eq!(state(), one("ejected"), "ejected while still connected");
        endpoint.set_connection(None);
        assert_eq!(
            state(),
            one("ejected"),
            "the loop dropped it: still ejected"
        );
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        endpoint.refresh_state_metric();
        assert_eq!(state(), one("connecting"), "the ejection over: connecting");
        endpoint.set_connection(Some(Connection::unanswered().await));
        assert!(endpoint.mark_stale(2), "the second connection went stale");
        assert_eq!(state(), one("stale"), "stale");
        endpoint.retire();
        assert_eq!(state(), Vec::new(), "removed: counted nowhere");
    }
}
