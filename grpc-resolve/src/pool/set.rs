//! The endpoint set of one channel: applying discovery's changes to it (a call's pick from
//! it is [`pick`](super::pick)), and the decisions that need the whole set: whether
//! another endpoint is usable (never ejecting the last), whether an answer dropping most
//! endpoints is held back ([`guard`](super::guard)), which endpoints fail at a rate that
//! calls for ejection
//! ([`rate_ejections`](super::outlier::rate_ejections)), and where slow-start ramps
//! stand ([`slow_start`](super::slow_start)). The last three run from the maintenance task
//! ([`maintain`](super::maintain)) and on connection events, never per call.
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
//! May use: the pool modules below it, `discover::Changes` (what [`Pool::apply`] takes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use http::uri::Authority;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::endpoint::{Endpoint, EndpointInfo, LazyNow, lock};
use super::guard;
use super::outlier;
use super::progress::Clock;
use super::reconnect;
use super::settings::PoolConfig;
use super::slow_start;
use super::stats::{Counters, Stats};
use crate::discover::Changes;
use crate::metrics::EjectionReason;

/// The shared endpoint set of one channel.
pub(crate) struct Pool {
    pub(crate) service: String,
    pub(crate) config: PoolConfig,
    endpoints: RwLock<Vec<Arc<Endpoint>>>,
    version: watch::Sender<u64>,
    /// Why the set may be empty, for the error a waiting call gets.
    resolver_state: Mutex<Option<String>>,
    counters: Counters,
    /// Endpoints discovery dropped that the shrink guard keeps, by id, with when it began
    /// keeping them. Lock order: `endpoints`, then this.
    fallbacks: Mutex<HashMap<String, Instant>>,
    /// Wakes the maintenance task early: a ramp or a fallback started.
    pub(super) maintenance: Notify,
    /// The coarse clock calls stamp their progress with; the monitor advances it.
    pub(super) clock: Clock,
    /// The monitor task, started with the first endpoints.
    pub(super) monitor: OnceLock<tokio::task::AbortHandle>,
}

// === impl Pool ===

impl Pool {
    pub(crate) fn new(service: String, config: PoolConfig) -> Self {
        let counters = Counters::new(&service);
        Pool {
            service,
            config,
            endpoints: RwLock::new(Vec::new()),
            version: watch::Sender::new(0),
            resolver_state: Mutex::new(None),
            counters,
            fallbacks: Mutex::new(HashMap::new()),
            maintenance: Notify::new(),
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

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Endpoint>>> {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies discovery changes; new endpoints start connecting at once. Endpoints the
    /// changes drop are retired, unless the shrink guard keeps them as a fallback; a
    /// fallback endpoint the changes list again is listed again, connection and all.
    pub(crate) fn apply(self: &Arc<Self>, changes: &Changes) {
        if changes.is_empty() {
            return;
        }
        self.start_monitor();
        let mut endpoints = self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut fallbacks = lock(&self.fallbacks);
        // Removals first (see `Changes`): an address change removes and inserts one id.
        let now = Instant::now();
        let dropped: Vec<&String> = changes
            .remove
            .iter()
            .filter(|id| endpoints.iter().any(|e| &e.id == *id))
            .collect();
        let newly_kept = if dropped.is_empty() {
            0
        } else {
            let mut clock = LazyNow::at(now);
            let listed_ready = endpoints
                .iter()
                .filter(|e| !fallbacks.contains_key(&e.id) && !changes.remove.contains(&e.id))
                .filter(|e| e.is_usable(&mut clock))
                .count();
            // An instance whose address changed is removed and inserted: replaced, not
            // dropped, so never kept.
            let replaced = |id: &String| changes.insert.iter().any(|i| &i.id == id);
            let worthy: Vec<String> = endpoints
                .iter()
                .filter(|e| {
                    fallbacks.contains_key(&e.id)
                        || (changes.remove.contains(&e.id) && !replaced(&e.id))
                })
                .filter(|e| e.is_fallback_worthy(&mut clock))
                .map(|e| e.id.clone())
                .collect();
            let hold = guard::holds(listed_ready, worthy.len(), &self.config.shrink_guard);
            let mut kept = 0;
            for id in dropped {
                if hold && worthy.contains(id) {
                    fallbacks.insert(id.clone(), now);
                    kept += 1;
                } else if let Some(at) = endpoints.iter().position(|e| &e.id == id) {
                    let endpoint = endpoints.swap_remove(at);
                    endpoint.retire();
                    tracing::info!(service = %self.service, endpoint = %endpoint.id, authority = %endpoint.authority, "endpoint removed");
                }
            }
            if kept > 0 {
                self.counters.fallbacks_kept(kept);
                tracing::warn!(service = %self.service, listed_ready, kept, fallbacks = fallbacks.len(), min_ready_percent = self.config.shrink_guard.min_ready_percent, "discovery dropped most ready endpoints at once; keeping the connected ones as a fallback");
            }
            kept
        };
        for instance in &changes.insert {
            let authority = instance.authority();
            if let Some(at) = endpoints.iter().position(|e| e.id == instance.id) {
                // Only a fallback can be known and inserted: discovery had dropped it.
                fallbacks.remove(&instance.id);
                let endpoint = &endpoints[at];
                if endpoint.authority == authority {
                    tracing::info!(service = %self.service, endpoint = %endpoint.id, %authority, "fallback endpoint listed again");
                    endpoint.update(instance.clone(), self.config.locality.as_deref());
                    continue;
                }
                endpoints.swap_remove(at).retire();
            }
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
            // The connection's span, inside the discovery update that added the endpoint.
            let span = tracing::info_span!("endpoint", endpoint = %endpoint.id, %authority);
            let task = tokio::spawn(
                reconnect::run(self.clone(), endpoint.clone(), target).instrument(span),
            );
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
        drop(fallbacks);
        drop(endpoints);
        if newly_kept > 0 {
            self.maintenance.notify_one();
        }
        // Listing new endpoints or fallbacks again may have ended the need for the rest.
        self.review_fallbacks(now);
        self.changed();
    }

    /// Retires the fallback endpoints that failed on their own (no longer worthy) or were
    /// kept `max_hold`, and all of them once the listed endpoints are back above the
    /// guard's threshold. Returns when the oldest remaining one's hold ends, if any is left.
    pub(crate) fn review_fallbacks(&self, now: Instant) -> Option<Instant> {
        if lock(&self.fallbacks).is_empty() {
            return None;
        }
        let max_hold = self.config.shrink_guard.max_hold;
        let mut endpoints = self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut fallbacks = lock(&self.fallbacks);
        let mut clock = LazyNow::at(now);
        let listed_ready = endpoints
            .iter()
            .filter(|e| !fallbacks.contains_key(&e.id) && e.is_usable(&mut clock))
            .count();
        // The fallbacks that may stay, if the set still needs them.
        let keep: Vec<String> = endpoints
            .iter()
            .filter(|e| {
                fallbacks
                    .get(&e.id)
                    .is_some_and(|since| *since + max_hold > now)
                    && e.is_fallback_worthy(&mut clock)
            })
            .map(|e| e.id.clone())
            .collect();
        let recovered = !guard::holds(listed_ready, keep.len(), &self.config.shrink_guard);
        let mut retired = 0;
        let mut at = 0;
        while at < endpoints.len() {
            let endpoint = &endpoints[at];
            if fallbacks.contains_key(&endpoint.id) && (recovered || !keep.contains(&endpoint.id)) {
                let endpoint = endpoints.swap_remove(at);
                fallbacks.remove(&endpoint.id);
                endpoint.retire();
                retired += 1;
                tracing::info!(service = %self.service, endpoint = %endpoint.id, authority = %endpoint.authority, recovered, "fallback endpoint removed");
            } else {
                at += 1;
            }
        }
        let next = fallbacks.values().min().map(|since| *since + max_hold);
        drop(fallbacks);
        drop(endpoints);
        if retired > 0 {
            self.changed();
        }
        next
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

    /// Whether an endpoint not in `besides` (ids) could take a call now.
    pub(crate) fn has_usable_besides(&self, besides: &[&str]) -> bool {
        self.has_usable_besides_at(besides, &mut LazyNow::default())
    }

    fn has_usable_besides_at(&self, besides: &[&str], now: &mut LazyNow) -> bool {
        (self.read().iter()).any(|e| !besides.contains(&e.id.as_str()) && e.is_usable(now))
    }

    /// A call on `endpoint` succeeded (the endpoint answered with anything but
    /// `Unavailable`).
    pub(crate) fn record_success(&self, endpoint: &Endpoint) {
        endpoint.outlier().succeeded();
        endpoint.outlier().count(false);
    }

    /// A call on `endpoint` was answered with a status that is the server's fault but says
    /// it is reachable (`Internal`, `Unknown`, `DataLoss`): it counts for the failure rate
    /// only.
    pub(crate) fn record_fault(&self, endpoint: &Endpoint) {
        endpoint.outlier().succeeded();
        endpoint.outlier().count(true);
    }

    /// A call on `endpoint` failed in transport or was answered `Unavailable`. Ejects it
    /// once its failures in a row call for it, unless it is the last usable endpoint:
    /// failing calls reaching the caller beat every call waiting for nothing.
    pub(crate) fn record_failure(&self, endpoint: &Endpoint) {
        self.counters.attempt_failed();
        endpoint.metrics.failed();
        endpoint.outlier().count(true);
        let outlier = self.config.outlier;
        let Some(failures) = endpoint.outlier().failed(&outlier) else {
            return;
        };
        let now = Instant::now();
        if !self.has_usable_besides_at(&[&endpoint.id], &mut LazyNow::at(now))
            || endpoint.is_removed()
        {
            return;
        }
        let duration = endpoint.outlier().eject(&outlier);
        endpoint.eject_until(now + duration);
        self.counters
            .endpoint_ejected(EjectionReason::ConsecutiveFailures);
        tracing::warn!(service = %self.service, endpoint = %endpoint.id, authority = %endpoint.authority, failures, ?duration, "endpoint ejected after consecutive failures");
        self.changed();
    }

    /// Ends one failure-rate interval: takes every endpoint's counts and ejects those
    /// [`outlier::rate_ejections`] names, never the last usable endpoint.
    pub(crate) fn sweep_failure_rates(&self, now: Instant) {
        let rule = self.config.failure_rate;
        let endpoints: Vec<Arc<Endpoint>> = self.read().clone();
        let mut clock = LazyNow::at(now);
        let mut judged = Vec::with_capacity(endpoints.len());
        let mut intervals = Vec::with_capacity(endpoints.len());
        let mut ejected = 0;
        for endpoint in &endpoints {
            let interval = endpoint.outlier().take_interval();
            if endpoint.ejected_until().is_some() {
                ejected += 1;
            } else if endpoint.is_usable(&mut clock) {
                judged.push(endpoint);
                intervals.push(interval);
            }
        }
        let due = outlier::rate_ejections(&intervals, &rule, ejected, endpoints.len());
        for (i, endpoint) in judged.iter().enumerate() {
            if !due.contains(&i) || !self.has_usable_besides_at(&[&endpoint.id], &mut clock) {
                endpoint.outlier().rate_interval_passed();
                continue;
            }
            let duration = endpoint
                .outlier()
                .eject_for_rate(&rule, self.config.outlier.max_ejection);
            endpoint.eject_until(now + duration);
            self.counters.endpoint_ejected(EjectionReason::FailureRate);
            let outlier::Interval { calls, failures } = intervals[i];
            tracing::warn!(service = %self.service, endpoint = %endpoint.id, authority = %endpoint.authority, calls, failures, ?duration, "endpoint ejected for its failure rate");
            self.changed();
        }
    }

    /// Brings every slow-start ramp up to date; returns when to do it again, if a ramp is
    /// still running.
    pub(crate) fn refresh_ramps(&self, now: Instant) -> Option<Instant> {
        let rule = self.config.slow_start;
        let mut ramping = false;
        for endpoint in self.read().iter() {
            ramping |= endpoint.ramp().refresh(now, &rule);
        }
        ramping.then(|| now + slow_start::step(&rule))
    }

    /// Starts the ramp of each endpoint whose connection is new.
    pub(super) fn start_ramps(&self, now: Instant) {
        let rule = self.config.slow_start;
        if rule.window.is_zero() {
            return;
        }
        let mut started = false;
        for endpoint in self.read().iter() {
            if let Some(generation) = endpoint.generation() {
                started |= endpoint.ramp().connected(generation, now, &rule);
            }
        }
        if started {
            self.maintenance.notify_one();
        }
    }

    /// A snapshot of every endpoint, sorted by id.
    pub(crate) fn infos(&self) -> Vec<EndpointInfo> {
        let now = Instant::now();
        let fallbacks = lock(&self.fallbacks).clone();
        let mut infos: Vec<EndpointInfo> = self
            .read()
            .iter()
            .map(|e| {
                let mut info = e.info(now);
                info.fallback = fallbacks.contains_key(&e.id);
                info
            })
            .collect();
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
        lock(&self.fallbacks).clear();
        if let Some(monitor) = self.monitor.get() {
            monitor.abort();
        }
    }
}

/// Endpoint sets for the pool's unit tests (here and in [`pick`](super::pick)), built
/// without discovery or connection tasks.
#[cfg(test)]
pub(super) mod fixtures {
    use std::sync::Arc;
    use std::time::Duration;

    use discovery_core::{Backoff, ServiceInstance};

    use super::Pool;
    use crate::pool::endpoint::Endpoint;
    use crate::pool::http2::Connection;
    use crate::pool::settings::{Outlier, PoolConfig, Settings};

    /// A pool ejecting after `failures` failures in a row (0: never).
    pub(crate) fn pool(failures: u32) -> Arc<Pool> {
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
                ..PoolConfig::default()
            },
        ))
    }

    /// An endpoint that looks connected, with no connection task behind it.
    pub(crate) async fn connected(pool: &Pool, id: &str) -> Arc<Endpoint> {
        connected_in(pool, id, None).await
    }

    /// A connected-looking endpoint in `locality`.
    pub(crate) async fn connected_in(
        pool: &Pool,
        id: &str,
        locality: Option<&str>,
    ) -> Arc<Endpoint> {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use discovery_core::ServiceInstance;

    use super::fixtures::{connected, pool};
    use super::*;
    use crate::pool::http2::Connection;
    use crate::pool::reconnect::Owner;

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
        let mut config = pool(1).config.clone();
        // Else the guard keeps b, the only ready endpoint, as a fallback.
        config.shrink_guard.min_ready_percent = 0;
        let pool = Arc::new(Pool::new("adder".to_owned(), config));
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
        let picked = pool.pick(&[], &mut rng).expect("b is usable");
        assert_eq!(picked.endpoint.id, "b", "only b can be picked");
        assert_eq!(pool.infos()[1].in_flight, 1, "the pick counts in flight");
        picked.endpoint.release();

        pool.apply(&Changes {
            remove: vec!["b".to_owned()],
            ..Changes::default()
        });
        assert!(
            pool.pick(&[], &mut rng).is_none(),
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
        let picked = pool.pick(&[], &mut rng).expect("a is usable");
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

        let picked = pool.pick(&[], &mut rng).expect("a is usable");
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
        assert!(pool.pick(&[], &mut rng).is_none(), "nothing else to pick");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_zero_turns_ejection_off() {
        let pool = pool(0);
        let a = connected(&pool, "a").await;
        let _b = connected(&pool, "b").await;
        pool.record_failure(&a);
        assert_eq!(
            pool.stats().ejections,
            0,
            "failures == 0 turns ejection off"
        );
    }

    #[tokio::test]
    async fn usable_besides_counts_only_the_endpoints_not_named() {
        let pool = pool(0);
        let _a = connected(&pool, "a").await;
        let _b = connected(&pool, "b").await;
        assert!(pool.has_usable_besides(&["a"]), "b is usable");
        assert!(!pool.has_usable_besides(&["a", "b"]), "none besides both");
    }

    fn removal(ids: &[&str]) -> Changes {
        Changes {
            remove: ids.iter().map(|id| (*id).to_owned()).collect(),
            ..Changes::default()
        }
    }

    fn fallbacks(pool: &Pool) -> Vec<String> {
        let infos = pool.infos();
        infos
            .into_iter()
            .filter(|e| e.fallback)
            .map(|e| e.id)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_answer_keeps_the_connected_endpoints_until_they_fail_or_return() {
        let pool = pool(0);
        let a = connected(&pool, "a").await;
        let _b = connected(&pool, "b").await;
        let _c = connected(&pool, "c").await;
        pool.apply(&removal(&["a", "b", "c"]));
        assert_eq!(
            fallbacks(&pool),
            ["a", "b", "c"],
            "all three kept as a fallback"
        );
        assert!(
            pool.pick(&[], &mut fastrand::Rng::with_seed(1)).is_some(),
            "fallbacks take calls"
        );

        a.set_connection(None);
        Owner::endpoint_changed(&*pool);
        assert_eq!(
            fallbacks(&pool),
            ["b", "c"],
            "a fallback that fails is gone for good"
        );

        // b comes back in an answer: listed again, same endpoint; one of two ready listed
        // is 50 %, not below the threshold, so c goes.
        let b_again = ServiceInstance::new("b", "adder", "127.0.0.1", 1);
        pool.apply(&Changes {
            insert: vec![b_again],
            ..Changes::default()
        });
        let infos = pool.infos();
        assert_eq!(infos.len(), 1, "c left once the set recovered: {infos:?}");
        assert!(
            infos[0].id == "b" && !infos[0].fallback && infos[0].ready,
            "b listed again, still connected: {infos:?}"
        );
        assert_eq!(pool.stats().fallbacks, 3, "three endpoints were kept");
    }

    #[tokio::test(start_paused = true)]
    async fn new_ids_replacing_every_old_one_take_over_as_they_connect() {
        let pool = pool(0);
        for id in ["a", "b", "c"] {
            connected(&pool, id).await;
        }
        pool.apply(&Changes {
            remove: ["a", "b", "c"].map(str::to_owned).to_vec(),
            insert: ["d", "e", "f"]
                .map(|id| ServiceInstance::new(id, "adder", "127.0.0.1", 1))
                .to_vec(),
            ..Changes::default()
        });
        assert_eq!(fallbacks(&pool), ["a", "b", "c"], "the old serve meanwhile");
        let new: Vec<Arc<Endpoint>> = pool
            .read()
            .iter()
            .filter(|e| e.id.as_str() > "c")
            .cloned()
            .collect();
        for (i, endpoint) in new.iter().enumerate() {
            endpoint.set_connection(Some(Connection::unanswered().await));
            Owner::endpoint_changed(&*pool);
            let expected: &[&str] = if i < 2 { &["a", "b", "c"] } else { &[] };
            assert_eq!(
                fallbacks(&pool),
                expected,
                "after {} new endpoint(s) connected",
                i + 1
            );
        }
        assert_eq!(pool.infos().len(), 3, "only the new ones are left");
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_change_replaces_the_endpoint_even_when_the_guard_would_hold() {
        let pool = pool(0);
        let _a = connected(&pool, "a").await;
        // One of one changing its address: a drop of the only ready endpoint, but a
        // replacement, not a loss.
        pool.apply(&Changes {
            remove: vec!["a".to_owned()],
            insert: vec![ServiceInstance::new("a", "adder", "127.0.0.1", 2)],
            ..Changes::default()
        });
        let infos = pool.infos();
        assert_eq!(infos.len(), 1, "one endpoint a: {infos:?}");
        assert_eq!(
            infos[0].authority, "127.0.0.1:2",
            "at its new address: {infos:?}"
        );
        assert!(!infos[0].fallback, "listed, not kept: {infos:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_of_three_leaving_applies_at_once_and_a_hold_ends_after_max_hold() {
        let pool = pool(0);
        let _a = connected(&pool, "a").await;
        let _b = connected(&pool, "b").await;
        let _c = connected(&pool, "c").await;
        pool.apply(&removal(&["a"]));
        let ids: Vec<String> = pool.infos().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["b", "c"], "one of three leaving is applied at once");

        pool.apply(&removal(&["b", "c"]));
        assert_eq!(
            fallbacks(&pool),
            ["b", "c"],
            "the rest leaving at once is held"
        );
        let max_hold = pool.config.shrink_guard.max_hold;
        assert_eq!(
            pool.review_fallbacks(Instant::now()),
            Some(Instant::now() + max_hold),
            "the hold ends after max_hold"
        );
        tokio::time::advance(max_hold).await;
        assert_eq!(
            pool.review_fallbacks(Instant::now()),
            None,
            "nothing left to hold"
        );
        assert!(pool.infos().is_empty(), "the answer stands after max_hold");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_ejects_the_endpoint_failing_at_a_rate_that_stands_out() {
        let pool = pool(0);
        let mut endpoints = Vec::new();
        for id in ["a", "b", "c", "d", "e"] {
            endpoints.push(connected(&pool, id).await);
        }
        for (i, endpoint) in endpoints.iter().enumerate() {
            for call in 0..100 {
                if i == 2 && call % 10 < 3 {
                    pool.record_fault(endpoint);
                } else {
                    pool.record_success(endpoint);
                }
            }
        }
        pool.sweep_failure_rates(Instant::now());
        let ejected: Vec<String> = pool
            .infos()
            .into_iter()
            .filter(|e| e.ejected)
            .map(|e| e.id)
            .collect();
        assert_eq!(ejected, ["c"], "c failed 30 % of its calls");
        assert_eq!(
            ejected_for(&endpoints[2]),
            Some(pool.config.failure_rate.interval),
            "for one interval, the first time"
        );
        assert_eq!(
            endpoints[2].info(Instant::now()).consecutive_failures,
            0,
            "Internal answers are no failures in a row: the endpoint is reachable"
        );
        pool.sweep_failure_rates(Instant::now());
        assert_eq!(pool.stats().ejections, 1, "a quiet interval ejects nobody");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_ramps_its_share_of_picks_up_over_the_window() {
        let pool = pool(0);
        let _old = connected(&pool, "old").await;
        Owner::endpoint_changed(&*pool);
        let window = pool.config.slow_start.window;
        tokio::time::advance(window).await;
        assert_eq!(
            pool.refresh_ramps(Instant::now()),
            None,
            "old's ramp is over"
        );

        let _new = connected(&pool, "new").await;
        Owner::endpoint_changed(&*pool);
        let share_of_new = |pool: &Pool| {
            let mut rng = fastrand::Rng::with_seed(8);
            let picks = 10_000;
            let new = (0..picks)
                .filter(|_| {
                    let picked = pool.pick(&[], &mut rng).expect("both are usable");
                    picked.endpoint.release();
                    picked.endpoint.id == "new"
                })
                .count();
            new as f64 / f64::from(picks)
        };
        let at_start = share_of_new(&pool);
        assert!(
            (0.07..0.11).contains(&at_start),
            "expected about 10/110 of idle picks at the ramp's start, got {at_start:.3}"
        );
        tokio::time::advance(window / 2).await;
        let next = pool.refresh_ramps(Instant::now());
        assert!(next.is_some(), "still ramping halfway");
        let halfway = share_of_new(&pool);
        assert!(
            (0.30..0.37).contains(&halfway),
            "expected about 50/150 halfway, got {halfway:.3}"
        );
        tokio::time::advance(window / 2).await;
        assert_eq!(pool.refresh_ramps(Instant::now()), None, "the ramp is over");
        let after = share_of_new(&pool);
        assert!(
            (0.47..0.53).contains(&after),
            "expected half the picks after the window, got {after:.3}"
        );
    }
}
