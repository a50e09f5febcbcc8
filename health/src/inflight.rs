//! A built-in indicator: the number of calls in flight, counted by a tower layer. Reports
//! through the [`Health`](crate::Health) handle.
//!
//! A server that is over its concurrency budget should shed new traffic before it falls
//! over: over `high` calls in flight the covered services turn NOT_SERVING (so the
//! registry's check fails and balancers move traffic elsewhere); they come back only once
//! the count falls to `low`. The gap between the two (hysteresis) keeps a server hovering
//! at the limit from flapping in and out of the registry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{Health, Probe, Scope};

/// The indicator name the in-flight limit reports under.
const NAME: &str = "in-flight";

/// Counts calls in flight and reports to a [`Health`]; mount with `Server::builder().layer(..)`.
#[derive(Debug, Clone)]
pub struct InFlightLimitLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    health: Health,
    scope: Scope,
    high: usize,
    low: usize,
    in_flight: AtomicUsize,
    tripped: AtomicBool,
}

impl InFlightLimitLayer {
    /// Over `high` calls in flight → down; back up at `low` or fewer. `low` is clamped to
    /// at most `high`.
    pub fn new(health: Health, high: usize, low: usize) -> Self {
        InFlightLimitLayer {
            shared: Arc::new(Shared {
                health,
                scope: Scope::All,
                high,
                low: low.min(high),
                in_flight: AtomicUsize::new(0),
                tripped: AtomicBool::new(false),
            }),
        }
    }

    /// The calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlight {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`InFlightLimitLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, Req> Service<Req> for InFlight<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InFlightFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let now = self.shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        if now > self.shared.high && !self.shared.tripped.swap(true, Ordering::SeqCst) {
            self.shared.health.report_now(
                NAME,
                self.shared.scope.clone(),
                Probe::down(format!(
                    "{now} calls in flight, over the limit of {}",
                    self.shared.high
                )),
            );
        }
        InFlightFuture {
            inner: self.inner.call(req),
            guard: Guard(self.shared.clone()),
        }
    }
}

/// Decrements the count when the call ends, however it ends (completed or dropped).
#[derive(Debug)]
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        let shared = &self.0;
        let now = shared.in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
        if now <= shared.low && shared.tripped.swap(false, Ordering::SeqCst) {
            shared.health.report_now(
                NAME,
                shared.scope.clone(),
                Probe::up(format!("{now} calls in flight, at or under {}", shared.low)),
            );
        }
    }
}

pin_project! {
    /// The response future of [`InFlight`]: the call counts as in flight until it resolves.
    /// (For a streaming response, that is until the headers arrive.)
    #[derive(Debug)]
    pub struct InFlightFuture<F> {
        #[pin]
        inner: F,
        guard: Guard,
    }
}

impl<F: Future> Future for InFlightFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use discovery_core::HealthStatus;
    use tokio::sync::oneshot;

    use super::*;
    use crate::SERVER;

    /// A service whose calls finish when the test says so.
    #[derive(Clone)]
    struct Gate;

    impl Service<oneshot::Receiver<()>> for Gate {
        type Response = ();
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<(), Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, done: oneshot::Receiver<()>) -> Self::Future {
            Box::pin(async move {
                let _ = done.await;
                Ok(())
            })
        }
    }

    async fn settle() {
        // report_now publishes on a spawned task; let it run.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn over_the_limit_is_down_until_back_at_the_low_mark() {
        let (health, _server) = Health::new();
        health.set_serving(SERVER).await;
        let layer = InFlightLimitLayer::new(health.clone(), 3, 1);
        let mut svc = layer.layer(Gate);
        let mut gates = Vec::new();
        let mut calls = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = oneshot::channel();
            gates.push(tx);
            calls.push(tokio::spawn(svc.call(rx)));
        }
        settle().await;
        assert_eq!(layer.in_flight(), 4);
        let (status, output) = health.registry_status(SERVER);
        assert_eq!(status, HealthStatus::Critical, "4 > 3 in flight");
        assert!(output.contains("4 calls in flight"), "{output}");
        assert_eq!(
            health.status(SERVER),
            Some(crate::ServingStatus::NotServing)
        );

        // Down to 2: still above the low mark of 1, still down (hysteresis).
        for tx in gates.drain(..2) {
            tx.send(()).unwrap();
        }
        for call in calls.drain(..2) {
            call.await.unwrap().unwrap();
        }
        settle().await;
        assert_eq!(layer.in_flight(), 2);
        assert_eq!(
            health.registry_status(SERVER).0,
            HealthStatus::Critical,
            "2 > low mark 1"
        );

        gates.remove(0).send(()).unwrap();
        calls.remove(0).await.unwrap().unwrap();
        settle().await;
        assert_eq!(layer.in_flight(), 1);
        assert_eq!(
            health.registry_status(SERVER).0,
            HealthStatus::Passing,
            "back at the low mark"
        );
        assert_eq!(health.status(SERVER), Some(crate::ServingStatus::Serving));

        // A dropped (cancelled) call also leaves the count.
        drop(gates);
        calls.remove(0).abort();
        settle().await;
        assert_eq!(layer.in_flight(), 0);
    }
}
