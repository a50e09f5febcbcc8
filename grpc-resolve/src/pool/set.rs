//! The endpoint set of one channel: applying discovery's changes to it and picking from it,
//! and the decisions that need the whole set (whether a failing endpoint is the last usable
//! one).
//!
//! The call path only takes the read lock long enough to pick, so discovery changes land
//! while calls flow and while none do. Every change that can make a different pick (an
//! endpoint added, removed, connected, disconnected, ejected) bumps a version in a `watch`
//! channel; waiting calls and tests wait on it instead of polling or sleeping.
//!
//! The pool also starts its [`monitor`] (the task that finds endpoints whose calls stopped
//! completing) with its first endpoints, and keeps the coarse clock that calls stamp their
//! progress with.
//!
//! May use: the other pool modules, `balance` (the pick), `discover::Changes` (what
//! [`Pool::apply`] takes).

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use http::uri::Authority;
use smallvec::SmallVec;
use tokio::sync::watch;
use tokio::time::Instant;

use super::endpoint::{Endpoint, EndpointInfo, LazyNow, lock};
use super::http2::Connection;
use super::monitor::{self, Watched};
use super::progress::Clock;
use super::reconnect::{self, Owner};
use super::settings::PoolConfig;
use super::stats::{Counters, Stats};
use crate::balance::{self, Candidate};
use crate::discover::Changes;

/// The shared endpoint set of one channel.
pub(crate) struct Pool {
    pub(crate) service: String,
    pub(crate) config: PoolConfig,
    endpoints: RwLock<Vec<Arc<Endpoint>>>,
    version: watch::Sender<u64>,
    /// Why the set may be empty, for the error a waiting call gets.
    resolver_state: Mutex<Option<String>>,
    counters: Counters,
    /// The coarse clock calls stamp their progress with; the monitor advances it.
    clock: Clock,
    /// The monitor task, started with the first endpoints.
    monitor: OnceLock<tokio::task::AbortHandle>,
}

/// An endpoint picked for one call, counted in flight until dropped.
pub(crate) struct Picked {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) connection: Connection,
    /// Which of the endpoint's connections `connection` is.
    pub(crate) generation: u64,
}

// === impl Pool ===

impl Pool {
    pub(crate) fn new(service: String, config: PoolConfig) -> Self {
        Pool {
            service,
            config,
            endpoints: RwLock::new(Vec::new()),
            version: watch::Sender::new(0),
            resolver_state: Mutex::new(None),
            counters: Counters::default(),
            clock: Clock::default(),
            monitor: OnceLock::new(),
        }
    }

    /// Tells waiters that a pick may now turn out differently.
    pub(crate) fn changed(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every change from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Where the channel's events are counted.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Records what the resolver last said about an empty set, for error messages.
    pub(crate) fn set_resolver_state(&self, state: Option<String>) {
        *lock(&self.resolver_state) = state;
    }

    pub(crate) fn resolver_state(&self) -> Option<String> {
        lock(&self.resolver_state).clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Endpoint>>> {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies discovery changes; new endpoints start connecting at once.
    pub(crate) fn apply(self: &Arc<Self>, changes: &Changes) {
        if changes.is_empty() {
            return;
        }
        self.start_monitor();
        let mut endpoints = self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for id in &changes.remove {
            if let Some(at) = endpoints.iter().position(|e| &e.id == id) {
                let endpoint = endpoints.swap_remove(at);
                endpoint.retire();
                tracing::info!(service = %self.service, endpoint = %endpoint.id, authority = %endpoint.authority, "endpoint removed");
            }
        }
        for instance in &changes.insert {
            let authority = instance.authority();
            let target = match authority.parse::<Authority>() {
                Ok(target) => target,
                Err(error) => {
                    // One malformed entry must not cost the rest of the update.
                    tracing::warn!(service = %self.service, endpoint = %instance.id, %authority, %error, "skipping instance with an unusable address");
                    continue;
                }
            };
            let endpoint = Arc::new(Endpoint::new(
                instance.clone(),
                self.config.locality.as_deref(),
            ));
            let task = tokio::spawn(reconnect::run(self.clone(), endpoint.clone(), target));
            endpoint.set_task(task.abort_handle());
            tracing::info!(service = %self.service, endpoint = %endpoint.id, %authority, weight = instance.effective_weight(), "endpoint added");
            endpoints.push(endpoint);
        }
        for instance in &changes.update {
            if let Some(endpoint) = endpoints.iter().find(|e| e.id == instance.id) {
                tracing::debug!(service = %self.service, endpoint = %instance.id, status = %instance.status, weight = instance.effective_weight(), "endpoint updated");
                endpoint.update(instance.clone(), self.config.locality.as_deref());
            }
        }
        drop(endpoints);
        self.changed();
    }

    /// Picks a ready endpoint by power of two choices, avoiding `avoid` when another is
    /// ready and keeping to the preferred locality when an endpoint there is ready, and
    /// counts the call in flight on it.
    pub(crate) fn pick(&self, avoid: Option<&str>, rng: &mut fastrand::Rng) -> Option<Picked> {
        let mut now = LazyNow::default();
        let endpoints = self.read();
        // Indexes into `endpoints` and the balancer's view of each, on the stack for any
        // usual number of endpoints: this runs for every call.
        let mut usable: SmallVec<[usize; 16]> = endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_usable(&mut now) && e.has_room(self.config.concurrency_limit))
            .map(|(i, _)| i)
            .collect();
        if let Some(avoid) = avoid
            && usable.iter().any(|i| endpoints[*i].id != avoid)
        {
            usable.retain(|i| endpoints[*i].id != avoid);
        }
        if self.config.locality.is_some() && usable.iter().any(|i| endpoints[*i].is_local()) {
            usable.retain(|i| endpoints[*i].is_local());
        }
        let loads: SmallVec<[Candidate; 16]> =
            usable.iter().map(|i| endpoints[*i].candidate()).collect();
        let chosen = balance::pick(&loads, rng)?;
        let endpoint = endpoints[usable[chosen]].clone();
        drop(endpoints);
        // The connection may have gone since the scan; the caller simply picks again.
        let (connection, generation) = endpoint.connection()?;
        endpoint.picked();
        Some(Picked {
            endpoint,
            connection,
            generation,
        })
    }

    /// A call learned that connection `generation` of `endpoint` takes no new calls (the
    /// server sent GOAWAY, or the connection closed while streams keep its socket open):
    /// take the endpoint out of rotation now and have its task connect afresh.
    pub(crate) fn connection_stale(&self, endpoint: &Endpoint, generation: u64) {
        if !endpoint.mark_stale(generation) {
            return;
        }
        tracing::debug!(service = %self.service, endpoint = %endpoint.id, "connection takes no new calls; reconnecting");
        self.changed();
    }

    /// A call on `endpoint` is over. A call waiting because every endpoint was at its
    /// concurrency limit learns that one has room again.
    pub(crate) fn release(&self, endpoint: &Endpoint) {
        let before = endpoint.release();
        if self.config.concurrency_limit == Some(before) {
            self.changed();
        }
    }

    /// Whether an endpoint other than `id` could take a call now.
    pub(crate) fn has_other_usable(&self, id: &str) -> bool {
        self.has_other_usable_at(id, &mut LazyNow::default())
    }

    fn has_other_usable_at(&self, id: &str, now: &mut LazyNow) -> bool {
        self.read().iter().any(|e| e.id != id && e.is_usable(now))
    }

    /// A call on `endpoint` succeeded (the endpoint answered with anything but
    /// `Unavailable`).
    pub(crate) fn record_success(&self, endpoint: &Endpoint) {
        endpoint.outlier().succeeded();
    }

    /// A call on `endpoint` failed in transport or was answered `Unavailable`. Ejects it
    /// once its failures in a row call for it, unless it is the last usable endpoint:
    /// failing calls reaching the caller beat every call waiting for nothing.
    pub(crate) fn record_failure(&self, endpoint: &Endpoint) {
        self.counters.attempt_failed();
        let outlier = self.config.outlier;
        let Some(failures) = endpoint.outlier().failed(&outlier) else {
            return;
        };
        let now = Instant::now();
        if !self.has_other_usable_at(&endpoint.id, &mut LazyNow::at(now)) || endpoint.is_removed() {
            return;
        }
        let duration = endpoint.outlier().eject(&outlier);
        endpoint.eject_until(now + duration);
        self.counters.endpoint_ejected();
        tracing::warn!(service = %self.service, endpoint = %endpoint.id, authority = %endpoint.authority, failures, ?duration, "endpoint ejected after consecutive failures");
        self.changed();
    }

    /// A snapshot of every endpoint, sorted by id.
    pub(crate) fn infos(&self) -> Vec<EndpointInfo> {
        let now = Instant::now();
        let mut infos: Vec<EndpointInfo> = self.read().iter().map(|e| e.info(now)).collect();
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        infos
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.stats()
    }

    /// Retires every endpoint; the channel is gone.
    pub(crate) fn close(&self) {
        let mut endpoints = self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for endpoint in endpoints.drain(..) {
            endpoint.retire();
        }
        if let Some(monitor) = self.monitor.get() {
            monitor.abort();
        }
    }
}

// --- The monitor of unresponsive endpoints and the clock it keeps ---

impl Pool {
    /// The coarse clock calls stamp their progress with.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    fn start_monitor(self: &Arc<Self>) {
        self.monitor
            .get_or_init(|| tokio::spawn(monitor::run(Arc::downgrade(self))).abort_handle());
    }
}

impl Watched for Pool {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.read().clone()
    }

    fn unresponsive_after(&self) -> Option<std::time::Duration> {
        self.config.liveness.unresponsive_after
    }

    fn probe_service(&self) -> &str {
        &self.config.liveness.health_service
    }

    fn settings(&self) -> &crate::pool::settings::Settings {
        &self.config.settings
    }

    fn connection_stale(&self, endpoint: &Endpoint, generation: u64) {
        Pool::connection_stale(self, endpoint, generation);
    }

    fn endpoint_changed(&self) {
        self.changed();
    }
}

impl Owner for Pool {
    fn config(&self) -> &PoolConfig {
        &self.config
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn endpoint_changed(&self) {
        self.changed();
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("service", &self.service)
            .field("endpoints", &self.infos())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use discovery_core::{Backoff, ServiceInstance};

    use super::*;
    use crate::pool::settings::{Liveness, Outlier, Settings};

    fn pool(failures: u32) -> Arc<Pool> {
        Arc::new(Pool::new(
            "adder".to_owned(),
            PoolConfig {
                settings: Settings::new(None),
                concurrency_limit: None,
                backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
                outlier: Outlier {
                    consecutive_failures: failures,
                    base_ejection: Duration::from_secs(1),
                    max_ejection: Duration::from_secs(3),
                },
                locality: None,
                liveness: Liveness::default(),
            },
        ))
    }

    /// An endpoint that looks connected, with no connection task behind it.
    async fn connected(pool: &Pool, id: &str) -> Arc<Endpoint> {
        connected_in(pool, id, None).await
    }

    /// A connected-looking endpoint in `locality`.
    async fn connected_in(pool: &Pool, id: &str, locality: Option<&str>) -> Arc<Endpoint> {
        let mut instance = ServiceInstance::new(id, "adder", "127.0.0.1", 1);
        instance.locality = locality.map(str::to_owned);
        let endpoint = Arc::new(Endpoint::new(instance, pool.config.locality.as_deref()));
        endpoint.set_connection(Some(Connection::unanswered().await));
        pool.endpoints
            .write()
            .expect("unpoisoned")
            .push(endpoint.clone());
        endpoint
    }

    fn ejected_for(endpoint: &Endpoint) -> Option<Duration> {
        endpoint
            .ejected_until()
            .map(|until| until.duration_since(Instant::now()))
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_doubles_up_to_the_cap_and_success_resets_it() {
        let pool = pool(2);
        let bad = connected(&pool, "bad").await;
        let _good = connected(&pool, "good").await;

        pool.record_failure(&bad);
        assert_eq!(ejected_for(&bad), None, "one failure of two is not enough");
        pool.record_failure(&bad);
        assert_eq!(
            ejected_for(&bad),
            Some(Duration::from_secs(1)),
            "first ejection: base"
        );

        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            bad.is_usable(&mut LazyNow::default()),
            "usable again once the ejection is over"
        );
        pool.record_failure(&bad);
        pool.record_failure(&bad);
        assert_eq!(
            ejected_for(&bad),
            Some(Duration::from_secs(2)),
            "second in a row: doubled"
        );

        tokio::time::advance(Duration::from_secs(2)).await;
        pool.record_failure(&bad);
        pool.record_failure(&bad);
        assert_eq!(
            ejected_for(&bad),
            Some(Duration::from_secs(3)),
            "third: capped at 3 s"
        );

        tokio::time::advance(Duration::from_secs(3)).await;
        pool.record_success(&bad);
        pool.record_failure(&bad);
        pool.record_failure(&bad);
        assert_eq!(
            ejected_for(&bad),
            Some(Duration::from_secs(1)),
            "a success resets the doubling"
        );
        assert_eq!(pool.stats().ejections, 4, "four ejections counted");
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_usable_endpoint_stays_and_removed_ones_are_not_picked() {
        let pool = pool(1);
        let a = connected(&pool, "a").await;
        let b = connected(&pool, "b").await;
        pool.record_failure(&a);
        assert!(ejected_for(&a).is_some(), "a is ejected while b is usable");
        pool.record_failure(&b);
        assert_eq!(
            ejected_for(&b),
            None,
            "b is the last usable endpoint: never ejected"
        );

        let mut rng = fastrand::Rng::with_seed(3);
        let picked = pool.pick(None, &mut rng).expect("b is usable");
        assert_eq!(picked.endpoint.id, "b", "only b can be picked");
        assert_eq!(pool.infos()[1].in_flight, 1, "the pick counts in flight");
        picked.endpoint.release();

        pool.apply(&Changes {
            remove: vec!["b".to_owned()],
            ..Changes::default()
        });
        assert!(
            pool.pick(None, &mut rng).is_none(),
            "a is ejected and b is gone"
        );
        b.set_connection(Some(Connection::unanswered().await));
        assert!(
            !b.is_usable(&mut LazyNow::default()),
            "a removed endpoint cannot come back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_connection_leaves_rotation_but_news_of_an_older_one_is_ignored() {
        let pool = pool(0);
        let a = connected(&pool, "a").await;
        let mut rng = fastrand::Rng::with_seed(4);
        let picked = pool.pick(None, &mut rng).expect("a is usable");
        let first = picked.generation;
        picked.endpoint.release();

        // The connection task reconnected in the meantime: news of the first connection
        // must not take the second one down.
        a.set_connection(Some(Connection::unanswered().await));
        pool.connection_stale(&a, first);
        assert!(
            a.is_usable(&mut LazyNow::default()),
            "expected news of an older connection ignored"
        );

        let picked = pool.pick(None, &mut rng).expect("a is usable");
        assert_ne!(
            picked.generation, first,
            "a new connection, a new generation"
        );
        pool.connection_stale(&a, picked.generation);
        picked.endpoint.release();
        assert!(
            !a.is_usable(&mut LazyNow::default()),
            "expected the current connection's staleness to take a out of rotation"
        );
        assert!(pool.pick(None, &mut rng).is_none(), "nothing else to pick");
    }

    #[tokio::test(start_paused = true)]
    async fn pick_avoids_the_endpoint_that_just_failed_when_it_can() {
        let pool = pool(0);
        let a = connected(&pool, "a").await;
        let _b = connected(&pool, "b").await;
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..50 {
            let picked = pool.pick(Some("a"), &mut rng).expect("b is usable");
            assert_eq!(picked.endpoint.id, "b", "a is avoided");
            picked.endpoint.release();
        }
        pool.record_failure(&a);
        assert_eq!(
            pool.stats().ejections,
            0,
            "failures == 0 turns ejection off"
        );
    }

    /// Which endpoints 300 picks reach, by id, avoiding `avoid`.
    fn picked_ids(pool: &Pool, avoid: Option<&str>) -> std::collections::BTreeSet<String> {
        let mut rng = fastrand::Rng::with_seed(5);
        (0..300)
            .map(|_| {
                let picked = pool.pick(avoid, &mut rng).expect("an endpoint is usable");
                picked.endpoint.release();
                picked.endpoint.id.clone()
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_preferred_locality_takes_every_pick_while_it_has_a_usable_endpoint() {
        let mut config = pool(0).config.clone();
        config.locality = Some("zone-b".to_owned());
        let pool = Arc::new(Pool::new("adder".to_owned(), config));
        let _a = connected_in(&pool, "a", Some("zone-a")).await;
        let b1 = connected_in(&pool, "b1", Some("zone-b")).await;
        let b2 = connected_in(&pool, "b2", Some("zone-b")).await;
        let _none = connected_in(&pool, "none", None).await;

        assert_eq!(
            picked_ids(&pool, None),
            ["b1", "b2"].map(str::to_owned).into(),
            "expected picks only in zone-b, over both of its endpoints"
        );
        assert_eq!(
            picked_ids(&pool, Some("b1")),
            ["b2"].map(str::to_owned).into(),
            "a retry avoiding b1 stays in zone-b while b2 is usable"
        );

        b1.set_connection(None);
        assert_eq!(
            picked_ids(&pool, Some("b2")),
            ["a", "none"].map(str::to_owned).into(),
            "a retry avoiding zone-b's last usable endpoint leaves the zone"
        );
        b2.set_connection(None);
        assert_eq!(
            picked_ids(&pool, None),
            ["a", "none"].map(str::to_owned).into(),
            "with nothing usable in zone-b, every endpoint is a candidate"
        );
        let infos = pool.infos();
        assert_eq!(
            infos[0].locality.as_deref(),
            Some("zone-a"),
            "endpoint info reports the locality: {infos:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_preference_locality_changes_nothing() {
        let pool = pool(0);
        let _a = connected_in(&pool, "a", Some("zone-a")).await;
        let _b = connected_in(&pool, "b", Some("zone-b")).await;
        assert_eq!(
            picked_ids(&pool, None),
            ["a", "b"].map(str::to_owned).into(),
            "expected picks over both zones"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_locality_change_in_discovery_moves_the_endpoint_in_or_out_of_preference() {
        let mut config = pool(0).config.clone();
        config.locality = Some("zone-b".to_owned());
        let pool = Arc::new(Pool::new("adder".to_owned(), config));
        let a = connected_in(&pool, "a", Some("zone-a")).await;
        let _b = connected_in(&pool, "b", Some("zone-b")).await;
        let mut moved = ServiceInstance::new("a", "adder", "127.0.0.1", 1);
        moved.locality = Some("zone-b".to_owned());
        a.update(moved, pool.config.locality.as_deref());
        assert_eq!(
            picked_ids(&pool, None),
            ["a", "b"].map(str::to_owned).into(),
            "a moved into zone-b and shares its picks"
        );
    }
}
