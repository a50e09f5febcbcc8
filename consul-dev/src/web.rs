//! HTTP plumbing shared by every endpoint family: the router's state ([`App`]), the
//! per-request extractors ([`Ctx`], [`Write`], [`Read`]), JSON answers with Consul's headers, and
//! method routing with Consul's 405s. It sits above everything but the handlers: the store,
//! the blocking-query engine, the check runner, ACLs, filters and the wire formats.

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde_json::Value;

use crate::acl::Authz;
use crate::blocking::{self, BlockedCount, Blocking, ResponseCache, WatchKey};
use crate::checks::Checks;
use crate::config::Config;
use crate::error::{HttpError, Result, text};
use crate::filter::{Filter, passes};
use crate::query::Query;
use crate::state::{Shared, Store};
use crate::wire::{parse_body, parse_go_duration};

/// The shared state as handlers see it.
pub(crate) type AppState = Arc<App>;

// === App ===

/// Everything a handler reaches: the store, the check runner, and what blocking queries
/// share besides the store.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) shared: Arc<Shared>,
    pub(crate) checks: Checks,
    /// Shared answers for identical blocking reads.
    pub(crate) cache: ResponseCache,
    /// How many blocking queries are waiting for a change (see `DevAgent::blocked_queries`).
    pub(crate) blocked: BlockedCount,
}

impl App {
    /// The agent's state over `shared`, with `checks` running its checks.
    pub(crate) fn new(shared: Arc<Shared>, checks: Checks) -> App {
        App {
            shared,
            checks,
            cache: ResponseCache::default(),
            blocked: BlockedCount::default(),
        }
    }

    /// Locks the store.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.shared.lock()
    }

    /// The local node's name.
    pub(crate) fn node(&self) -> &str {
        self.shared.node()
    }

    /// How the agent presents itself.
    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }
}

/// A successful write: 200 with an empty body.
pub(crate) fn ok_empty() -> Response {
    StatusCode::OK.into_response()
}

// === Ctx ===

/// Per-request context: query, token, ACL decision helpers.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) state: AppState,
    pub(crate) query: Query,
    pub(crate) token: Option<String>,
    /// Whether `Accept` starts with `text/plain`.
    pub(crate) accepts_text_plain: bool,
}

impl Ctx {
    /// Parses the query and headers; rejects Enterprise-only parameters. `dc` is not read
    /// here: only the reads that forward an RPC look at it ([`Read::forward`]).
    pub(crate) fn new(state: &AppState, uri: &http::Uri, headers: &HeaderMap) -> Result<Ctx> {
        let query = Query::parse(uri.query());
        let (reads_ns, reads_partition) = enterprise_parameters_read(uri.path());
        // Consul CE's `parseEntMeta`: the namespace header, the `ns` query parameter, then
        // the partition header and the `partition` parameter, each a 400 of its own wording.
        for (read, param, header_name, canonical, what) in [
            (
                reads_ns,
                "ns",
                "x-consul-namespace",
                "X-Consul-Namespace",
                "Namespaces",
            ),
            (
                reads_partition,
                "partition",
                "x-consul-partition",
                "X-Consul-Partition",
                "Partitions",
            ),
        ] {
            if !read {
                continue;
            }
            let in_header = headers
                .get(header_name)
                .is_some_and(|v| !v.as_bytes().is_empty());
            if in_header {
                return Err(HttpError::bad_request(format!(
                    "Invalid header: \"{canonical}\" - {what} are a Consul Enterprise feature"
                )));
            }
            if query.get(param).is_some_and(|v| !v.is_empty()) {
                return Err(HttpError::bad_request(format!(
                    "Invalid query parameter: \"{param}\" - {what} are a Consul Enterprise feature"
                )));
            }
        }
        // Consul's `returnTextPlain` reads `Accept` (agent health answers as text).
        let accepts_text_plain = headers
            .get(header::ACCEPT)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
        let token = crate::acl::token_from(&query, headers);
        Ok(Ctx {
            state: Arc::clone(state),
            query,
            token,
            accepts_text_plain,
        })
    }

    /// Resolves the request's token (403 `ACL not found` for an unknown secret).
    pub(crate) fn authz(&self) -> Result<Authz> {
        crate::acl::resolve(self.state.config(), self.token.as_deref())
    }

    /// Parses `?filter=` if present (500 on a malformed expression).
    pub(crate) fn filter(&self) -> Result<Option<Filter>> {
        Filter::from_query(&self.query)
    }
}

/// Whether the handler of `path` parses `ns` and `partition` (Consul's `parseEntMeta*`
/// calls): the status endpoints, `catalog/datacenters`, `agent/self` and
/// `agent/maintenance` read neither; `catalog/nodes` and `agent/members` only the partition.
fn enterprise_parameters_read(path: &str) -> (bool, bool) {
    match path {
        "/v1/status/leader"
        | "/v1/status/peers"
        | "/v1/catalog/datacenters"
        | "/v1/agent/self"
        | "/v1/agent/maintenance" => (false, false),
        "/v1/catalog/nodes" | "/v1/agent/members" => (false, true),
        _ => (true, true),
    }
}

/// A handler taking a `Ctx` gets it built by [`Ctx::new`] from the request's query and
/// headers. Handlers with a body take a [`Write`] instead, which builds it after reading
/// the body, so that a body error (413) still wins over a query error.
impl FromRequestParts<AppState> for Ctx {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ctx> {
        Ctx::new(state, &parts.uri, &parts.headers)
    }
}

// === Write ===

/// A write with a JSON body, read in Consul's order: the body first (so that a 413 wins
/// over everything), then the request's [`Ctx`], then the body's JSON (so that a query
/// error wins over a decode error).
#[derive(Debug)]
pub(crate) struct Write {
    pub(crate) ctx: Ctx,
    pub(crate) body: Value,
}

impl FromRequest<AppState> for Write {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Write, Response> {
        let uri = req.uri().clone();
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let ctx = Ctx::new(state, &uri, &headers).map_err(IntoResponse::into_response)?;
        let body = parse_body(&bytes).map_err(|e| HttpError::decode(e).into_response())?;
        Ok(Write { ctx, body })
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
        let blocking = blocking::params(&ctx.query)?;
        Ok(Read {
            ctx,
            consistency,
            blocking,
        })
    }
}

impl Read {
    /// Where Consul's handler makes its RPC, which it forwards to the `?dc=` datacenter: 500
    /// `No path to datacenter` for any but this one. Called by each read after the checks
    /// its handler makes before the RPC (so every 400 of `parse()` and of the handler wins),
    /// and before those the RPC makes (the filter).
    pub(crate) fn forward(&self) -> Result<()> {
        match self.ctx.query.get("dc") {
            Some(dc) if !dc.is_empty() && dc != self.ctx.state.config().datacenter => {
                Err(HttpError::internal("No path to datacenter"))
            }
            _ => Ok(()),
        }
    }

    /// `value` as JSON, with the blocking-query metadata headers for `index`.
    pub(crate) fn answer<T: Serialize>(&self, index: u64, value: &T) -> Response {
        self.answer_encoded(
            index,
            encode(&self.ctx.query, value).map_err(|e| e.to_string()),
        )
    }

    /// Like [`Read::answer`] for a body already encoded with [`encode`].
    pub(crate) fn answer_encoded(&self, index: u64, body: Result<Bytes, String>) -> Response {
        self.answer_from(index, body, BLOCKING_QUERY)
    }

    /// Like [`Read::answer_encoded`] for `health/service`, which Consul serves from its
    /// streaming backend (on by default) when the read blocks (`index` > 0) without
    /// `cached` or `near`: `X-Consul-Query-Backend: streaming`.
    pub(crate) fn answer_encoded_streamable(
        &self,
        index: u64,
        body: Result<Bytes, String>,
    ) -> Response {
        let q = &self.ctx.query;
        let streaming =
            self.blocking.index > 0 && !q.has("cached") && q.get("near").is_none_or(str::is_empty);
        let backend = if streaming { STREAMING } else { BLOCKING_QUERY };
        self.answer_from(index, body, backend)
    }

    fn answer_from(
        &self,
        index: u64,
        body: Result<Bytes, String>,
        backend: HeaderValue,
    ) -> Response {
        let mut resp = json_bytes(body);
        add_meta(resp.headers_mut(), self.consistency, index);
        resp.headers_mut().insert(X_CONSUL_QUERY_BACKEND, backend);
        resp
    }
}

/// Runs `compute` until its index exceeds the read's `index`, the wait expires or the agent
/// stops. Without an index (or index 0) answers at once.
pub(crate) async fn block<T>(
    read: &Read,
    key: WatchKey,
    compute: impl FnMut(&Store) -> (u64, T),
) -> (u64, T) {
    let state = &read.ctx.state;
    blocking::block_index(&state.shared, &state.blocked, read.blocking, key, compute).await
}

// === Read answers ===

/// How a read was served; reported in `X-Consul-Effective-Consistency`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Consistency {
    Leader,
    Stale,
    Consistent,
}

/// Consul's `parseConsistency`: `stale`, `consistent`, `cached`, and `max_stale` (a Go
/// duration; above zero it allows stale reads), then the conflicts, in that order.
pub(crate) fn consistency(q: &Query) -> Result<Consistency> {
    let mut stale = q.has("stale");
    let consistent = q.has("consistent");
    if let Some(max_stale) = q.get("max_stale").filter(|v| !v.is_empty()) {
        let nanos = parse_go_duration(max_stale).map_err(|_| {
            HttpError::bad_request(format!("Invalid max_stale value {max_stale:?}"))
        })?;
        stale |= nanos > 0;
    }
    if stale && consistent {
        return Err(HttpError::bad_request(
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ));
    }
    if q.has("cached") && consistent {
        return Err(HttpError::bad_request(
            "Cannot specify ?cached with ?consistent, conflicting semantics.",
        ));
    }
    Ok(if consistent {
        Consistency::Consistent
    } else if stale {
        Consistency::Stale
    } else {
        Consistency::Leader
    })
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

/// Room for every header of a JSON read (type, five `X-Consul-*`, the ACL policy,
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

/// The agent's list answer: a JSON object of the `(ID, item)` pairs `list` renders that
/// pass the request's `?filter`; empty without read permission (lists filter, not fail).
pub(crate) fn json_by_id<T: Serialize>(
    ctx: &Ctx,
    list: impl FnOnce(&Store) -> Vec<(String, T)>,
) -> Result<Response> {
    let filter = ctx.filter()?;
    let authz = ctx.authz()?;
    let store = ctx.state.lock();
    let mut out = BTreeMap::new();
    if authz.can_read() {
        for (id, rendered) in list(&store) {
            if passes(filter.as_ref(), &rendered) {
                out.insert(id, rendered);
            }
        }
    }
    Ok(json(&ctx.query, &out))
}

/// Serializes `value` as Consul does (compact, or indented with `?pretty`).
pub(crate) fn json<T: Serialize>(q: &Query, value: &T) -> Response {
    json_bytes(encode(q, value).map_err(|e| e.to_string()))
}

const X_CONSUL_INDEX: HeaderName = HeaderName::from_static("x-consul-index");
const X_CONSUL_KNOWNLEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
const X_CONSUL_LASTCONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
const X_CONSUL_EFFECTIVE_CONSISTENCY: HeaderName =
    HeaderName::from_static("x-consul-effective-consistency");
/// Which of Consul's query backends answered: every read that sets the query metadata
/// says so (`setMeta` → `setQueryBackend`).
const X_CONSUL_QUERY_BACKEND: HeaderName = HeaderName::from_static("x-consul-query-backend");
const BLOCKING_QUERY: HeaderValue = HeaderValue::from_static("blocking-query");
const STREAMING: HeaderValue = HeaderValue::from_static("streaming");

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
    let body = if uri.path().contains("/v1/") {
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    } else {
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with \
         '/v1/'\n"
    };
    outside_the_api(text(StatusCode::NOT_FOUND, body))
}

/// Marks an answer of Consul's `Index` handler or its UI, which are not wrapped by the
/// API's `wrap` and so carry no `X-Consul-Default-ACL-Policy`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutsideTheApi;

/// `resp`, marked [`OutsideTheApi`].
pub(crate) fn outside_the_api(mut resp: Response) -> Response {
    resp.extensions_mut().insert(OutsideTheApi);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_go_bool;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
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
