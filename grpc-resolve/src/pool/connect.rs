//! Keeping one endpoint connected: an eager connect loop with backoff, and a connector that
//! tells the loop when the connection is gone.
//!
//! A tonic `Channel` hides its connection state: it reconnects lazily, inside a call. That
//! is what makes a dead endpoint look ready to tonic's own balancer. Here the loop owns the
//! connection's life instead: it connects before any call needs it, publishes the channel
//! only once connected, and learns the moment the connection closes because the connector
//! hands hyper an IO object whose drop it can see (hyper drops the IO when the connection
//! task ends, on EOF, reset, GOAWAY or keepalive timeout).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::watch;
use tokio::time::Instant;
use tower_service::Service;

use super::{Endpoint, Pool};
use crate::error::BoxError;

/// How long to wait between failed connection attempts: exponential from `base`, capped at
/// `max`, each delay drawn uniformly from its upper half so that many clients restarting
/// together do not reconnect in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

// === impl Backoff ===

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry).
    pub(crate) fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(rng.f64())
    }
}

/// Connects `endpoint` and keeps it connected until the task is aborted (the endpoint left
/// discovery or the channel was dropped).
pub(super) async fn run(
    pool: Arc<Pool>,
    endpoint: Arc<Endpoint>,
    target: tonic::transport::Endpoint,
) {
    let mut rng = fastrand::Rng::new();
    let mut attempt = 0u32;
    loop {
        if let Some(until) = endpoint.ejected_until() {
            // Probing back is a reconnect after the ejection ends.
            tokio::time::sleep_until(until).await;
        }
        let (connector, live) = Tracked::new(&target);
        match connect(&target, connector, pool.config.connect_timeout).await {
            Ok(channel) => {
                attempt = 0;
                let mut closed = live.subscribe();
                endpoint.set_channel(Some(channel));
                pool.changed();
                tracing::debug!(endpoint = %endpoint.id, authority = %endpoint.authority, "endpoint connected");
                tokio::select! {
                    _ = closed.wait_for(|n| *n == 0) => {
                        tracing::debug!(endpoint = %endpoint.id, "connection closed; reconnecting");
                    }
                    () = endpoint.ejected.notified() => {}
                    () = endpoint.stale.notified() => {}
                }
                endpoint.set_channel(None);
                pool.changed();
            }
            Err(error) => {
                let delay = pool.config.backoff.delay(attempt, &mut rng);
                attempt = attempt.saturating_add(1);
                tracing::debug!(
                    endpoint = %endpoint.id,
                    authority = %endpoint.authority,
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

/// Makes one connection (TCP, TLS if configured, the HTTP/2 handshake) within `limit`.
///
/// The limit is applied here rather than through tonic's `Endpoint::connect_timeout`,
/// which also wraps the connection's IO in a timeout layer that every read and write of
/// every call then goes through.
async fn connect<C>(
    target: &tonic::transport::Endpoint,
    connector: C,
    limit: Option<Duration>,
) -> Result<tonic::transport::Channel, BoxError>
where
    C: Service<Uri, Response = TcpIo, Error = BoxError> + Send + 'static,
    C::Future: Send,
{
    let connecting = target.connect_with_connector(connector);
    match limit {
        None => Ok(connecting.await?),
        Some(limit) => match tokio::time::timeout(limit, connecting).await {
            Ok(connected) => Ok(connected?),
            Err(_) => Err(Box::new(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting took longer than {limit:?}"),
            ))),
        },
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

/// A TCP connector (configured like tonic's own from the endpoint) that counts the live
/// connections it made. tonic layers TLS and the connect timeout on top of it.
#[derive(Clone)]
struct Tracked {
    http: HttpConnector,
    live: Arc<watch::Sender<usize>>,
}

/// A tracked TCP connection.
type TcpIo = TrackedIo<<HttpConnector as Service<Uri>>::Response>;

/// The IO of one tracked connection; dropping it counts the connection as closed.
struct TrackedIo<T> {
    io: T,
    live: Arc<watch::Sender<usize>>,
}

// === impl Tracked ===

impl Tracked {
    fn new(target: &tonic::transport::Endpoint) -> (Self, Arc<watch::Sender<usize>>) {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(target.get_tcp_nodelay());
        http.set_keepalive(target.get_tcp_keepalive());
        http.set_keepalive_interval(target.get_tcp_keepalive_interval());
        http.set_keepalive_retries(target.get_tcp_keepalive_retries());
        let live = Arc::new(watch::Sender::new(0));
        (
            Tracked {
                http,
                live: live.clone(),
            },
            live,
        )
    }
}

impl Service<Uri> for Tracked {
    type Response = TcpIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let live = self.live.clone();
        Box::pin(async move {
            let io = connecting.await?;
            live.send_modify(|n| *n += 1);
            Ok(TrackedIo { io, live })
        })
    }
}

// === impl TrackedIo ===

impl<T> Drop for TrackedIo<T> {
    fn drop(&mut self) {
        self.live.send_modify(|n| *n -= 1);
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for TrackedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for TrackedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connector whose connections never complete, like a SYN to a black hole.
    #[derive(Clone)]
    struct Hanging;

    impl Service<Uri> for Hanging {
        type Response = TcpIo;
        type Error = BoxError;
        type Future = std::future::Pending<Result<Self::Response, BoxError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _uri: Uri) -> Self::Future {
            std::future::pending()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_attempt_gives_up_at_the_connect_timeout() {
        let target = tonic::transport::Endpoint::from_static("http://192.0.2.1:50051");
        let started = Instant::now();
        let attempt = connect(&target, Hanging, Some(Duration::from_secs(3)));
        let error = tokio::time::timeout(Duration::from_secs(60), attempt)
            .await
            .expect("the attempt ends by itself")
            .expect_err("a connection that never completes fails");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(3),
            "gave up exactly at the limit"
        );
        let error = error
            .downcast::<io::Error>()
            .expect("the timeout is an io::Error");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(error.to_string().contains("3s"), "names the limit: {error}");
    }

    #[test]
    fn backoff_grows_to_the_cap_and_stays_in_the_upper_half() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 0..40 {
            let ceiling = (Duration::from_millis(100) * 2u32.saturating_pow(attempt.min(20)))
                .min(Duration::from_secs(5));
            let d = backoff.delay(attempt, &mut rng);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {attempt}: expected {d:?} within [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
    }
}
