//! Keeping one endpoint connected: an eager connect loop with backoff.
//!
//! A tonic `Channel` hides its connection state: it reconnects lazily, inside a call. That
//! is what makes a dead endpoint look ready to tonic's own balancer. Here the loop owns the
//! connection's life instead: it connects before any call needs it, publishes the
//! connection only once the HTTP/2 handshake is done, and learns the moment the connection
//! closes because it holds the task that drives it.

use std::sync::Arc;

use http::uri::Authority;
use tokio::time::Instant;

use super::{Endpoint, Pool, connection};

/// Connects `endpoint` and keeps it connected until the task is aborted (the endpoint left
/// discovery or the channel was dropped). Aborting it leaves the current connection to the
/// calls still using it: it closes once they are done.
pub(super) async fn run(pool: Arc<Pool>, endpoint: Arc<Endpoint>, authority: Authority) {
    let mut attempt = 0u32;
    loop {
        if let Some(until) = endpoint.ejected_until() {
            // Probing back is a reconnect after the ejection ends.
            tokio::time::sleep_until(until).await;
        }
        match connection::connect(&authority, &pool.config.settings).await {
            Ok((connection, mut driver)) => {
                attempt = 0;
                endpoint.set_connection(Some(connection));
                pool.changed();
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
                pool.changed();
            }
            Err(error) => {
                let delay = pool.config.backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::debug!(
                    endpoint = %endpoint.id,
                    %authority,
                    error = %DisplayChain(&*error),
                    retry_in = ?delay,
                    "connect failed"
                );
                pool.counters.connect_failures.inc();
                tokio::time::sleep_until(Instant::now() + delay).await;
            }
        }
    }
}

/// Displays an error with its causes, `a: b: c`.
pub(crate) struct DisplayChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
