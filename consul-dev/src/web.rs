//! HTTP plumbing shared by every endpoint family: plain-text errors, query parsing,
//! JSON answers with Consul's headers, method routing with Consul's 405s, blocking waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::acl::Authz;
use crate::filter::Filter;
use crate::state::{Shared, Store};
use crate::wire::parse_go_duration;

/// The shared state as handlers see it.
pub(crate) type AppState = Arc<Shared>;

// === HttpError ===

/// An error answered as Consul does: a status and a plain-text body.
#[derive(Debug)]
pub(crate) struct HttpError {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, body: impl Into<String>) -> HttpError {
        HttpError {
            status,
            body: body.into(),
        }
    }
    pub(crate) fn bad_request(body: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, body)
    }
    pub(crate) fn not_found(body: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, body)
    }
    pub(crate) fn forbidden(body: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::FORBIDDEN, body)
    }
    pub(crate) fn internal(body: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, body)
    }
    /// The `Request decode failed: ...` 400.
    pub(crate) fn decode(e: crate::wire::DecodeError) -> HttpError {
        HttpError::bad_request(format!("Request decode failed: {}", e.0))
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        text(self.status, self.body)
    }
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A successful write: 200 with an empty body.
pub(crate) fn ok_empty() -> Response {
    StatusCode::OK.into_response()
}

pub(crate) type Result<T, E = HttpError> = std::result::Result<T, E>;

// === Query ===

/// The parsed query string, keeping repeats and value-less flags (`?stale`).
#[derive(Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string.
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    /// The first value of `key` ("" for a bare flag).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present at all.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every value of `key`.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

// === Ctx ===

/// Per-request context: query, token, ACL decision helpers.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) state: AppState,
    pub(crate) query: Query,
    pub(crate) token: Option<String>,
}

impl Ctx {
    /// Parses the query and headers; rejects Enterprise-only parameters and unknown `dc`.
    pub(crate) fn new(state: &AppState, raw: Option<&str>, headers: &HeaderMap) -> Result<Ctx> {
        let query = Query::parse(raw);
        for (param, header_name, what) in [
            ("ns", "x-consul-namespace", "Namespaces"),
            ("partition", "x-consul-partition", "Partitions"),
        ] {
            let in_query = query.get(param).is_some_and(|v| !v.is_empty());
            let in_header = headers
                .get(header_name)
                .is_some_and(|v| !v.as_bytes().is_empty());
            if in_query || in_header {
                return Err(HttpError::bad_request(format!(
                    "Invalid query parameter: \"{param}\" - {what} are a Consul Enterprise feature"
                )));
            }
        }
        if let Some(dc) = query.get("dc")
            && !dc.is_empty()
            && dc != state.config.datacenter
        {
            return Err(HttpError::internal("No path to datacenter"));
        }
        let token = crate::acl::token_from(&query, headers);
        Ok(Ctx {
            state: Arc::clone(state),
            query,
            token,
        })
    }

    /// Resolves the request's token (403 `ACL not found` for an unknown secret).
    pub(crate) fn authz(&self) -> Result<Authz> {
        crate::acl::resolve(&self.state.config, self.token.as_deref())
    }

    /// Parses `?filter=` if present (500 on a malformed expression).
    pub(crate) fn filter(&self) -> Result<Option<Filter>> {
        Filter::from_query(&self.query)
    }
}

/// A handler taking a `Ctx` gets it built by [`Ctx::new`] from the request's query and
/// headers. Handlers with a body build theirs after reading it instead, so that a body
/// error (413) still wins over a query error.
impl FromRequestParts<AppState> for Ctx {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ctx> {
        Ctx::new(state, parts.uri.query(), &parts.headers)
    }
}

// === Read ===

/// A blocking read: the request's [`Ctx`] with its consistency mode and blocking
/// parameters, parsed in that order (so the first bad one names the 400).
///
/// Each handler then checks what is specific to it (path, `?passing`, `?filter`, the ACL
/// decision, in its own order), waits with [`block`] and answers with
/// [`Read::answer`], which adds the `X-Consul-*` headers.
#[derive(Debug)]
pub(crate) struct Read {
    pub(crate) ctx: Ctx,
    consistency: Consistency,
    blocking: Blocking,
}

impl FromRequestParts<AppState> for Read {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Read> {
        let ctx = Ctx::from_request_parts(parts, state).await?;
        let consistency = consistency(&ctx.query)?;
        let blocking = blocking(&ctx.query)?;
        Ok(Read {
            ctx,
            consistency,
            blocking,
        })
    }
}

impl Read {
    /// `value` as JSON, with the blocking-query metadata headers for `index`.
    pub(crate) fn answer<T: Serialize>(&self, index: u64, value: &T) -> Response {
        self.answer_encoded(
            index,
            encode(&self.ctx.query, value).map_err(|e| e.to_string()),
        )
    }

    /// Like [`Read::answer`] for a body already encoded with [`encode`].
    pub(crate) fn answer_encoded(&self, index: u64, body: Result<Bytes, String>) -> Response {
        let mut resp = json_bytes(body);
        add_meta(resp.headers_mut(), self.consistency, index);
        resp
    }
}

// === Read answers ===

/// How a read was served; reported in `X-Consul-Effective-Consistency`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Consistency {
    Leader,
    Stale,
    Consistent,
}

/// Parses `stale`/`consistent` (both → 400).
pub(crate) fn consistency(q: &Query) -> Result<Consistency> {
    match (q.has("stale"), q.has("consistent")) {
        (true, true) => Err(HttpError::bad_request(
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        )),
        (true, false) => Ok(Consistency::Stale),
        (false, true) => Ok(Consistency::Consistent),
        (false, false) => Ok(Consistency::Leader),
    }
}

/// Encodes `value` as Consul does (compact, or indented with `?pretty`).
pub(crate) fn encode<T: Serialize>(q: &Query, value: &T) -> Result<Bytes, serde_json::Error> {
    if q.has("pretty") {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        value.serialize(&mut ser)?;
        buf.push(b'\n');
        Ok(Bytes::from(buf))
    } else {
        serde_json::to_vec(value).map(Bytes::from)
    }
}

/// Room for every header of a JSON read (type, four `X-Consul-*`, the ACL policy,
/// `Content-Length`), so that the map is allocated once and never regrown.
const READ_HEADERS: usize = 8;

/// A JSON answer from already encoded bytes.
fn json_bytes(body: Result<Bytes, String>) -> Response {
    match body {
        Ok(body) => {
            let mut resp = Response::new(Body::from(body));
            let headers = resp.headers_mut();
            *headers = HeaderMap::with_capacity(READ_HEADERS);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => HttpError::internal(format!("failed to encode response: {e}")).into_response(),
    }
}

/// Serializes `value` as Consul does (compact, or indented with `?pretty`).
pub(crate) fn json<T: Serialize>(q: &Query, value: &T) -> Response {
    json_bytes(encode(q, value).map_err(|e| e.to_string()))
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

const X_CONSUL_INDEX: HeaderName = HeaderName::from_static("x-consul-index");
const X_CONSUL_KNOWNLEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
const X_CONSUL_LASTCONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
const X_CONSUL_EFFECTIVE_CONSISTENCY: HeaderName =
    HeaderName::from_static("x-consul-effective-consistency");

/// Adds `X-Consul-Index` (never 0), `KnownLeader`, `LastContact`, consistency.
fn add_meta(h: &mut HeaderMap, c: Consistency, index: u64) {
    h.insert(X_CONSUL_INDEX, HeaderValue::from(index.max(1)));
    h.insert(X_CONSUL_KNOWNLEADER, HeaderValue::from_static("true"));
    h.insert(X_CONSUL_LASTCONTACT, HeaderValue::from_static("0"));
    h.insert(
        X_CONSUL_EFFECTIVE_CONSISTENCY,
        HeaderValue::from_static(match c {
            Consistency::Leader => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }),
    );
}

// === Blocking ===

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
pub(crate) fn blocking(q: &Query) -> Result<Blocking> {
    let index = match q.get("index") {
        None | Some("") => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| HttpError::bad_request("Invalid index"))?,
    };
    let wait = match q.get("wait") {
        None | Some("") => DEFAULT_WAIT,
        Some(s) => {
            let nanos =
                parse_go_duration(s).map_err(|_| HttpError::bad_request("Invalid wait time"))?;
            let d = crate::wire::nanos_to_duration(nanos);
            if d.is_zero() {
                DEFAULT_WAIT
            } else {
                d.min(MAX_WAIT)
            }
        }
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

/// Runs `compute` until its index exceeds the read's `index`, the wait expires or the agent
/// stops. Without an index (or index 0) answers at once.
pub(crate) async fn block<T>(
    read: &Read,
    key: WatchKey,
    compute: impl FnMut(&Store) -> (u64, T),
) -> (u64, T) {
    let b = read.blocking;
    wait_for(&read.ctx.state, b.wait, key, compute, |(index, _)| {
        b.index == 0 || *index > b.index
    })
    .await
}

/// Like [`block`], but waits for a change in a content hash (agent service hash blocking).
/// Without a hash (or an empty one) answers at once; `None` from `compute` (the service
/// is gone) also answers at once.
pub(crate) async fn block_hash<T>(
    state: &AppState,
    hash: Option<&str>,
    wait: Duration,
    key: WatchKey,
    compute: impl FnMut(&Store) -> Option<(String, T)>,
) -> Option<(String, T)> {
    wait_for(state, wait, key, compute, |result| match (hash, result) {
        (Some(want), Some((have, _))) => want.is_empty() || want != have,
        _ => true,
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
    state: &AppState,
    wait: Duration,
    key: WatchKey,
    mut compute: impl FnMut(&Store) -> R,
    answers: impl Fn(&R) -> bool,
) -> R {
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = state.shutdown.clone();
    let mut subscription: Option<watch::Receiver<u64>> = None;
    loop {
        let rx = {
            let mut store = state.lock();
            let result = compute(&store);
            if answers(&result) || *shutdown.borrow() {
                return result;
            }
            match &mut subscription {
                Some(rx) => rx,
                None => subscription.insert(subscribe(&mut store, &key)),
            }
        };
        let _blocked = BlockedGuard::enter(&state.blocked);
        // Whether the sender was dropped (watcher cleanup): then resubscribe.
        let lost = tokio::select! {
            changed = rx.changed() => changed.is_err(),
            () = tokio::time::sleep_until(deadline) => {
                let store = state.lock();
                return compute(&store);
            }
            _ = shutdown.changed() => {
                let store = state.lock();
                return compute(&store);
            }
        };
        if lost {
            subscription = None;
            tokio::task::yield_now().await;
        }
    }
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
        self.announce();
    }

    fn leave(&self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
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

// === Routing ===

/// A route accepting only `methods` (plus OPTIONS), answering others with Consul's 405.
pub(crate) fn only<H, T>(methods: &'static [Method], handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState> + Clone,
    T: 'static,
{
    let allow: String = std::iter::once("OPTIONS")
        .chain(methods.iter().map(Method::as_str))
        .collect::<Vec<_>>()
        .join(",");
    let mut router = MethodRouter::new();
    for m in methods {
        router = match *m {
            Method::GET => router.get(handler.clone()),
            Method::PUT => router.put(handler.clone()),
            Method::POST => router.post(handler.clone()),
            Method::DELETE => router.delete(handler.clone()),
            _ => router,
        };
    }
    let allow_options = allow.clone();
    router
        .options(move || {
            let allow = allow_options.clone();
            async move {
                let mut resp = StatusCode::OK.into_response();
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
                resp
            }
        })
        .fallback(move |method: Method| {
            let allow = allow.clone();
            async move {
                let mut resp = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("method {method} not allowed"),
                );
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
                resp
            }
        })
}

/// PUT-only route.
pub(crate) fn put<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState> + Clone,
    T: 'static,
{
    only(&[Method::PUT], handler)
}

/// GET-only route.
pub(crate) fn get<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState> + Clone,
    T: 'static,
{
    only(&[Method::GET], handler)
}

/// The answer for paths no route matches.
pub(crate) async fn not_found(uri: http::Uri) -> Response {
    if uri.path().starts_with("/v1/") {
        text(
            StatusCode::NOT_FOUND,
            "Invalid URL path: not a recognized HTTP API endpoint\n",
        )
    } else {
        text(StatusCode::NOT_FOUND, "404 page not found\n")
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn flags_and_repeats() {
        let query = q("stale&tag=a&tag=b&passing=");
        assert!(query.has("stale"));
        assert_eq!(query.get("stale"), Some(""));
        assert_eq!(query.all("tag").collect::<Vec<_>>(), ["a", "b"]);
        assert!(matches!(consistency(&query), Ok(Consistency::Stale)));
        assert!(consistency(&q("stale&consistent")).is_err());
        assert_eq!(parse_go_bool("T"), Some(true));
        assert_eq!(parse_go_bool("yes"), None);
    }
}
