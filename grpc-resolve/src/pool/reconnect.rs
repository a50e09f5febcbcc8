//! Keeping one endpoint connected: an eager reconnect loop with backoff.
//!
//! A tonic `Channel` hides its connection state: it reconnects lazily, inside a call. That
//! is what makes a dead endpoint look ready to tonic's own balancer. Here the loop owns the
//! connection's life instead: it connects before any call needs it, publishes the
//! connection only once the HTTP/2 handshake is done, and learns the moment the connection
//! closes because it holds the task that drives it.
//!
//! While a connection is up, the loop also runs its health `Watch` stream
//! ([`health_watch`]), so the stream ends with the connection's turn, and it learns of the
//! server's GOAWAY from the connection itself, so a draining server's connection leaves
//! rotation (and its stream is cancelled) even when no call is made.
//!
//! May use: `endpoint` (the state it moves), `http2` (making connections), `health_watch`,
//! `progress`, `settings`, `stats`, the crate's `error`. It reaches the pool it runs for
//! only through [`Owner`], which the pool implements, so the pool can start loops without
//! the loop depending on it.

use std::sync::Arc;

use http::uri::Authority;
use tokio::time::Instant;

use super::endpoint::{Endpoint, Health};
use super::health_watch;
use super::http2;
use super::progress::Clock;
use super::settings::PoolConfig;
use super::stats::Counters;
use crate::error::DisplayChain;

/// What a reconnect loop needs from the pool its endpoint belongs to.
pub(crate) trait Owner: Send + Sync + 'static {
    /// How to connect and back off.
    fn config(&self) -> &PoolConfig;
    /// Where a failed attempt is counted.
    fn counters(&self) -> &Counters;
    /// The clock a new connection's progress starts from.
    fn clock(&self) -> &Clock;
    /// An endpoint connected or lost its connection: picks may now turn out differently.
    fn endpoint_changed(&self);
}

/// Connects `endpoint` and keeps it connected until the task is aborted (the endpoint left
/// discovery or the channel was dropped). Aborting it leaves the current connection to the
/// calls still using it: it closes once they are done.
pub(crate) async fn run<O: Owner>(owner: Arc<O>, endpoint: Arc<Endpoint>, authority: Authority) {
    let mut attempt = 0u32;
    loop {
        if let Some(until) = endpoint.ejected_until() {
            // Probing back is a reconnect after the ejection ends.
            tokio::time::sleep_until(until).await;
            endpoint.refresh_state_metric();
        }
        match http2::connect(&authority, &owner.config().settings).await {
            Ok((connection, mut driver)) => {
                attempt = 0;
                let config = owner.config();
                let liveness = &config.liveness;
                let watched = liveness
                    .health_check
                    .then_some(liveness.health_service.as_str());
                // With health checking, a connection is picked only once its server said
                // it serves (gRFC A17).
                let health = match watched {
                    Some(_) => Health::Awaiting,
                    None => Health::Serving,
                };
                endpoint.progress().restart(owner.clock().now());
                let generation = endpoint.connected(connection.clone(), health);
                owner.endpoint_changed();
                tracing::debug!(endpoint = %endpoint.id, %authority, "endpoint connected");
                let health_watch = async {
                    match watched {
                        Some(service) => {
                            let changed = || owner.endpoint_changed();
                            health_watch::run(
                                &endpoint,
                                &connection,
                                generation,
                                service,
                                &config.backoff,
                                changed,
                            )
                            .await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = &mut driver => {
                        tracing::debug!(endpoint = %endpoint.id, "connection closed; reconnecting");
                    }
                    () = endpoint.ejected.notified() => {}
                    () = endpoint.stale.notified() => {}
                    () = connection.gone_away() => {
                        tracing::debug!(endpoint = %endpoint.id, "the server sent GOAWAY; reconnecting");
                    }
                    () = health_watch => {}
                }
                drop(connection);
                // Dropping the endpoint's handle lets the connection close once the calls
                // still on it are done.
                endpoint.set_connection(None);
                owner.endpoint_changed();
            }
            Err(error) => {
                let delay = owner.config().backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::debug!(
                    endpoint = %endpoint.id,
                    %authority,
                    error = %DisplayChain(&*error),
                    retry_in = ?delay,
                    "connect failed"
                );
                owner.counters().connect_failed();
                tokio::time::sleep_until(Instant::now() + delay).await;
            }
        }
    }
}
