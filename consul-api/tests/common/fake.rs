//! A fake agent on the transport's seam (`consul_api::Exchange`): no sockets, so tests run
//! on paused time. It serves `health/service` (blocking like Consul: until the service's
//! index passes the one asked, or the wait ends), `catalog/service` and `status/leader`,
//! can refuse with 429 or answer blocking queries at once like a broken agent, and records
//! every request with the connection it came on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use consul_api::{BoxError, ConnectionId, Exchange};
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The query-string pairs of `uri`.
pub fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// How long a blocking query with these pairs may wait: its `wait` (in the milliseconds the
/// client sends), else Consul's default of 5 minutes.
pub fn wait_of(pairs: &[(String, String)]) -> Duration {
    pairs
        .iter()
        .find(|(k, _)| k == "wait")
        .and_then(|(_, w)| w.strip_suffix("ms")?.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(300))
}

/// One request the fake saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub connection: ConnectionId,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub at: Instant,
}

impl Seen {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct State {
    index: u64,
    /// Service → (its index, its instances as (id, port)).
    services: BTreeMap<String, (u64, Vec<(String, u16)>)>,
}

/// The fake agent; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Fake(Arc<FakeAgent>);

impl std::ops::Deref for Fake {
    type Target = FakeAgent;

    fn deref(&self) -> &FakeAgent {
        &self.0
    }
}

#[derive(Debug, Default)]
pub struct FakeAgent {
    state: Mutex<State>,
    changed: Notify,
    seen: Mutex<Vec<Seen>>,
    /// Statuses to answer the next requests with, in order.
    refusals: Mutex<VecDeque<u16>>,
    /// Answer blocking queries at once, without the index moving.
    pub broken: AtomicBool,
    /// Answer everything with 500 (a down cluster behind the agent).
    pub down: AtomicBool,
    /// Answer with HTTP/2 (as an HTTPS agent that speaks it).
    pub http2: AtomicBool,
    in_flight: Mutex<HashMap<ConnectionId, usize>>,
    /// The most requests in flight on one HTTP/1.1 connection at once (must stay 1).
    pub most_on_one_connection: AtomicUsize,
    /// The most distinct connections in use at once.
    pub most_connections_busy: AtomicUsize,
}

impl Fake {
    pub fn new() -> Self {
        Fake::default()
    }
}

impl FakeAgent {
    /// Sets `service`'s instances (empty: known but with no instance; see `remove`).
    pub fn set(&self, service: &str, instances: &[(&str, u16)]) {
        let mut state = self.state.lock().unwrap();
        state.index += 1;
        let index = state.index;
        state.services.insert(
            service.to_owned(),
            (
                index,
                instances.iter().map(|(i, p)| (i.to_string(), *p)).collect(),
            ),
        );
        drop(state);
        self.changed.notify_waiters();
    }

    /// Forgets `service`.
    pub fn remove(&self, service: &str) {
        let mut state = self.state.lock().unwrap();
        state.index += 1;
        state.services.remove(service);
        drop(state);
        self.changed.notify_waiters();
    }

    /// Answers the next `n` requests with `status`.
    pub fn refuse(&self, n: usize, status: u16) {
        self.refusals
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(status, n));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests to `path_prefix`.
    pub fn seen_at(&self, path_prefix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.starts_with(path_prefix))
            .collect()
    }

    fn answer(&self, status: u16, index: u64, body: String) -> http::Response<Bytes> {
        let version = if self.http2.load(Ordering::SeqCst) {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        http::Response::builder()
            .status(status)
            .version(version)
            .header("X-Consul-Index", index.max(1).to_string())
            .header("Content-Type", "application/json")
            .body(Bytes::from(body))
            .unwrap()
    }

    fn entries(service: &str, instances: &[(String, u16)]) -> String {
        let entries: Vec<serde_json::Value> = instances
            .iter()
            .map(|(id, port)| {
                serde_json::json!({
                    "Node": {"Node": "n1", "Address": "127.0.0.1"},
                    "Service": {"ID": id, "Service": service, "Port": port},
                    "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]
                })
            })
            .collect();
        serde_json::Value::Array(entries).to_string()
    }

    async fn serve(
        &self,
        connection: ConnectionId,
        req: http::Request<Bytes>,
    ) -> http::Response<Bytes> {
        let query = query_pairs(req.uri());
        let path = req.uri().path().to_owned();
        let seen = Seen {
            connection,
            path: path.clone(),
            query,
            at: Instant::now(),
        };
        self.seen.lock().unwrap().push(seen.clone());
        if self.down.load(Ordering::SeqCst) {
            return self.answer(500, 0, "No cluster leader".into());
        }
        if let Some(status) = self.refusals.lock().unwrap().pop_front() {
            return self.answer(status, 0, "Your IP is issuing too many concurrent connections, please rate limit your calls\n".into());
        }
        if path == "/v1/status/leader" {
            return self.answer(200, 1, "\"127.0.0.1:8300\"".into());
        }
        if let Some(service) = path.strip_prefix("/v1/catalog/service/") {
            let state = self.state.lock().unwrap();
            let body = match state.services.get(service) {
                Some((_, instances)) if !instances.is_empty() => serde_json::json!([{"Node": "n1", "Address": "127.0.0.1", "ServiceID": instances[0].0, "ServiceName": service, "ServicePort": instances[0].1}]).to_string(),
                _ => "[]".to_owned(),
            };
            return self.answer(200, state.index, body);
        }
        let Some(service) = path.strip_prefix("/v1/health/service/") else {
            return self.answer(404, 0, "Invalid URL path".into());
        };
        let asked: Option<u64> = seen.param("index").and_then(|i| i.parse().ok());
        let wait = wait_of(&seen.query);
        let current = |fake: &FakeAgent| {
            let state = fake.state.lock().unwrap();
            match state.services.get(service) {
                Some((index, instances)) => (*index, Self::entries(service, instances)),
                // An unknown service: Consul answers [] at the catalog's index.
                None => (state.index, "[]".to_owned()),
            }
        };
        if let Some(asked) = asked
            && !self.broken.load(Ordering::SeqCst)
        {
            let deadline = Instant::now() + wait;
            loop {
                let changed = self.changed.notified();
                if current(self).0 > asked {
                    break;
                }
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    break;
                }
            }
        }
        let (index, body) = current(self);
        self.answer(200, index, body)
    }
}

impl Exchange for Fake {
    fn exchange(
        &self,
        connection: ConnectionId,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, BoxError>> {
        let fake = self.clone();
        Box::pin(async move {
            let (on_this, busy) = {
                let mut in_flight = fake.in_flight.lock().unwrap();
                let n = in_flight.entry(connection).or_default();
                *n += 1;
                let on_this = *n;
                (on_this, in_flight.values().filter(|n| **n > 0).count())
            };
            if !fake.http2.load(Ordering::SeqCst) {
                fake.most_on_one_connection
                    .fetch_max(on_this, Ordering::SeqCst);
            }
            fake.most_connections_busy.fetch_max(busy, Ordering::SeqCst);
            let guard = Busy(fake.clone(), connection);
            let answer = fake.serve(connection, request).await;
            drop(guard);
            Ok(answer)
        })
    }
}

/// Marks a request done on its connection, even if the caller dropped it midway.
struct Busy(Fake, ConnectionId);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(n) = self.0.in_flight.lock().unwrap().get_mut(&self.1) {
            *n -= 1;
        }
    }
}
