//! Serving the HTTP API on a listener the way Consul's agent does at the connection level:
//! the per-client connection limit with its raw 429 (`limit`), a header-read timeout that
//! never cuts idle keep-alive connections (`head_timeout`), Go's 1 MiB header allowance,
//! HTTP/1.1 only on the plain listener, HTTPS with HTTP/2 by ALPN (`tls`), and graceful
//! shutdown. Generic over the service it serves, so it knows nothing of the API; uses no
//! other module of the crate.

mod head_timeout;
mod limit;
mod tls;

pub(crate) use self::tls::acceptor as tls_acceptor;

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tonic::codegen::Service;

use self::head_timeout::{HeadSeen, HeadTimeout};
use self::limit::{ConnLimiter, ConnPermit};

/// Go's `http.DefaultMaxHeaderBytes` (Consul leaves `http_config.max_header_bytes` at 0),
/// plus the 4096 bytes of slack Go's server reads beyond it. A longer head gets 431.
const MAX_HEADER_BYTES: usize = (1 << 20) + 4096;

/// Go's HTTP/2 server default (`http2defaultMaxStreams`), which Consul keeps.
const H2_MAX_CONCURRENT_STREAMS: u32 = 250;

/// How the connections are served.
#[derive(Clone)]
pub(crate) struct Settings {
    /// Concurrent connections allowed per client IP (0: no limit).
    pub(crate) max_conns_per_client: usize,
    /// How long a started request head may take (`None`: forever, as Consul's plain HTTP).
    pub(crate) header_read_timeout: Option<Duration>,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) instead of plain HTTP/1.1.
    pub(crate) tls: Option<TlsAcceptor>,
}

/// By hand: the TLS acceptor has no `Debug` (and holds the private key).
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("max_conns_per_client", &self.max_conns_per_client)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("https", &self.tls.is_some())
            .finish()
    }
}

/// Serves `service` on `listener` until `stop` turns true (or its sender is gone), then
/// stops accepting, releases the port, and waits for open connections to finish.
///
/// Dropping the returned future closes every connection still open.
pub(crate) async fn run<S>(
    listener: TcpListener,
    service: S,
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let limiter = ConnLimiter::new(settings.max_conns_per_client);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection aborted before accept: Go's server
                // waits a little and goes on, so do we.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Go sets TCP_NODELAY on every connection, Consul's HTTP server's included; so do
        // we, so that no answer is ever held back by Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "failed to set TCP_NODELAY");
        }
        match limiter.admit(peer.ip()) {
            Some(permit) => {
                let conn = Connection {
                    peer,
                    settings: settings.clone(),
                    permit,
                    watcher: graceful.watcher(),
                };
                connections.spawn(conn.serve(tcp, service.clone()));
            }
            None => {
                tracing::debug!(%peer, "too many connections from this client: 429");
                connections.spawn(refuse(tcp, settings.tls.clone()));
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    // Refused connections still draining are not watched; they end on their own timers.
    connections.shutdown().await;
}

/// Refuses a connection over the limit. Over HTTPS the 429 goes through TLS, as Go's
/// `ConnState` hook writes it to the `tls.Conn` (which runs the handshake first).
async fn refuse(tcp: TcpStream, tls: Option<TlsAcceptor>) {
    match tls {
        None => limit::refuse(tcp).await,
        Some(acceptor) => {
            if let Some(tls) = tls::handshake(&acceptor, tcp).await {
                limit::refuse(tls).await;
            }
        }
    }
}

/// Resolves once `stop` is true or its sender is gone (the agent handle dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

// === Connection ===

/// One admitted connection: what it needs to be served and uncounted when it closes.
struct Connection {
    peer: SocketAddr,
    settings: Settings,
    /// Uncounts the connection when dropped, at the end of `serve`.
    permit: ConnPermit,
    watcher: Watcher,
}

impl Connection {
    async fn serve<S>(self, tcp: TcpStream, service: S)
    where
        S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let Connection {
            peer,
            settings,
            permit,
            watcher,
        } = self;
        let ended = match &settings.tls {
            None => serve_http1(tcp, service, &settings, watcher).await,
            Some(acceptor) => match tls::handshake(acceptor, tcp).await {
                None => Ok(()),
                Some(tls) if tls::is_h2(&tls) => {
                    let mut h2 = http2::Builder::new(TokioExecutor::new());
                    h2.max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
                        .max_header_list_size(MAX_HEADER_BYTES as u32);
                    let conn = h2.serve_connection(
                        TokioIo::new(tls),
                        hyper_service(service, HeadSeen::default()),
                    );
                    watcher.watch(conn).await
                }
                Some(tls) => serve_http1(tls, service, &settings, watcher).await,
            },
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        drop(permit);
    }
}

/// Serves HTTP/1.1 on `io`, with the header-read clock.
async fn serve_http1<T, S>(
    io: T,
    service: S,
    settings: &Settings,
    watcher: Watcher,
) -> hyper::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let head_seen = HeadSeen::default();
    let io = HeadTimeout::new(io, settings.header_read_timeout, head_seen.clone());
    let conn = http1::Builder::new()
        // The clock is `HeadTimeout`'s; hyper's would also close idle connections.
        .header_read_timeout(None)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(io), hyper_service(service, head_seen));
    watcher.watch(conn).await
}

/// `service` as hyper calls it, marking each request head as read.
fn hyper_service<S>(
    service: S,
    head_seen: HeadSeen,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    hyper::service::service_fn(move |req: http::Request<Incoming>| {
        head_seen.seen();
        let mut service = service.clone();
        async move {
            poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(req.map(Body::new)).await
        }
    })
}
