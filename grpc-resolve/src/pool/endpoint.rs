//! One endpoint: its instance, where its connection stands (its [`Readiness`]), its load,
//! its progress and its outlier record.
//!
//! May use: `readiness` (where its connection stands), `http2` (the connection it holds),
//! `outlier` (its failure record), `progress` (its calls' progress), `slow_start` (its
//! ramp), the crate's `balance` (the view of it a pick weighs) and `metrics` (its handles).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use discovery_core::{HealthStatus, ServiceInstance};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::http2::Connection;
use super::outlier;
use super::progress::{Clock, Progress};
use super::readiness::{Condition, Readiness, State};
pub(super) use super::readiness::{Health, LazyNow};
use super::slow_start::Ramp;
use crate::balance::Candidate;
use crate::metrics::EndpointMetrics;

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
    /// Its calls waiting for an answer and its last answer, for the monitor.
    progress: Progress,
    /// The reconnect loop's task.
    task: Mutex<Option<AbortHandle>>,
    /// Its metric handles, registered once, when discovery adds it.
    pub(crate) metrics: EndpointMetrics,
    /// Its slow-start ramp: the share of its weight it gets now.
    ramp: Ramp,
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
    /// Whether discovery dropped it but the shrink guard keeps it as a fallback (see the
    /// crate's README, "Shrink guard").
    pub fallback: bool,
    /// The percentage of its weight it gets now: below 100 during slow start.
    pub weight_percent: u32,
    /// What the channel sees of its server: serving, not serving (its health service
    /// says so), unresponsive (its calls stopped completing), or unknown (not connected).
    pub condition: Condition,
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
            progress: Progress::default(),
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
    /// once the endpoint is removed. A new connection counts as serving.
    pub(super) fn set_connection(&self, connection: Option<Connection>) {
        match connection {
            Some(connection) => {
                self.connected(connection, Health::Serving);
            }
            None => {
                lock(&self.readiness).disconnected();
                self.refresh_state_metric();
            }
        }
    }

    /// The reconnect loop made a connection, whose health starts as `health`; returns its
    /// generation (0 once the endpoint is removed).
    pub(super) fn connected(&self, connection: Connection, health: Health) -> u64 {
        let generation = lock(&self.readiness).connected(connection, health);
        self.refresh_state_metric();
        generation
    }

    /// The health service of connection `generation` said `health`. Returns whether that
    /// changed what a pick sees.
    pub(super) fn set_health(&self, generation: u64, health: Health) -> bool {
        let changed = lock(&self.readiness).up(generation, |up_health, _| {
            std::mem::replace(up_health, health) != health
        });
        self.refresh_state_metric();
        changed
    }

    /// The health of connection `generation` is still [`Health::Awaiting`]: its stream
    /// failed before answering, which by itself says nothing against the server. Returns
    /// whether that changed anything.
    pub(super) fn health_unanswered(&self, generation: u64) -> bool {
        let changed = lock(&self.readiness).up(generation, |health, _| {
            let awaiting = *health == Health::Awaiting;
            if awaiting {
                *health = Health::Serving;
            }
            awaiting
        });
        self.refresh_state_metric();
        changed
    }

    /// The monitor suspects the current connection of its server no longer answering: out
    /// of rotation until a probe says otherwise. Returns the connection to probe, unless
    /// it is not up or already suspected.
    pub(super) fn suspect(&self) -> Option<(Connection, u64)> {
        let suspected = {
            let mut readiness = lock(&self.readiness);
            let (connection, generation) = readiness.connection()?;
            readiness
                .up(generation, |_, unresponsive| {
                    !std::mem::replace(unresponsive, true)
                })
                .then_some((connection, generation))
        };
        self.refresh_state_metric();
        suspected
    }

    /// A probe found the server of connection `generation` answering: back in rotation,
    /// its silence counted afresh from tick `now` (and allowed twice as long). Returns
    /// whether it was suspected.
    pub(super) fn answered_probe(&self, generation: u64, now: u64) -> bool {
        let cleared = lock(&self.readiness).up(generation, |_, unresponsive| {
            std::mem::replace(unresponsive, false)
        });
        if cleared {
            self.progress.excuse(now);
            self.refresh_state_metric();
        }
        cleared
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

    /// Its calls' progress, which the call path stamps and the monitor reads.
    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// A call sent at tick `sent` got its response headers now, by `clock`.
    pub(crate) fn answered(&self, clock: &Clock, sent: u64) {
        self.progress.answered(clock, sent, clock.now());
    }

    /// The call that picked it is over; returns how many calls were in flight before.
    pub(super) fn release(&self) -> usize {
        self.in_flight.fetch_sub(1, Ordering::Relaxed)
    }

    pub(super) fn outlier(&self) -> &outlier::Record {
        &self.outlier
    }

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
    /// serve a call now (connected, serving where client-side health is on, answering, not
    /// ejected): an endpoint known not to serve is no fallback.
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
        let (ready, ejected, condition) = {
            let readiness = lock(&self.readiness);
            let ejected = readiness.ejected_until.is_some_and(|until| until > now);
            let condition = readiness.condition();
            (
                readiness.is_usable(&mut LazyNow::at(now)),
                ejected,
                condition,
            )
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
            condition,
        }
    }
}

/// Whether `instance` is in the preferred locality `prefer` (never, without a preference).
fn in_locality(instance: &ServiceInstance, prefer: Option<&str>) -> bool {
    prefer.is_some() && instance.locality.as_deref() == prefer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_state_gauge_follows_connect_ejection_and_removal() {
        use metrics_readback::{DebuggingRecorder, Recorded};

        let recorder = DebuggingRecorder::new();
        let recorded = Recorded::new(&recorder);
        let _local = metrics::set_default_local_recorder(&recorder);
        // The states whose gauge is not 0, with their value.
        let state = || -> Vec<(String, f64)> {
            (recorded
                .label_values(crate::metrics::ENDPOINTS, "state")
                .into_iter())
            .map(|state| {
                let n = recorded.gauge(crate::metrics::ENDPOINTS, &[("state", &state)]);
                (state, n)
            })
            .filter(|(_, n)| *n != 0.0)
            .collect()
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
