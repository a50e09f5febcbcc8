//! Watches built on blocking queries, shared by every subscriber of the same query.
//! Uses the client's health endpoint and the backend's conversions; `ConsulRegistry` uses
//! it, never the reverse.
//!
//! A [`WatchHub`] runs at most one blocking-query loop per distinct [`Query`]: a hundred
//! channels resolving `adder` cost one request in flight, not a hundred. Each loop publishes
//! into a `tokio::sync::watch` channel; subscribers turn it into an [`UpdateStream`]; the loop
//! stops when its last subscriber goes.
//!
//! The loop gets blocking queries right where hand-written loops usually don't:
//! - an index that goes backwards (a snapshot restore, an agent that restarted with fresh
//!   state) restarts from a non-blocking read, as Consul documents;
//! - a returned index of 0 is read as 1, so the next query still blocks instead of spinning;
//! - after a failure the next read does not block either: the agent that answers may be a new
//!   one whose index is below ours, and blocking on our old index would wait the full `wait`
//!   and hide its state that long;
//! - the HTTP deadline is above `wait + wait/16` (Consul's jitter), plus a margin;
//! - failures back off exponentially with jitter, capped; successes are rate-limited by a
//!   minimum spacing, so a server answering at once with nothing new cannot spin the loop;
//! - identical results are not re-emitted; the last-known-good set survives failures, which
//!   arrive as [`Update::Error`] items while the stream goes on; the first good answer after
//!   a failure is emitted even if unchanged, so consumers learn that the source recovered.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use discovery_core::{Backoff, Query, ServiceInstance, Update, UpdateStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::convert::{query_options, to_instance};
use crate::client::{Client, QueryOptions};

/// Blocking-query and retry settings of watches.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchConfig {
    /// How long one blocking query may wait at the server.
    pub wait: Duration,
    /// Least time between the starts of two queries of one loop.
    pub min_interval: Duration,
    /// The wait after consecutive failures.
    pub backoff: Backoff,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            wait: Duration::from_secs(300),
            min_interval: Duration::from_millis(20),
            // A cap low enough that a watch resumes within a second of Consul coming back,
            // high enough that a down agent sees about one request per second per query.
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        }
    }
}

impl WatchConfig {
    /// Sets the blocking wait.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sets the backoff after failures.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the minimum spacing of queries.
    #[must_use]
    pub fn min_interval(mut self, min_interval: Duration) -> Self {
        self.min_interval = min_interval;
        self
    }
}

/// What a loop publishes: the last good set and the last failure since then.
#[derive(Debug, Clone, Default)]
struct Published {
    /// The last snapshot; `None` until the first answer.
    snapshot: Option<Arc<Vec<ServiceInstance>>>,
    /// The latest failure since that snapshot, numbered so each subscriber emits it once.
    error: Option<(u64, discovery_core::Error)>,
}

type Loops = HashMap<Query, Arc<watch::Sender<Published>>>;

/// Shares one blocking-query loop per query among all its subscribers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WatchHub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    client: Client,
    config: WatchConfig,
    loops: Mutex<Loops>,
    /// Requests sent by all loops, for observability and tests.
    requests: Arc<AtomicU64>,
}

// === impl WatchHub ===

impl WatchHub {
    /// A hub whose loops query through `client`.
    pub fn new(client: Client, config: WatchConfig) -> Self {
        WatchHub {
            inner: Arc::new(HubInner {
                client,
                config,
                loops: Mutex::new(HashMap::new()),
                requests: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// How many requests the hub's loops have sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// How many loops run now (one per watched query).
    pub fn active_loops(&self) -> usize {
        self.inner.lock().len()
    }

    /// A stream of updates for `query`, joining the query's loop or starting it. Must be
    /// called inside a tokio runtime.
    pub fn watch(&self, query: &Query) -> UpdateStream {
        let rx = self.subscribe(query);
        Box::pin(futures_util::stream::unfold(
            Subscriber::new(rx),
            |mut sub| async move {
                let update = sub.next().await?;
                Some((update, sub))
            },
        ))
    }

    fn subscribe(&self, query: &Query) -> watch::Receiver<Published> {
        let mut loops = self.inner.lock();
        if let Some(tx) = loops.get(query) {
            return tx.subscribe();
        }
        let tx = Arc::new(watch::Sender::new(Published::default()));
        let rx = tx.subscribe();
        loops.insert(query.clone(), tx.clone());
        let state = WatchLoop::new(
            self.inner.client.clone(),
            self.inner.config.clone(),
            query.clone(),
            self.inner.requests.clone(),
        );
        tokio::spawn(run(Arc::downgrade(&self.inner), query.clone(), tx, state));
        rx
    }
}

impl HubInner {
    fn lock(&self) -> MutexGuard<'_, Loops> {
        // Each mutation is one insert or remove: a poisoned map is still consistent.
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drives one loop until its last subscriber is gone (or the hub is dropped).
async fn run(
    hub: std::sync::Weak<HubInner>,
    query: Query,
    tx: Arc<watch::Sender<Published>>,
    mut state: WatchLoop,
) {
    let mut errors: u64 = 0;
    loop {
        tokio::select! {
            () = tx.closed() => {
                let Some(hub) = hub.upgrade() else { return };
                let mut loops = hub.lock();
                // A subscriber may have joined between `closed` and taking the lock.
                if tx.receiver_count() == 0 {
                    if loops.get(&query).is_some_and(|t| Arc::ptr_eq(t, &tx)) {
                        loops.remove(&query);
                    }
                    tracing::debug!(service = %query.service, "last watcher gone; watch loop stops");
                    return;
                }
            }
            update = state.next() => {
                tx.send_modify(|published| match update {
                    Update::Snapshot(instances) => {
                        published.snapshot = Some(Arc::new(instances));
                        published.error = None;
                    }
                    Update::Error(err) => {
                        errors += 1;
                        published.error = Some((errors, err));
                    }
                    // The loop emits only snapshots and errors.
                    _ => {}
                });
            }
        }
    }
}

/// One subscriber's view of a loop: emits each new snapshot and each new error once.
struct Subscriber {
    rx: watch::Receiver<Published>,
    seen_snapshot: Option<Arc<Vec<ServiceInstance>>>,
    seen_error: u64,
    pending: VecDeque<Update>,
}

impl Subscriber {
    fn new(mut rx: watch::Receiver<Published>) -> Self {
        // Joining a running loop yields its current state at once.
        rx.mark_changed();
        Subscriber {
            rx,
            seen_snapshot: None,
            seen_error: 0,
            pending: VecDeque::new(),
        }
    }

    async fn next(&mut self) -> Option<Update> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Some(update);
            }
            // The sender lives as long as this receiver (the loop only stops when no
            // receiver is left), so this ends only if the runtime is shutting down.
            self.rx.changed().await.ok()?;
            let published = self.rx.borrow_and_update().clone();
            if let Some(snapshot) = published.snapshot {
                let new = self
                    .seen_snapshot
                    .as_ref()
                    .is_none_or(|seen| !Arc::ptr_eq(seen, &snapshot));
                if new {
                    self.pending
                        .push_back(Update::Snapshot(snapshot.as_ref().clone()));
                    self.seen_snapshot = Some(snapshot);
                }
            }
            if let Some((n, err)) = published.error
                && n > self.seen_error
            {
                self.seen_error = n;
                self.pending.push_back(Update::Error(err));
            }
        }
    }
}

/// One blocking-query loop: the state carried between two results.
struct WatchLoop {
    client: Client,
    config: WatchConfig,
    service: String,
    opts: QueryOptions,
    /// The index to block on; 0 means "read without blocking".
    index: u64,
    /// The last snapshot produced, so identical answers produce nothing.
    last: Option<Vec<ServiceInstance>>,
    /// Consecutive failures, for the backoff.
    failures: u32,
    last_start: Option<Instant>,
    requests: Arc<AtomicU64>,
}

impl WatchLoop {
    fn new(client: Client, config: WatchConfig, query: Query, requests: Arc<AtomicU64>) -> Self {
        WatchLoop {
            requests,
            client,
            config,
            opts: query_options(&query),
            service: query.service,
            index: 0,
            last: None,
            failures: 0,
            last_start: None,
        }
    }

    /// Runs queries until there is something to say.
    async fn next(&mut self) -> Update {
        loop {
            self.pace().await;
            self.last_start = Some(Instant::now());
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut opts = self.opts.clone();
            if self.index > 0 {
                opts.index = Some(self.index);
                opts.wait = Some(self.config.wait);
            }
            match self.client.health().service(&self.service, &opts).await {
                Ok((entries, meta)) => {
                    self.failures = 0;
                    self.index = next_index(self.index, meta.last_index);
                    let instances: Vec<ServiceInstance> = entries.iter().map(to_instance).collect();
                    if self.last.as_ref() != Some(&instances) {
                        self.last = Some(instances.clone());
                        return Update::Snapshot(instances);
                    }
                }
                Err(err) => {
                    self.failures = self.failures.saturating_add(1);
                    self.index = 0;
                    // The first good answer after a failure is emitted even if unchanged: it
                    // tells consumers the source recovered.
                    self.last = None;
                    tracing::debug!(service = %self.service, error = %err, failures = self.failures, "consul watch failed");
                    return Update::Error(err.into());
                }
            }
        }
    }

    /// Waits as the rate limit and the backoff require before the next query.
    async fn pace(&self) {
        let Some(last_start) = self.last_start else {
            return;
        };
        let gap = if self.failures > 0 {
            let attempt = self.failures.saturating_sub(1);
            self.config
                .backoff
                .delay(attempt)
                .max(self.config.min_interval)
        } else {
            self.config.min_interval
        };
        tokio::time::sleep_until(last_start + gap).await;
    }
}

/// The index to block on next, given the one we sent and the one Consul returned.
pub(crate) fn next_index(sent: u64, returned: u64) -> u64 {
    // Never block on 0: it would return at once, every time. Read a 0 as 1 first, so a
    // server that always says 0 is not mistaken for one whose index went backwards.
    let returned = returned.max(1);
    if returned < sent {
        // Went backwards: the data was reset; read afresh.
        0
    } else {
        returned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_hygiene() {
        assert_eq!(next_index(0, 0), 1, "a zero index is read as 1");
        assert_eq!(next_index(1, 0), 1, "a zero after 1 is no reset");
        assert_eq!(next_index(0, 42), 42);
        assert_eq!(next_index(42, 42), 42, "unchanged: block again");
        assert_eq!(next_index(42, 7), 0, "backwards: start over");
    }
}
