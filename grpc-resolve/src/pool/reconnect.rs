//! Keeping one endpoint connected: an eager reconnect loop with backoff.
//!
//! A tonic `Channel` hides its connection state: it reconnects lazily, inside a call. That
//! is what makes a dead endpoint look ready to tonic's own balancer. Here the loop owns the
//! connection's life instead: it connects before any call needs it, publishes the
//! connection only once the HTTP/2 handshake is done, and learns the moment the connection
//! closes because it holds the task that drives it.
//!
//! May use: `endpoint` (the state it moves), `http2` (making connections), `settings`,
//! `stats`, the crate's `error`. It reaches the pool it runs for only through [`Owner`],
//! which the pool implements, so the pool can start loops without the loop depending on it.

use std::sync::Arc;

use http::uri::Authority;
use tokio::time::Instant;

use super::endpoint::Endpoint;
use super::http2;
use super::settings::PoolConfig;
use super::stats::Counters;
use crate::error::DisplayChain;

/// What a reconnect loop needs from the pool its endpoint belongs to.
pub(crate) trait Owner: Send + Sync + 'static {
    /// How to connect and back off.
    fn config(&self) -> &PoolConfig;
    /// Where a failed attempt is counted.
    fn counters(&self) -> &Counters;
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
                endpoint.set_connection(Some(connection));
                owner.endpoint_changed();
                tracing::debug!(endpoint = %endpoint.id, %authority, "endpoint connected");
                tokio::select! {
                    _ = &mut driver => {
                        tracing::debug!(endpoint = %endpoint.id, "connection closed; reconnecting");
                    }
                    () = endpoint.ejected.notified() => {}
                    () = endpoint.stale.notified() => {}
                }
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
