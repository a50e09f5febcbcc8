//! [`DiscoveredChannel`]: the tower service tonic calls, and the path of one call through
//! it (wait for an endpoint, pick, send, retry once elsewhere when that is safe and the
//! retry budget allows; or, for a hedged call, race attempts on several endpoints).
//!
//! May use: the channel's `discovery` (the task it starts), `attempt`, `budget`, `hedge`,
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

use smallvec::SmallVec;

use super::attempt::{self, Attempt};
use super::budget::{BudgetConfig, RetryBudget};
use super::discovery;
use super::future::ResponseFuture;
use super::hedge::{self, Hedging, Plan};
use super::timeout::{LazyDeadline, call_limit};
use crate::error::Error;
use crate::pool::{Condition, Endpoint, EndpointInfo, Picked, Pool, PoolConfig, Stats};
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
    /// What bounds the retries and hedges.
    budget: RetryBudget,
    /// Which calls are hedged, if any.
    hedging: Option<Hedging>,
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
        hedging: Option<Hedging>,
    ) -> Self {
        let pool = Arc::new(Pool::new(query.service.clone(), config));
        let discovery = tokio::spawn(discovery::run(resolver, query, pool.clone()));
        let maintenance = tokio::spawn(crate::pool::maintain(pool.clone()));
        DiscoveredChannel {
            shared: Arc::new(Shared {
                budget: RetryBudget::new(budget, 0, Instant::now()),
                hedging,
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
        let hedge = (self.shared.hedging.as_ref())
            .filter(|hedging| hedging.applies(request.uri().path()))
            .map(Hedging::plan);
        let Some(limit) = call_limit(request.headers(), self.shared.timeout) else {
            return ResponseFuture::new(self.shared.clone().call(request, None, hedge));
        };
        let started = Instant::now();
        let ends = started + limit;
        let call = self
            .shared
            .clone()
            .call(request, Some((started, ends)), hedge);
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
    /// One call; `limit` is when it started and when it must end, if it has a limit;
    /// `hedge`, how to hedge it, if it is hedged.
    async fn call(
        self: Arc<Self>,
        request: http::Request<Body>,
        limit: Option<(Instant, Instant)>,
        hedge: Option<Plan>,
    ) -> Result<http::Response<Body>, Error> {
        let pool = &self.pool;
        let _timer = pool.counters().call_started();
        let mut rng = fastrand::Rng::new();
        let (parts, body) = request.into_parts();
        let mut deadline = LazyDeadline::new(self.empty_timeout, limit);
        let (body, replay) = ReplayBody::new(body, MAX_REPLAY_BYTES);
        let ends = limit.map(|(_, ends)| ends);
        if let Some(plan) = hedge {
            let first = self.ready_endpoint(&[], &mut deadline, &mut rng).await?;
            return self
                .race(plan, first, (&parts, body, &replay), ends, &mut rng)
                .await;
        }
        let mut body = Some(body);
        // The endpoint of the failed attempt, which the next one avoids.
        let mut avoid: Option<Arc<Endpoint>> = None;
        let mut tries = 0;
        loop {
            tries += 1;
            let avoiding = avoid.as_deref().map(|e| e.id.as_str());
            let picked = self
                .ready_endpoint(avoiding.as_slice(), &mut deadline, &mut rng)
                .await?;
            let endpoint = picked.endpoint.clone();
            let Some(this_body) = body.take() else {
                unreachable!("every retry puts a body back");
            };
            let mut outcome =
                attempt::send(pool, picked, copy_parts(&parts), this_body, ends).await;
            // Asked only once an attempt failed: whether another endpoint could take it.
            if !(outcome.may_go_elsewhere()
                && tries < MAX_ATTEMPTS
                && pool.has_usable_besides(&[&endpoint.id]))
            {
                return outcome.into_result();
            }
            let again = match outcome.take_body() {
                Some(untouched) => Some(untouched),
                None => replay_before(&replay, &mut deadline).await,
            };
            match again {
                Some(again) if self.budget_allows() => {
                    tracing::debug!(service = %pool.service, endpoint = %endpoint.id, "trying another endpoint");
                    pool.counters().retried();
                    body = Some(again);
                    avoid = Some(endpoint);
                }
                _ => return outcome.into_result(),
            }
        }
    }

    /// A hedged call (see [`Hedging`]) sent to `first`: a race of attempts, each after the
    /// first on an endpoint none of the others took, with the same request (read whole and
    /// copied) and the budget's leave. An attempt dropped unanswered after the hedging
    /// delay timed out on its endpoint.
    async fn race(
        &self,
        plan: Plan,
        first: Picked,
        (parts, body, replay): (&http::request::Parts, ReplayBody, &Replay),
        ends: Option<Instant>,
        rng: &mut fastrand::Rng,
    ) -> Result<http::Response<Body>, Error> {
        let pool = &self.pool;
        let timed_out_after = || {
            let after = Instant::now() + plan.delay;
            Some(ends.map_or(after, |ends| ends.min(after)))
        };
        let mut tried: SmallVec<[Arc<Endpoint>; 5]> = SmallVec::new();
        tried.push(first.endpoint.clone());
        let first = hedged_attempt(pool, first, copy_parts(parts), body, timed_out_after());
        let next = || {
            let body = replay.replay()?;
            let avoid: SmallVec<[&str; 5]> = tried.iter().map(|e| e.id.as_str()).collect();
            if !(pool.has_usable_besides(&avoid) && self.budget_allows()) {
                return None;
            }
            let picked = pool.pick_other(&avoid, rng)?;
            drop(avoid);
            tracing::debug!(service = %pool.service, endpoint = %picked.endpoint.id, "no answer within the hedging delay; hedging");
            pool.counters().hedged();
            tried.push(picked.endpoint.clone());
            Some(hedged_attempt(
                pool,
                picked,
                copy_parts(parts),
                body,
                timed_out_after(),
            ))
        };
        hedge::race(plan, first, next, Attempt::wins)
            .await
            .into_result()
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
        avoid: &[&str],
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
                    none_ready(&endpoints)
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

/// Why none of the known `endpoints` is ready: how many are not serving, unresponsive,
/// ejected, or not connected.
fn none_ready(endpoints: &[EndpointInfo]) -> String {
    let count =
        |which: &dyn Fn(&EndpointInfo) -> bool| endpoints.iter().filter(|e| which(e)).count();
    let reasons = [
        (count(&|e| e.ejected), "ejected"),
        (
            count(&|e| !e.ejected && e.condition == Condition::NotServing),
            "not serving",
        ),
        (
            count(&|e| !e.ejected && e.condition == Condition::Unresponsive),
            "unresponsive",
        ),
        (
            count(&|e| !e.ejected && e.condition == Condition::Unknown),
            "not connected or not yet answering their health check",
        ),
    ];
    let reasons: Vec<String> = reasons
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
    format!(
        "{} known endpoint(s), none ready: {}",
        endpoints.len(),
        reasons.join(", ")
    )
}

/// One attempt of a hedged call. A body it gives back untouched is let go of at once, so
/// that the next attempt can replay the request while this outcome waits to be the answer.
async fn hedged_attempt(
    pool: &Arc<Pool>,
    picked: Picked,
    parts: http::request::Parts,
    body: ReplayBody,
    timed_out_after: Option<Instant>,
) -> Attempt {
    let mut outcome = attempt::send(pool, picked, parts, body, timed_out_after).await;
    drop(outcome.take_body());
    outcome
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
