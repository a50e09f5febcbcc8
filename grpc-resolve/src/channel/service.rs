//! [`DiscoveredChannel`]: the tower service tonic calls, and the path of one call through
//! it (wait for an endpoint, pick, send, retry once elsewhere when that is safe and the
//! retry budget allows).
//!
//! May use: the channel's `discovery` (the task it starts), `body`, `budget`, `classify`,
//! `timeout` and `future`; below it, the pool, `replay`, `error` and `target`.

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

use super::body::{InFlight, ResponseBody};
use super::budget::{BudgetConfig, RetryBudget};
use super::classify::{self, Verdict};
use super::discovery;
use super::future::ResponseFuture;
use super::timeout::{LazyDeadline, call_limit};
use crate::error::{BoxError, DisplayChain, Error};
use crate::pool::{Endpoint, EndpointInfo, Picked, Pool, PoolConfig, Stats};
use crate::replay::{MAX_REPLAY_BYTES, Replay, ReplayBody};

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
    /// What bounds the retries.
    budget: RetryBudget,
    /// The pool's maintenance task.
    maintenance: AbortHandle,
}

// === impl DiscoveredChannel ===

impl DiscoveredChannel {
    pub(super) fn start(
        resolver: Arc<dyn Resolver>,
        query: Query,
        empty_timeout: Duration,
        timeout: Option<Duration>,
        config: PoolConfig,
        budget: BudgetConfig,
    ) -> Self {
        let pool = Arc::new(Pool::new(query.service.clone(), config));
        let discovery = tokio::spawn(discovery::run(resolver, query, pool.clone()));
        let maintenance = tokio::spawn(crate::pool::maintain(pool.clone()));
        DiscoveredChannel {
            shared: Arc::new(Shared {
                budget: RetryBudget::new(budget, 0, Instant::now()),
                pool,
                empty_timeout,
                timeout,
                discovery: discovery.abort_handle(),
                maintenance: maintenance.abort_handle(),
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
        let _timer = pool.counters().call_started();
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
                if may_retry(&call) && self.budget_allows() {
                    tracing::debug!(service = %pool.service, endpoint = %call.endpoint().id, %error, "endpoint connection closed; trying another");
                    pool.counters().retried();
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
                    if let Some(verdict) = classify::verdict(&head.headers) {
                        // A trailers-only answer: the status is all there is.
                        call.judge(verdict);
                        if verdict == Verdict::Unavailable
                            && may_retry(&call)
                            && let Some(again) = replay_before(&replay, &mut deadline).await
                            && self.budget_allows()
                        {
                            tracing::debug!(service = %pool.service, endpoint = %call.endpoint().id, "endpoint answered unavailable; trying another");
                            pool.counters().retried();
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
                    if classify::connection_done(&*error) {
                        pool.connection_stale(call.endpoint(), call.generation);
                    }
                    if classify::never_sent(&*error)
                        && may_retry(&call)
                        && let Some(again) = replay_before(&replay, &mut deadline).await
                        && self.budget_allows()
                    {
                        tracing::debug!(service = %pool.service, endpoint = %call.endpoint().id, error = %DisplayChain(&*error), "request not sent; trying another endpoint");
                        pool.counters().retried();
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

    /// Whether the retry budget has a retry for a call that may be retried; a refusal is
    /// counted, and the call ends with its attempt's answer.
    fn budget_allows(&self) -> bool {
        let counters = self.pool.counters();
        if self.budget.withdraw(counters.calls(), Instant::now()) {
            return true;
        }
        counters.retry_denied();
        tracing::debug!(service = %self.pool.service, "retry budget spent; not retrying");
        false
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
        pool.counters().call_waited();
        let deadline = deadline.get();
        loop {
            if let Some(picked) = pool.pick(avoid, rng) {
                return Ok(picked);
            }
            if tokio::time::timeout_at(deadline.at, changes.changed())
                .await
                .is_err()
            {
                pool.counters().found_no_endpoint();
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

impl Drop for Shared {
    fn drop(&mut self) {
        self.discovery.abort();
        self.maintenance.abort();
        self.pool.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
