//! The blocking-query engine: parsing `index`/`wait` (with Consul's default, cap and
//! jitter), waiting on the store's wake-ups until an answer changes, the count of waiting
//! queries that tests wait for ([`BlockedCount`]) and the encoded answers that watchers
//! asking the same question share ([`ResponseCache`]). Uses `state`, `query`, `error`,
//! `wire`'s durations and `metrics` (the blocked-queries gauge); the HTTP layer calls it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use crate::error::{HttpError, Result};
use crate::query::Query;
use crate::state::{Shared, Store};
use crate::wire::{nanos_to_duration, parse_go_duration};

/// Default blocking wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Longest blocking wait.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Blocking parameters: `index` and the effective wait (with jitter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocking {
    pub(crate) index: u64,
    pub(crate) wait: Duration,
}

/// Parses `index` and `wait` (400 `Invalid index` / `Invalid wait time`).
pub(crate) fn params(q: &Query) -> Result<Blocking> {
    let wait = match q.get("wait") {
        None | Some("") => DEFAULT_WAIT,
        Some(s) => {
            let nanos =
                parse_go_duration(s).map_err(|_| HttpError::bad_request("Invalid wait time"))?;
            let d = nanos_to_duration(nanos);
            if d.is_zero() {
                DEFAULT_WAIT
            } else {
                d.min(MAX_WAIT)
            }
        }
    };
    // After `wait`: Consul's `parseWait` reads `wait` first, so its 400 wins.
    let index = match q.get("index") {
        None | Some("") => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| HttpError::bad_request("Invalid index"))?,
    };
    // Consul adds up to wait/16 so that many clients do not return in lockstep.
    let jitter_max = wait.as_nanos() / 16;
    let jitter = if jitter_max == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(fastrand::u64(
            0..u64::try_from(jitter_max).unwrap_or(u64::MAX),
        ))
    };
    Ok(Blocking {
        index,
        wait: wait + jitter,
    })
}

/// What a blocking query waits on.
#[derive(Debug, Clone)]
pub(crate) enum WatchKey {
    /// A service name's index.
    Service(String),
    /// Any write.
    Global,
}

/// Runs `compute` until its index exceeds `blocking.index`, the wait expires or the agent
/// stops. Without an index (or index 0) answers at once.
pub(crate) async fn block_index<T>(
    shared: &Shared,
    blocked: &BlockedCount,
    blocking: Blocking,
    key: WatchKey,
    compute: impl FnMut(&Store) -> (u64, T),
) -> (u64, T) {
    let b = blocking;
    wait_for(shared, blocked, b.wait, key, compute, |(index, _)| {
        b.index == 0 || *index > b.index
    })
    .await
}

/// Like [`block_index`], but waits for a change in a content hash (agent service hash
/// blocking). Without a hash (or an empty one) answers at once; `None` from `compute` (the
/// service is gone) also answers at once.
pub(crate) async fn block_hash<T>(
    shared: &Shared,
    blocked: &BlockedCount,
    hash: Option<&str>,
    wait: Duration,
    key: WatchKey,
    compute: impl FnMut(&Store) -> Option<(String, T)>,
) -> Option<(String, T)> {
    wait_for(shared, blocked, wait, key, compute, |result| {
        match (hash, result) {
            (Some(want), Some((have, _))) => want.is_empty() || want != have,
            _ => true,
        }
    })
    .await
}

/// The blocking-query loop: runs `compute` under the store's lock until `answers` accepts
/// its result, the wait expires or the agent stops, and returns the last result.
///
/// A query subscribes only once it must wait, under the same lock as the `compute` it waits
/// after, so no change can fall in between; and it keeps that receiver until it answers, so
/// a woken query that answers (the common case) takes the store's lock once and no new
/// subscription.
async fn wait_for<R>(
    shared: &Shared,
    blocked: &BlockedCount,
    wait: Duration,
    key: WatchKey,
    mut compute: impl FnMut(&Store) -> R,
    answers: impl Fn(&R) -> bool,
) -> R {
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = shared.shutdown.clone();
    let mut subscription: Option<watch::Receiver<u64>> = None;
    loop {
        let rx = {
            let mut store = shared.lock();
            let result = compute(&store);
            if answers(&result) {
                return result;
            }
            if *shutdown.borrow() {
                None
            } else {
                Some(match &mut subscription {
                    Some(rx) => rx,
                    None => subscription.insert(subscribe(&mut store, &key)),
                })
            }
        };
        let Some(rx) = rx else {
            return stopped().await;
        };
        let _blocked = BlockedGuard::enter(blocked);
        // Whether the sender was dropped (watcher cleanup): then resubscribe.
        let lost = tokio::select! {
            changed = rx.changed() => changed.is_err(),
            () = tokio::time::sleep_until(deadline) => {
                let store = shared.lock();
                return compute(&store);
            }
            _ = shutdown.changed() => return stopped().await,
        };
        if lost {
            subscription = None;
            tokio::task::yield_now().await;
        }
    }
}

/// What a blocking query waiting when the agent stops gets: nothing. Consul's agent does
/// not answer them as it stops; they end with their connection (Consul gives its HTTP
/// servers a second to finish, then exits), which the client sees as an error, so no
/// client takes the stopped agent's index to the next one (an agent restarted empty has a
/// lower index, and a query carrying the old one would block there for its whole wait).
async fn stopped<R>() -> R {
    std::future::pending().await
}

/// How many blocking queries wait for a change, for tests that must change something only
/// once a query is blocked.
///
/// A counter plus a `Notify`, not a `watch` channel: a thousand queries woken by one change
/// each leave and re-enter, and nobody is usually waiting on the count, so the common path
/// is two atomic operations.
#[derive(Debug, Default)]
pub(crate) struct BlockedCount {
    count: AtomicUsize,
    waiters: AtomicUsize,
    changed: Notify,
}

impl BlockedCount {
    /// The current count.
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until the count is at least `n`.
    pub(crate) async fn wait_for_at_least(&self, n: usize) {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        // Also when the wait is given up: then counting goes back to notifying nobody.
        let _waiting = Waiting(&self.waiters);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change in between is not missed.
            changed.as_mut().enable();
            if self.get() >= n {
                break;
            }
            changed.await;
        }
    }

    fn enter(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        crate::metrics::blocked(true);
        self.announce();
    }

    fn leave(&self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        crate::metrics::blocked(false);
        self.announce();
    }

    fn announce(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// Counts a query as blocked while it waits for a change. It is entered after the query
/// subscribed, so a change made once the count shows it is sure to wake it; dropping it
/// (wake, timeout, or the client going away) leaves.
struct BlockedGuard<'a>(&'a BlockedCount);

impl<'a> BlockedGuard<'a> {
    fn enter(count: &'a BlockedCount) -> BlockedGuard<'a> {
        count.enter();
        BlockedGuard(count)
    }
}

impl Drop for BlockedGuard<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

fn subscribe(store: &mut Store, key: &WatchKey) -> watch::Receiver<u64> {
    match key {
        WatchKey::Service(name) => store.subscribe_service(name),
        WatchKey::Global => store.subscribe_global(),
    }
}

// === ResponseCache ===

/// Encoded answers of recent reads, keyed by the query's meaning and valid for one index.
///
/// Many watchers of one service wake together on a change and ask the same question at the
/// same index; the first computes and encodes the answer and the rest reuse its bytes.
#[derive(Debug, Default)]
pub(crate) struct ResponseCache {
    entries: Mutex<HashMap<String, (u64, Bytes)>>,
}

/// Entries kept before the cache is cleared (a bound, not a tuning knob).
const CACHE_LIMIT: usize = 512;

impl ResponseCache {
    /// The cached bytes for `key` at `index`, or `make()`'s (then cached).
    pub(crate) fn get_or(
        &self,
        key: &str,
        index: u64,
        make: impl FnOnce() -> Result<Bytes, String>,
    ) -> Result<Bytes, String> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((i, bytes)) = entries.get(key)
            && *i == index
        {
            return Ok(bytes.clone());
        }
        let bytes = make()?;
        if entries.len() >= CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(key.to_owned(), (index, bytes.clone()));
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::params as blocking;
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn wait_defaults_caps_and_jitter() {
        let b = blocking(&q("index=5")).expect("valid");
        assert_eq!(b.index, 5);
        assert!(b.wait >= DEFAULT_WAIT && b.wait < DEFAULT_WAIT + DEFAULT_WAIT / 16);
        let b = blocking(&q("index=5&wait=20m")).expect("valid");
        assert!(
            b.wait >= MAX_WAIT && b.wait < MAX_WAIT + MAX_WAIT / 16,
            "capped at 10m"
        );
        let b = blocking(&q("index=5&wait=1600ms")).expect("valid");
        assert!(b.wait >= Duration::from_millis(1600) && b.wait < Duration::from_millis(1700));
        assert_eq!(
            blocking(&q("index=x")).expect_err("bad").body,
            "Invalid index"
        );
        assert_eq!(
            blocking(&q("wait=10")).expect_err("bad").body,
            "Invalid wait time"
        );
    }
}
