//! One watch loop: the state carried between two answers for one query, and where its
//! requests go. Uses the watch rules, the published state, the conversions and the client
//! with its budget.
//!
//! A loop is *hot* while it holds a blocking slot of the budget (a [`Lease`]): it runs
//! blocking queries on it, as any watch did before budgets. Without one it is *cold*: it
//! waits for a slot as a [`LeaseRequest`] and meanwhile polls, at the pace its quietness
//! earns ([`poll_interval`]) and the transport's poll turns allow. A cold loop that sees its
//! service move (its answer or just its index) asks for the slot of the quietest hot one; a
//! hot one asked to yield drops its query and turns cold. So the loops of services that are changing now (a rolling restart)
//! block, and the others cost the agent one short poll each every few seconds to every half
//! minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use discovery_core::Query;
use tokio::time::Instant;

use super::config::WatchConfig;
use super::publish::Known;
use super::rules::{answered_early, next_index, poll_interval, spacing};
use crate::backend::convert::to_instance;
use crate::backend::options::{QueryDefaults, read_options};
use crate::client::{Client, QueryMeta, QueryOptions};
use crate::error::Error;
use crate::metrics::{WatchMetrics, WatchOutcome};
use crate::transport::{Lease, LeaseRequest, Leases, Route};

/// How long a poll may wait at the agent. A poll carries the index, so the agent answers at
/// once when the service changed and holds it this long otherwise (an agent serving
/// blocking queries from its streaming view answers such a poll without asking a server).
const POLL_WAIT: Duration = Duration::from_millis(1);

/// Where a loop's queries go.
enum Role {
    /// Not placed yet: the budget may not be known until the first answer.
    Unplaced,
    /// Holding a blocking slot.
    Hot(Arc<Lease>),
    /// Waiting for one, polling meanwhile.
    Cold(LeaseRequest),
}

/// Where the next query goes.
enum Routed {
    Go(Box<(Client, QueryOptions)>),
    Moved,
    Failed(Error),
}

/// What one pass of the loop came to.
enum Step {
    /// An answer (or failure) to the query sent at `sent` index, after `took`; `blocking`
    /// if it was a blocking query on a held slot.
    Answer {
        result: Result<(Known, QueryMeta), Error>,
        sent: u64,
        took: Duration,
        blocking: bool,
    },
    /// The loop changed roles; nothing was read.
    Moved,
}

/// One blocking-query loop: the state carried between two results.
pub(super) struct WatchLoop {
    client: Client,
    config: WatchConfig,
    service: String,
    opts: QueryOptions,
    /// What the existence check reads: the catalog of the same datacenter.
    catalog: QueryOptions,
    /// The index to block on; 0 means "read without blocking".
    index: u64,
    /// The last state read, kept across failures.
    known: Option<Known>,
    /// Whether the next answer is emitted even if unchanged: after a failure, so consumers
    /// learn the source recovered.
    recovering: bool,
    /// Consecutive failures, for the backoff.
    failures: u32,
    /// Consecutive blocking answers that came back early and unchanged.
    early: u32,
    last_start: Option<Instant>,
    /// When the last query ended: the backoff after a failure counts from there.
    last_end: Option<Instant>,
    /// When the service last moved (its index, or its answer), or the loop started.
    last_active: Instant,
    leases: Option<Arc<Leases>>,
    role: Role,
    /// Whether the loop holds a blocking slot, for the hub to report.
    hot: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    metrics: WatchMetrics,
}

impl WatchLoop {
    pub(super) fn new(
        client: Client,
        config: WatchConfig,
        query: &Query,
        defaults: &QueryDefaults,
        requests: Arc<AtomicU64>,
        hot: Arc<AtomicBool>,
    ) -> Self {
        let catalog = QueryOptions {
            datacenter: query.datacenter.clone(),
            ..QueryOptions::default()
        };
        WatchLoop {
            client,
            config,
            service: query.service.clone(),
            opts: read_options(query, defaults),
            catalog,
            index: 0,
            known: None,
            recovering: false,
            failures: 0,
            early: 0,
            last_start: None,
            last_end: None,
            last_active: Instant::now(),
            leases: None,
            role: Role::Unplaced,
            hot,
            requests,
            metrics: WatchMetrics::new(&query.service),
        }
    }

    /// The index the next blocking query waits on (0: it reads without blocking).
    pub(super) fn index(&self) -> u64 {
        self.index
    }

    /// Runs queries until there is something to say: a new state, or a failure.
    pub(super) async fn next(&mut self) -> Result<Known, discovery_core::Error> {
        loop {
            self.pace().await;
            if let Err(err) = self.place().await {
                return Err(self.failed(err));
            }
            match self.step().await {
                Step::Moved => continue,
                Step::Answer {
                    result,
                    sent,
                    took,
                    blocking,
                } => {
                    let returned = match &result {
                        Ok((_, meta)) => Ok(meta.last_index),
                        Err(err) => Err(err.status().map(|s| s.as_u16())),
                    };
                    let outcome = WatchOutcome::of(blocking, sent, returned);
                    self.metrics.request(outcome);
                    match result {
                        Ok((known, meta)) => {
                            if let Some(known) = self.answered(known, &meta, sent, took, outcome) {
                                return Ok(known);
                            }
                        }
                        Err(err) => return Err(self.failed(err)),
                    }
                }
            }
        }
    }

    /// Takes a blocking slot if one is free, else waits for one as a cold loop.
    async fn place(&mut self) -> Result<(), Error> {
        if !matches!(self.role, Role::Unplaced) {
            return Ok(());
        }
        let leases = match &self.leases {
            Some(leases) => leases.clone(),
            None => {
                let leases = self.client.leases().await?;
                self.leases = Some(leases.clone());
                leases
            }
        };
        let mut wish = leases.request(None, false, true);
        let role = match wish.try_granted() {
            Some(lease) => Role::Hot(Arc::new(lease)),
            None => Role::Cold(wish),
        };
        self.set_role(role);
        Ok(())
    }

    /// One query along the loop's role, or a change of role.
    async fn step(&mut self) -> Step {
        let (client, opts) = match self.route().await {
            Routed::Go(go) => *go,
            Routed::Moved => return Step::Moved,
            Routed::Failed(err) => {
                return Step::Answer {
                    result: Err(err),
                    sent: self.index,
                    took: Duration::ZERO,
                    blocking: false,
                };
            }
        };
        let sent = self.index;
        let blocking = sent > 0 && matches!(self.role, Role::Hot(_));
        let start = Instant::now();
        self.last_start = Some(start);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let read = read(&client, &self.service, &opts, &self.catalog);
        let result = match &self.role {
            Role::Hot(lease) => {
                let lease = lease.clone();
                tokio::select! {
                    result = read => Some(result),
                    () = lease.yielded() => None,
                }
            }
            _ => Some(read.await),
        };
        self.last_end = Some(Instant::now());
        match result {
            Some(result) => Step::Answer {
                result,
                sent,
                took: start.elapsed(),
                blocking,
            },
            None => self.demote(),
        }
    }

    /// Where the next query goes: on the held slot; or, cold, as a poll once its turn has
    /// come (unless a slot is lent first); a first read goes short, without blocking.
    async fn route(&mut self) -> Routed {
        match &mut self.role {
            Role::Hot(lease) => {
                if lease.yield_requested() {
                    self.demote();
                    return Routed::Moved;
                }
                let route = Route::Lease(lease.clone());
                Routed::Go(Box::new((self.client.routed(route), self.blocking_opts())))
            }
            // Every read of a cold loop after its first takes a poll turn, so that however
            // many there are, and whatever happens (an outage, a restart), they cost the
            // agent at most the transport's poll rate. A re-read after a failure does not
            // wait its poll interval (the backoff has already spaced it) but does wait its
            // turn.
            Role::Cold(wish) if self.known.is_some() || self.failures > 0 => {
                let every = poll_interval(
                    self.last_active.elapsed(),
                    self.config.min_poll_interval,
                    self.config.max_poll_interval,
                );
                let due = match self.last_start {
                    Some(start) if self.index > 0 => start + every,
                    _ => Instant::now(),
                };
                let client = self.client.clone();
                let turn = async move {
                    tokio::time::sleep_until(due).await;
                    client.poll_turn().await
                };
                let lent = tokio::select! {
                    lease = wish.granted() => Some(lease),
                    turn = turn => match turn {
                        Ok(()) => None,
                        Err(err) => return Routed::Failed(err),
                    },
                };
                if let Some(lease) = lent {
                    self.set_role(Role::Hot(Arc::new(lease)));
                    return Routed::Moved;
                }
                let mut opts = self.opts.clone();
                if self.index > 0 {
                    opts.index = Some(self.index);
                    opts.wait = Some(POLL_WAIT);
                }
                Routed::Go(Box::new((self.client.routed(Route::Poll), opts)))
            }
            // A first read: short, without blocking, and at once (a channel waits for it).
            Role::Cold(_) | Role::Unplaced => {
                Routed::Go(Box::new((self.client.clone(), self.opts.clone())))
            }
        }
    }

    /// The loop's options for its next query on a blocking slot.
    fn blocking_opts(&self) -> QueryOptions {
        let mut opts = self.opts.clone();
        if self.index > 0 {
            opts.index = Some(self.index);
            opts.wait = Some(self.config.wait);
        }
        opts
    }

    /// Gives the slot up (to the loop that asked for it) and waits for one again.
    fn demote(&mut self) -> Step {
        self.set_role(Role::Unplaced);
        if let Some(leases) = self.leases.clone() {
            self.set_role(Role::Cold(leases.request(
                Some(self.last_active),
                false,
                true,
            )));
        }
        tracing::debug!(service = %self.service, "watch gives its blocking slot to a busier one");
        Step::Moved
    }

    /// What an answer says that is new, if anything.
    fn answered(
        &mut self,
        known: Known,
        meta: &QueryMeta,
        sent: u64,
        took: Duration,
        outcome: WatchOutcome,
    ) -> Option<Known> {
        self.failures = 0;
        let returned = meta.last_index;
        self.early = if answered_early(sent, returned, took, self.config.wait) {
            self.early + 1
        } else {
            0
        };
        self.index = next_index(sent, returned);
        if sent > 0 && self.index == 0 {
            self.metrics.index_reset();
            tracing::debug!(sent, returned, "the index went backwards; reading afresh");
        }
        let changed = self.known.as_ref().is_some_and(|k| *k != known);
        tracing::debug!(
            index = returned,
            outcome = outcome.label(),
            changed,
            "watch answer"
        );
        // The service's index moving is activity even when the answer looks the same
        // (a check gone critical behind the passing filter, an instance back before the
        // poll): a poll that catches a rolling restart between two of its instances still
        // learns the service is busy. For a service that does not exist the index Consul
        // returns moves with the rest of the catalog, so it says nothing.
        let moved = sent > 0 && returned > sent && matches!(known, Known::Instances(_));
        if changed || moved {
            self.saw_activity();
        }
        if !changed && self.known.is_some() && !self.recovering {
            return None;
        }
        self.recovering = false;
        self.known = Some(known.clone());
        Some(known)
    }

    fn failed(&mut self, err: Error) -> discovery_core::Error {
        self.failures = self.failures.saturating_add(1);
        self.early = 0;
        self.index = 0;
        self.recovering = true;
        tracing::debug!(service = %self.service, error = %err, failures = self.failures, "consul watch failed");
        err.into()
    }

    fn set_role(&mut self, role: Role) {
        let hot = matches!(role, Role::Hot(_));
        self.hot.store(hot, Ordering::Relaxed);
        self.metrics.hot(hot);
        self.role = role;
    }

    fn saw_activity(&mut self) {
        let now = Instant::now();
        self.last_active = now;
        match &self.role {
            Role::Hot(lease) => lease.touch(now),
            Role::Cold(wish) => wish.changed(now),
            Role::Unplaced => {}
        }
    }

    /// Waits as the rate limit, the backoff and a broken agent require before the next
    /// query: successes are spaced from the start of the last query, failures from its end
    /// (a failure can take long, as when the client retried a 429 several times).
    async fn pace(&self) {
        let since = if self.failures > 0 {
            self.last_end
        } else {
            self.last_start
        };
        let Some(since) = since else {
            return;
        };
        let gap = spacing(&self.config, self.failures, self.early);
        tokio::time::sleep_until(since + gap).await;
    }
}

/// Reads the service's instances; if there are none, asks the catalog whether it knows the
/// service at all. Consul's health endpoint answers `[]` both for a service it has never
/// heard of and for one with no matching instance; the catalog tells them apart, and is
/// asked only when the answer is empty, so a healthy watch costs nothing more.
async fn read(
    client: &Client,
    service: &str,
    opts: &QueryOptions,
    catalog: &QueryOptions,
) -> Result<(Known, QueryMeta), Error> {
    let (entries, meta) = client.health().service(service, opts).await?;
    if entries.is_empty() {
        let (nodes, _) = client.catalog().service(service, catalog).await?;
        if nodes.is_empty() {
            return Ok((Known::Missing, meta));
        }
    }
    Ok((
        Known::Instances(entries.iter().map(to_instance).collect()),
        meta,
    ))
}
