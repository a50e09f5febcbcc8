//! Watches built on blocking queries, shared by every subscriber of the same query.
//! Uses the client with its budget, the health and catalog endpoints and the backend's
//! conversions and options; `ConsulRegistry` uses it, never the reverse.
//!
//! A [`WatchHub`] runs at most one loop per distinct query (and read options): a hundred
//! channels resolving `adder` cost one request in flight, not a hundred. Hubs are shared
//! too: [`WatchHub::shared`] gives every caller in a runtime with the same transport and
//! settings the same hub, so a hundred registries built from the environment share their
//! loops as well. Each loop publishes into a `tokio::sync::watch` channel; subscribers turn
//! it into an [`UpdateStream`]; the loop stops when its last subscriber goes, and a hub with
//! no loop and no handle left is dropped.
//!
//! The loop gets blocking queries right where hand-written loops usually don't:
//! - an index that goes backwards (a snapshot restore, an agent that restarted with fresh
//!   state) restarts from a non-blocking read, as Consul documents;
//! - a returned index of 0 is read as 1, so the next query still blocks instead of spinning;
//! - after a failure the next read does not block either: the agent that answers may be a new
//!   one whose index is below ours, and blocking on our old index would wait the full `wait`
//!   and hide its state that long; and it tells subscribers at once that the source is
//!   back (a `429`, refused before the agent looked, is no exception: the fresh read costs
//!   one request and gives that signal);
//! - the HTTP deadline is above `wait + wait/16` (Consul's jitter), plus a margin;
//! - failures back off exponentially with jitter, capped; successes are spaced at least
//!   `min_interval` apart, and after a few blocking answers in a row that came back at once
//!   with the index unchanged (a broken agent or proxy) at least a second apart, until the
//!   index moves again;
//! - an empty answer is checked against the catalog: a service the catalog does not know
//!   is [`Update::DoesNotExist`](discovery_core::Update::DoesNotExist), one without a
//!   matching instance an empty snapshot;
//! - identical results are not re-emitted; the last-known-good set survives failures, which
//!   arrive as [`Update::Error`](discovery_core::Update::Error) items while the stream goes
//!   on; the first good answer after a failure is emitted even if unchanged, so consumers
//!   learn that the source recovered.
//!
//! Over the budget: a loop holds a blocking slot while it can and polls while it cannot
//! (see the `query` module), so any number of watches stays within the client's
//! connections.

mod config;
mod publish;
mod query;
mod rules;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use discovery_core::{Query, UpdateStream};
use tokio::sync::watch;
use tracing::Instrument;

use super::options::QueryDefaults;
use crate::client::Client;
pub use config::WatchConfig;
use publish::{Published, Subscriber};
use query::WatchLoop;

/// A loop by what it asks.
type LoopKey = (Query, QueryDefaults);
type Loops = HashMap<LoopKey, LoopEntry>;

/// A running loop as its hub sees it.
#[derive(Debug)]
struct LoopEntry {
    tx: Weak<watch::Sender<Published>>,
    /// Whether it holds a blocking slot now.
    hot: Arc<AtomicBool>,
}

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

/// What makes two hubs the same: the transport, the settings and the runtime their loops
/// run on (a loop spawned on one runtime would stop with it).
#[derive(Debug, PartialEq)]
struct HubKey {
    transport: usize,
    config: WatchConfig,
    runtime: Option<tokio::runtime::Id>,
}

/// The live shared hubs. Weak: a hub is kept by its handles and its running loops only.
type Hubs = Vec<(HubKey, Weak<HubInner>)>;
static HUBS: LazyLock<Mutex<Hubs>> = LazyLock::new(|| Mutex::new(Vec::new()));

// === impl WatchHub ===

impl WatchHub {
    /// A hub of its own, whose loops query through `client`. Watches of two such hubs never
    /// share a loop; [`WatchHub::shared`] is what registries use.
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

    /// The hub of every caller with `client`'s transport and `config` in the current tokio
    /// runtime: the live one, else a new one.
    pub fn shared(client: &Client, config: &WatchConfig) -> Self {
        let key = HubKey {
            transport: client.transport_id(),
            config: config.clone(),
            runtime: tokio::runtime::Handle::try_current().ok().map(|h| h.id()),
        };
        // Each mutation is one push or a retain: a poisoned list is still consistent.
        let mut hubs = HUBS.lock().unwrap_or_else(|p| p.into_inner());
        hubs.retain(|(_, hub)| hub.strong_count() > 0);
        if let Some(inner) = hubs
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, hub)| hub.upgrade())
        {
            return WatchHub { inner };
        }
        let hub = WatchHub::new(client.clone(), config.clone());
        hubs.push((key, Arc::downgrade(&hub.inner)));
        hub
    }

    /// How many requests the hub's loops have sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// How many loops run now (one per watched query).
    pub fn active_loops(&self) -> usize {
        self.inner
            .lock()
            .values()
            .filter(|entry| entry.tx.strong_count() > 0)
            .count()
    }

    /// The queries whose loops hold a blocking slot of the budget now (the others poll).
    pub fn blocking(&self) -> Vec<Query> {
        self.inner
            .lock()
            .iter()
            .filter(|(_, entry)| entry.tx.strong_count() > 0 && entry.hot.load(Ordering::Relaxed))
            .map(|((query, _), _)| query.clone())
            .collect()
    }

    /// A stream of updates for `query`, joining the query's loop or starting it. Must be
    /// called inside a tokio runtime.
    pub fn watch(&self, query: &Query) -> UpdateStream {
        self.watch_with(query, &QueryDefaults::default())
    }

    /// [`WatchHub::watch`] with Consul's own read options.
    pub fn watch_with(&self, query: &Query, defaults: &QueryDefaults) -> UpdateStream {
        let rx = self.subscribe(query, defaults);
        Box::pin(futures_util::stream::unfold(
            Subscriber::new(&query.service, rx),
            |mut sub| async move {
                let update = sub.next().await?;
                Some((update, sub))
            },
        ))
    }

    fn subscribe(&self, query: &Query, defaults: &QueryDefaults) -> watch::Receiver<Published> {
        let key = (query.clone(), defaults.clone());
        let mut loops = self.inner.lock();
        if let Some(tx) = loops.get(&key).and_then(|entry| entry.tx.upgrade()) {
            return tx.subscribe();
        }
        let tx = Arc::new(watch::Sender::new(Published::default()));
        let rx = tx.subscribe();
        let hot = Arc::new(AtomicBool::new(false));
        loops.insert(
            key.clone(),
            LoopEntry {
                tx: Arc::downgrade(&tx),
                hot: hot.clone(),
            },
        );
        let state = WatchLoop::new(
            self.inner.client.clone(),
            self.inner.config.clone(),
            query,
            defaults,
            self.inner.requests.clone(),
            hot,
        );
        // The loop's span: every answer it logs (its index, its outcome) names the service.
        // A root span: the loop outlives the subscriber that started it and serves every
        // other one, so it belongs in none of their traces (each subscriber logs the answers
        // it hands on in its own).
        let span = tracing::info_span!(parent: None, "consul_watch", service = %query.service);
        tokio::spawn(run(self.inner.clone(), key, tx, state).instrument(span));
        rx
    }
}

impl HubInner {
    fn lock(&self) -> MutexGuard<'_, Loops> {
        // Each mutation is one insert or remove: a poisoned map is still consistent.
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drives one loop until its last subscriber is gone. The loop keeps its hub alive, so
/// whoever watches the same query meanwhile finds it.
async fn run(
    hub: Arc<HubInner>,
    key: LoopKey,
    tx: Arc<watch::Sender<Published>>,
    mut state: WatchLoop,
) {
    let mut errors: u64 = 0;
    loop {
        tokio::select! {
            () = tx.closed() => {
                let mut loops = hub.lock();
                // A subscriber may have joined between `closed` and taking the lock.
                if tx.receiver_count() == 0 {
                    if loops.get(&key).is_some_and(|e| std::ptr::eq(e.tx.as_ptr(), Arc::as_ptr(&tx))) {
                        loops.remove(&key);
                    }
                    tracing::debug!(service = %key.0.service, "last watcher gone; watch loop stops");
                    return;
                }
            }
            found = state.next() => {
                tx.send_modify(|published| match found {
                    Ok(known) => {
                        published.known = Some(Arc::new(known));
                        published.index = state.index();
                        published.error = None;
                    }
                    Err(err) => {
                        errors += 1;
                        published.error = Some((errors, err));
                    }
                });
            }
        }
    }
}
