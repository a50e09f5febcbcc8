//! The channel: a tower service that tonic clients call, balancing over discovered
//! endpoints.
//!
//! `poll_ready` is always ready: readiness of a discovered set is a per-call question (is
//! any endpoint ready *now*?), and answering it in `poll_ready` is what makes tonic's own
//! balancer apply discovery only while traffic flows. Instead each call waits, up to the
//! empty timeout, until an endpoint is ready, picks one by weighted power of two choices,
//! and stays counted on it until its response body ends.
//!
//! A call is sent once more, to another endpoint, when the first attempt provably did not
//! reach the server (the endpoint's connection had closed, hyper returned the request
//! undispatched, the server refused the stream) or the server answered `Unavailable` without a
//! body (a draining or overloaded server). Request bodies are streams, consumed as they are
//! sent; the `replay` module keeps a copy of up to 64 KiB while sending, so unary and small
//! streaming requests can go again and larger ones simply are not retried.

mod body;
mod builder;
mod future;
mod replay;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use discovery_core::{Query, Resolver};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tonic::body::Body;
use tower_service::Service;

pub use builder::Builder;
pub use future::ResponseFuture;

use self::body::{InFlight, ResponseBody, Verdict};
pub(crate) use self::replay::ReplayBody;
use self::replay::{MAX_REPLAY_BYTES, Replay};
use crate::pool::connect::DisplayChain;
use crate::pool::{Endpoint, EndpointInfo, Picked, Pool, PoolConfig, Stats};
use crate::{BoxError, Error, Target};

/// How many endpoints one call may try.
const MAX_ATTEMPTS: usize = 2;

/// A tonic channel over the instances of one service, kept current by a resolver watch.
///
/// Cheap to clone: clones share the endpoints and their connections. Discovery stops and
/// connections close when the last clone is dropped.
///
/// # Examples
///
/// ```no_run
/// use discovery_core::MemoryRegistry;
/// use grpc_resolve::DiscoveredChannel;
/// use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tonic::Status> {
/// let registry = MemoryRegistry::new();
/// let channel = DiscoveredChannel::builder(registry, "adder").tag("v1").build();
/// let mut client = HealthClient::new(channel.clone());
/// client.check(HealthCheckRequest { service: String::new() }).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DiscoveredChannel {
    shared: Arc<Shared>,
}

struct Shared {
    pool: Arc<Pool>,
    empty_timeout: Duration,
    /// The channel's own limit on a call, up to its response headers.
    timeout: Option<Duration>,
    discovery: AbortHandle,
}

// === impl DiscoveredChannel ===

impl DiscoveredChannel {
    /// Starts building a channel to `service` as `resolver` finds it.
    pub fn builder<R>(resolver: R, service: impl Into<String>) -> Builder
    where
        R: Resolver + 'static,
    {
        Builder::new(Arc::new(resolver), Query::new(service))
    }

    /// Starts building a channel for a parsed target: its query, with `resolver` (which the
    /// caller makes for the target's address).
    pub fn builder_for_target<R>(resolver: R, target: &Target) -> Builder
    where
        R: Resolver + 'static,
    {
        Builder::new(Arc::new(resolver), target.query.clone())
    }

    fn start(
        resolver: Arc<dyn Resolver>,
        query: Query,
        empty_timeout: Duration,
        timeout: Option<Duration>,
        config: PoolConfig,
    ) -> Self {
        let pool = Arc::new(Pool::new(query.service.clone(), config));
        let discovery = tokio::spawn(crate::discover::run(resolver, query, pool.clone()));
        DiscoveredChannel {
            shared: Arc::new(Shared {
                pool,
                empty_timeout,
                timeout,
                discovery: discovery.abort_handle(),
            }),
        }
    }

    /// The service this channel calls.
    pub fn service(&self) -> &str {
        &self.shared.pool.service
    }

    /// The endpoints discovery knows now, sorted by id, with their state.
    pub fn endpoints(&self) -> Vec<EndpointInfo> {
        self.shared.pool.infos()
    }

    /// What the channel did so far.
    pub fn stats(&self) -> Stats {
        self.shared.pool.stats()
    }

    /// Resolves at the first change after this call (not after the first poll) to the
    /// endpoint set or to an endpoint's readiness or ejection (not its load), and at every
    /// resolver update, even one that changes nothing. Also resolves once the channel is
    /// gone.
    pub fn changed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut changes = self.shared.pool.subscribe();
        async move {
            let _ = changes.changed().await;
        }
    }

    /// Waits until `done` holds for the endpoints (checked now and at every event that
    /// [`DiscoveredChannel::changed`] sees), and returns them.
    pub async fn wait_for(
        &self,
        mut done: impl FnMut(&[EndpointInfo]) -> bool,
    ) -> Vec<EndpointInfo> {
        let mut changes = self.shared.pool.subscribe();
        loop {
            let endpoints = self.endpoints();
            if done(&endpoints) {
                return endpoints;
            }
            let _ = changes.changed().await;
        }
    }
}

impl fmt::Debug for DiscoveredChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveredChannel")
            .field("service", &self.service())
            .field("endpoints", &self.endpoints())
            .field("empty_timeout", &self.shared.empty_timeout)
            .finish()
    }
}

impl Service<http::Request<Body>> for DiscoveredChannel {
    type Response = http::Response<Body>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> ResponseFuture {
        let Some(limit) = call_limit(request.headers(), self.shared.timeout) else {
            return ResponseFuture::new(self.shared.clone().call(request, None));
        };
        let started = Instant::now();
        let ends = started + limit;
        let call = self.shared.clone().call(request, Some((started, ends)));
        // When the wait for an endpoint ends at the same instant, the inner future is
        // polled first and its more telling `NoEndpoints` error wins.
        ResponseFuture::new(async move {
            tokio::time::timeout_at(ends, call)
                .await
                .unwrap_or_else(|_| Err(Error::timeout(limit)))
        })
    }
}

// === impl Shared ===

impl Shared {
    /// One call; `limit` is when it started and when it must end, if it has a limit.
    async fn call(
        self: Arc<Self>,
        request: http::Request<Body>,
        limit: Option<(Instant, Instant)>,
    ) -> Result<http::Response<Body>, Error> {
        let pool = &self.pool;
        pool.counters.calls.inc();
        let mut rng = fastrand::Rng::new();
        let (parts, body) = request.into_parts();
        let mut deadline = LazyDeadline::new(self.empty_timeout, limit);
        let (body, replay) = ReplayBody::new(body, MAX_REPLAY_BYTES);
        let mut body = Some(body);
        // The endpoint of the failed attempt, which the next one avoids.
        let mut avoid: Option<Arc<Endpoint>> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let picked = self
                .ready_endpoint(
                    avoid.as_deref().map(|e| e.id.as_str()),
                    &mut deadline,
                    &mut rng,
                )
                .await?;
            let mut call = InFlight::new(pool.clone(), picked);
            // Asked only once an attempt failed: whether another endpoint could take it.
            let may_retry = |call: &InFlight| {
                attempt < MAX_ATTEMPTS && pool.has_other_usable(&call.endpoint().id)
            };
            // The connection fails readiness only once it has closed; the request is still
            // ours, so another endpoint can take it.
            if let Err(error) = call.connection.ready().await {
                call.judge(Verdict::Unavailable);
                pool.connection_stale(call.endpoint(), call.generation);
                if may_retry(&call) {
                    tracing::debug!(service = %pool.service, endpoint = %call.endpoint().id, %error, "endpoint connection closed; trying another");
                    pool.counters.retries.inc();
                    avoid = Some(call.endpoint().clone());
                    continue;
                }
                return Err(Error::Transport {
                    endpoint: call.endpoint().id.clone(),
                    source: error.into(),
                });
            }
            let Some(this_body) = body.take() else {
                unreachable!("every retry puts a body back");
            };
            match call.connection.send(copy_parts(&parts), this_body).await {
                Ok(response) => {
                    let (head, response_body) = response.into_parts();
                    if let Some(verdict) = body::verdict(&head.headers) {
                        // A trailers-only answer: the status is all there is.
                        call.judge(verdict);
                        if verdict == Verdict::Unavailable
                            && may_retry(&call)
                            && let Some(again) = replay_before(&replay, &mut deadline).await
                        {
                            tracing::debug!(service = %pool.service, endpoint = %call.endpoint().id, "endpoint answered unavailable; trying another");
                            pool.counters.retries.inc();
                            body = Some(again);
                            avoid = Some(call.endpoint().clone());
                            continue;
                        }
                    } else if matches!(head.status.as_u16(), 502..=504) {
                        call.judge(Verdict::Unavailable);
                    }
                    let response_body = Body::new(ResponseBody::new(response_body, call));
                    return Ok(http::Response::from_parts(head, response_body));
                }
                Err(error) => {
                    call.judge(Verdict::Unavailable);
                    let error: BoxError = error.into();
                    if connection_done(&*error) {
                        pool.connection_stale(call.endpoint(), call.generation);
                    }
                    if never_sent(&*error)
                        && may_retry(&call)
                        && let Some(again) = replay_before(&replay, &mut deadline).await
                    {
                        tracing::debug!(service = %pool.service, endpoint = %call.endpoint().id, error = %DisplayChain(&*error), "request not sent; trying another endpoint");
                        pool.counters.retries.inc();
                        body = Some(again);
                        avoid = Some(call.endpoint().clone());
                        continue;
                    }
                    tracing::debug!(service = %pool.service, endpoint = %call.endpoint().id, error = %DisplayChain(&*error), "call failed in transport");
                    return Err(Error::Transport {
                        endpoint: call.endpoint().id.clone(),
                        source: error,
                    });
                }
            }
        }
    }

    /// Waits until an endpoint can be picked, or the deadline.
    async fn ready_endpoint(
        &self,
        avoid: Option<&str>,
        deadline: &mut LazyDeadline,
        rng: &mut fastrand::Rng,
    ) -> Result<Picked, Error> {
        let pool = &self.pool;
        if let Some(picked) = pool.pick(avoid, rng) {
            return Ok(picked);
        }
        // Subscribe before looking again, so a change between the look and the wait is not
        // lost.
        let mut changes = pool.subscribe();
        let deadline = deadline.get();
        loop {
            if let Some(picked) = pool.pick(avoid, rng) {
                return Ok(picked);
            }
            if tokio::time::timeout_at(deadline.at, changes.changed())
                .await
                .is_err()
            {
                pool.counters.no_endpoints.inc();
                let endpoints = pool.infos();
                let ready = endpoints.iter().filter(|e| e.ready).count();
                let detail = if ready > 0 {
                    format!("{ready} ready endpoint(s), all at their concurrency limit")
                } else if !endpoints.is_empty() {
                    format!("{} known endpoint(s), none connected", endpoints.len())
                } else {
                    pool.resolver_state()
                        .unwrap_or_else(|| "discovery has not answered yet".to_owned())
                };
                let waited = deadline.started.elapsed();
                tracing::debug!(service = %pool.service, %detail, ?waited, "no endpoint became ready in time");
                return Err(Error::no_endpoints(
                    &pool.service,
                    waited,
                    &detail,
                    deadline.callers,
                ));
            }
        }
    }
}

/// A body for another attempt, if the request can be sent again before the call's
/// deadline (see [`Replay::replay_when_released`]).
async fn replay_before(replay: &Replay, deadline: &mut LazyDeadline) -> Option<ReplayBody> {
    tokio::time::timeout_at(deadline.get().at, replay.replay_when_released())
        .await
        .ok()
        .flatten()
}

/// A call's time limit, if it has one: the shorter of the caller's deadline
/// (`grpc-timeout`) and the channel's own timeout.
fn call_limit(headers: &http::HeaderMap, channel: Option<Duration>) -> Option<Duration> {
    let callers = headers
        .get(&GRPC_TIMEOUT)
        .and_then(|v| grpc_timeout(v.as_bytes()));
    match (callers, channel) {
        (Some(callers), Some(channel)) => Some(callers.min(channel)),
        (callers, channel) => callers.or(channel),
    }
}

/// A call's [`Deadline`]. Reading the clock is not free on every machine (it traps to the
/// hypervisor on some virtual ones) and most calls never wait, so for a call without a
/// time limit it is worked out when the call first has to wait: the empty timeout counts
/// from then. A call's limit counts from the call's start.
struct LazyDeadline {
    empty_timeout: Duration,
    deadline: Option<Deadline>,
}

impl LazyDeadline {
    /// `limit`: when the call started and when it must end, if it has a limit.
    fn new(empty_timeout: Duration, limit: Option<(Instant, Instant)>) -> Self {
        LazyDeadline {
            empty_timeout,
            deadline: limit
                .map(|(started, ends)| Deadline::new(empty_timeout, started, Some(ends))),
        }
    }

    fn get(&mut self) -> Deadline {
        *self
            .deadline
            .get_or_insert_with(|| Deadline::new(self.empty_timeout, Instant::now(), None))
    }
}

const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// When a call stops waiting for an endpoint: after the channel's empty timeout, or at the
/// end of the call's own time limit if that comes first.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    started: Instant,
    /// Whether `at` is the end of the call's own limit (gRPC then says `DeadlineExceeded`).
    callers: bool,
}

// === impl Deadline ===

impl Deadline {
    fn new(empty_timeout: Duration, started: Instant, call_ends: Option<Instant>) -> Self {
        let empty = started + empty_timeout;
        match call_ends {
            Some(ends) if ends < empty => Deadline {
                at: ends,
                started,
                callers: true,
            },
            _ => Deadline {
                at: empty,
                started,
                callers: false,
            },
        }
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A copy of a request's head for another attempt.
fn copy_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request.into_parts().0
}

/// Whether a transport error proves the request never reached the server's application:
/// hyper gave the request back before dispatching it, or the server's HTTP/2 layer said it
/// did not process the stream.
fn never_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    any_cause(error, |error| {
        error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
            || error.downcast_ref::<h2::Error>().is_some_and(unprocessed)
    })
}

/// Whether a transport error shows the endpoint's connection takes no new calls, though
/// streams still in flight may keep its socket open: hyper says the connection closed, or
/// the server's GOAWAY came.
fn connection_done(error: &(dyn std::error::Error + 'static)) -> bool {
    any_cause(error, |error| {
        error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
            || error
                .downcast_ref::<h2::Error>()
                .is_some_and(|e| e.is_go_away() && e.is_remote())
    })
}

/// Whether `error` or any error in its chain of sources satisfies `test`.
fn any_cause(
    error: &(dyn std::error::Error + 'static),
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    std::iter::successors(Some(error), |error| error.source()).any(test)
}

/// Whether an HTTP/2 error says the server did not process the stream (RFC 9113 §8.7):
/// it reset the stream with `REFUSED_STREAM` (overloaded, or shutting down), or its
/// graceful `GOAWAY` came before the stream (h2 gives that error only to streams above the
/// GOAWAY's last stream id and to streams opened after it; streams the server did accept
/// see the connection close instead).
fn unprocessed(error: &h2::Error) -> bool {
    error.is_remote()
        && match error.reason() {
            Some(h2::Reason::REFUSED_STREAM) => error.is_reset(),
            Some(h2::Reason::NO_ERROR) => error.is_go_away(),
            _ => false,
        }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.discovery.abort();
        self.pool.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_from_the_server_means_unprocessed() {
        // Made here, not received from the server: it says nothing about what the server
        // did.
        let local = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(
            !unprocessed(&local),
            "a locally made REFUSED_STREAM proves nothing"
        );
        assert!(
            !never_sent(&local),
            "nor does it mean never sent when it is the cause"
        );
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(grpc_timeout(b"5S"), Some(Duration::from_secs(5)), "seconds");
        assert_eq!(
            grpc_timeout(b"250m"),
            Some(Duration::from_millis(250)),
            "millis"
        );
        assert_eq!(
            grpc_timeout(b"2H"),
            Some(Duration::from_secs(7200)),
            "hours"
        );
        assert_eq!(
            grpc_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999)),
            "nanos"
        );
        for bad in [&b""[..], b"S", b"5", b"5s", b"123456789S", b"-1S", b"1.5S"] {
            assert_eq!(
                grpc_timeout(bad),
                None,
                "{:?} is not a grpc-timeout",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        /// Any header value parses or is refused without a panic; every well-formed one
        /// means its digits in its unit.
        #[test]
        fn any_grpc_timeout_value_parses_or_is_refused(value in proptest::collection::vec(proptest::num::u8::ANY, 0..12)) {
            let _ = grpc_timeout(&value);
        }

        #[test]
        fn well_formed_grpc_timeouts_mean_their_digits(n in 0u64..100_000_000, unit in 0usize..6) {
            let (letter, per) = [
                ('H', Duration::from_secs(3600)),
                ('M', Duration::from_secs(60)),
                ('S', Duration::from_secs(1)),
                ('m', Duration::from_millis(1)),
                ('u', Duration::from_micros(1)),
                ('n', Duration::from_nanos(1)),
            ][unit];
            let value = format!("{n}{letter}");
            let expected = per.checked_mul(u32::try_from(n).expect("under 10^8"));
            proptest::prop_assert_eq!(grpc_timeout(value.as_bytes()), expected, "{}", value);
        }
    }

    #[test]
    fn copied_parts_keep_the_head_and_extensions() {
        let mut request = http::Request::post("http://adder/pkg.Adder/Add")
            .header("te", "trailers")
            .body(())
            .expect("a request");
        request.extensions_mut().insert(7u32);
        let (parts, ()) = request.into_parts();
        let copy = copy_parts(&parts);
        assert_eq!(copy.method, parts.method, "method");
        assert_eq!(copy.uri, parts.uri, "uri");
        assert_eq!(copy.headers, parts.headers, "headers");
        assert_eq!(copy.extensions.get::<u32>(), Some(&7), "extensions");
    }
}
