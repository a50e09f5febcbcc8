//! One endpoint's HTTP/2 connection, made and driven by this crate rather than by a tonic
//! `Channel`.
//!
//! A tonic `Channel` puts a buffer task in front of its connection: every call is handed to
//! that task, which hands it to hyper's connection task. The pool already does what the
//! buffer is for (readiness, load, reconnecting), so a call here goes straight to hyper's
//! `SendRequest`, one task hop fewer per call. Owning the connection also tells the pool
//! the moment it ends: hyper's connection future completes when the connection closes
//! (EOF, reset, GOAWAY with no streams left, keepalive timeout).
//!
//! A connection counts as made only once the server has sent its first bytes (an HTTP/2
//! server opens with SETTINGS). A hung process whose kernel still accepts TCP connections
//! never gets there, so its endpoint never becomes ready, where tonic's channel would be
//! ready at once and its calls would hang.
//!
//! What tonic's channel adds to each request is done here too: the endpoint's scheme and
//! authority go into the request URI, and a `user-agent` is set when the caller set none.
//!
//! The connection's IO tells the pool two more things hyper keeps to itself, through its
//! [`Link`]: that the server sent GOAWAY (hyper notices only at the next request, so an
//! idle channel would keep a draining server's connection, and a health `Watch` stream on
//! it would hold the server's graceful stop forever), and it lets the pool cut a
//! connection whose server stopped answering, failing every call still waiting on it
//! (dropping the handle would not: hyper drives the connection in a task of its own while
//! any stream is open). Both cost one frame-header scan per read and one flag check.
//!
//! May use: `settings`, `tls` (through the settings), the crate's `replay` (the request
//! body calls send) and `error`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tower_service::Service;

use super::settings::Settings;
use crate::error::BoxError;
use crate::replay::ReplayBody;

/// A handle on one live connection: cheap to clone; the connection stays open while any
/// handle does or a stream is in flight.
#[derive(Clone)]
pub(crate) struct Connection {
    send: http2::SendRequest<ReplayBody>,
    scheme: Scheme,
    authority: Authority,
    user_agent: HeaderValue,
    link: Arc<Link>,
}

/// What the connection's IO shares with the pool: news of the server's GOAWAY, and the
/// switch that cuts the connection.
#[derive(Debug, Default)]
pub(crate) struct Link {
    /// Notified (once, with a permit) when the server's first GOAWAY arrives.
    goaway: Notify,
    /// Set once the pool cut the connection: every read and write fails from then on.
    cut: AtomicBool,
    /// The connection task's waker, so a cut takes effect while it waits on the socket.
    waker: AtomicWaker,
}

/// The task driving a connection; it ends when the connection does.
pub(crate) type Driver = JoinHandle<()>;

const USER_AGENT: HeaderName = http::header::USER_AGENT;

// === impl Connection ===

impl Connection {
    /// Waits until the connection can take a request; fails once it has closed.
    pub(crate) async fn ready(&mut self) -> Result<(), hyper::Error> {
        self.send.ready().await
    }

    /// Sends one request on the connection, with the endpoint's origin in its URI.
    pub(crate) fn send(
        &mut self,
        mut parts: http::request::Parts,
        body: ReplayBody,
    ) -> impl Future<Output = Result<Response<Incoming>, hyper::Error>> + use<> {
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        // A gRPC request always has a path; one without means the root, as in HTTP.
        uri.path_and_query
            .get_or_insert(http::uri::PathAndQuery::from_static("/"));
        // With scheme, authority and path all present, building the URI cannot fail.
        parts.uri = Uri::from_parts(uri).unwrap_or_default();
        if !parts.headers.contains_key(&USER_AGENT) {
            parts.headers.insert(USER_AGENT, self.user_agent.clone());
        }
        self.send.send_request(Request::from_parts(parts, body))
    }

    /// Fails every stream on the connection and closes it: its server stopped answering.
    pub(crate) fn cut(&self) {
        self.link.cut.store(true, Ordering::Release);
        self.link.waker.wake();
    }

    /// Resolves once the server has sent GOAWAY: the connection takes no new calls (those in
    /// flight may finish). Meant for one waiter, the endpoint's reconnect loop.
    pub(crate) async fn gone_away(&self) {
        self.link.goaway.notified().await;
    }
}

/// hyper's HTTP/2 client builder, configured by `settings`.
fn builder(settings: &Settings) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(settings.initial_stream_window_size)
        .initial_connection_window_size(settings.initial_connection_window_size)
        .adaptive_window(settings.adaptive_window)
        .keep_alive_interval(settings.keep_alive_interval)
        .keep_alive_while_idle(settings.keep_alive_while_idle);
    if let Some(timeout) = settings.keep_alive_timeout {
        builder.keep_alive_timeout(timeout);
    }
    builder
}

/// Makes one connection to `authority` within the connect timeout: TCP, TLS if configured,
/// the HTTP/2 handshake. The returned driver ends when the connection does.
pub(crate) async fn connect(
    authority: &Authority,
    settings: &Settings,
) -> Result<(Connection, Driver), BoxError> {
    let connecting = connect_with(authority, settings, tcp_connector(settings));
    within(settings.connect_timeout, connecting).await
}

/// `attempt`, given up with a `TimedOut` error after `limit`.
async fn within<T>(
    limit: Option<Duration>,
    attempt: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, BoxError> {
    let Some(limit) = limit else {
        return attempt.await;
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Box::new(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting took longer than {limit:?}"),
        ))),
    }
}

fn tcp_connector(settings: &Settings) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(settings.tcp_keepalive);
    http
}

/// [`connect`] with the TCP connector given, without the timeout.
async fn connect_with<C>(
    authority: &Authority,
    settings: &Settings,
    mut tcp: C,
) -> Result<(Connection, Driver), BoxError>
where
    C: Service<Uri, Response = TokioIo<tokio::net::TcpStream>>,
    C::Error: Into<BoxError>,
{
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query("/")
        .build()?;
    std::future::poll_fn(|cx| tcp.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    let stream = tcp.call(uri).await.map_err(Into::into)?.into_inner();
    #[cfg(feature = "tls")]
    if let Some(tls) = &settings.tls {
        let stream = tls.handshake(authority, stream).await?;
        return handshake(authority, settings, stream).await;
    }
    handshake(authority, settings, stream).await
}

/// The HTTP/2 handshake over an established stream, complete once the server has spoken:
/// a server must open with its SETTINGS frame, so its first bytes prove it is an HTTP/2
/// server that is running, not a hung process whose kernel still accepts connections.
/// Then spawns the connection's driver.
async fn handshake<T>(
    authority: &Authority,
    settings: &Settings,
    io: T,
) -> Result<(Connection, Driver), BoxError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (heard, first_bytes) = oneshot::channel();
    let link = Arc::new(Link::default());
    let io = TokioIo::new(Heard {
        io,
        heard: Some(heard),
        link: link.clone(),
        frames: Frames::default(),
    });
    let (send, connection) = builder(settings).handshake(io).await?;
    // Driven here until the server speaks; dropping it (the connect timeout) closes it.
    let mut connection = Box::pin(connection);
    // The sender goes with the connection's IO, so `first_bytes` fails only once the
    // connection has ended; a connection that ended with an error reports that error.
    let spoke = tokio::select! {
        spoke = first_bytes => spoke.is_ok(),
        ended = &mut connection => ended.map(|()| false)?,
    };
    if !spoke {
        return Err("the connection closed before the server spoke".into());
    }
    let driver = tokio::spawn({
        let authority = authority.clone();
        async move {
            if let Err(error) = connection.await {
                tracing::debug!(%authority, %error, "connection ended with an error");
            }
        }
    });
    Ok((
        Connection {
            send,
            scheme: settings.scheme(),
            authority: authority.clone(),
            user_agent: settings.user_agent.clone(),
            link,
        },
        driver,
    ))
}

/// A connection's IO that says when the first bytes arrive from the peer and when its
/// GOAWAY does, and fails once the pool cuts it.
struct Heard<T> {
    io: T,
    heard: Option<oneshot::Sender<()>>,
    link: Arc<Link>,
    frames: Frames,
}

impl<T> Heard<T> {
    /// The error every read and write gets once the connection is cut, after registering
    /// the task to wake when it is.
    fn cut(&self, cx: &Context<'_>) -> Option<io::Error> {
        self.link.waker.register(cx.waker());
        self.link.cut.load(Ordering::Acquire).then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "cut by the channel: the server stopped answering",
            )
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Heard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(cut) = this.cut(cx) {
            return Poll::Ready(Err(cut));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            if let Some(heard) = this.heard.take() {
                let _ = heard.send(());
            }
            if this.frames.scan(read) {
                this.link.goaway.notify_one();
            }
        }
        polled
    }
}

/// Where the server's stream of HTTP/2 frames stands across reads: enough to find each
/// frame's header (RFC 9113 §4.1: 3 bytes of length, 1 of type, 1 of flags, 4 of stream
/// id) without parsing anything else.
#[derive(Debug, Default)]
struct Frames {
    /// Payload bytes of the current frame not yet read.
    skip: usize,
    /// The part of the next frame header read so far.
    head: [u8; 9],
    head_len: usize,
    /// Whether a GOAWAY was seen already (only the first is news).
    goaway: bool,
}

impl Frames {
    const GOAWAY: u8 = 0x7;

    /// Follows the frames in `bytes`, the next ones from the server; returns whether the
    /// server's first GOAWAY is among them.
    fn scan(&mut self, mut bytes: &[u8]) -> bool {
        let mut first_goaway = false;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
            self.head_len += n;
            bytes = &bytes[n..];
            if self.head_len == 9 {
                self.head_len = 0;
                let [a, b, c, kind, ..] = self.head;
                self.skip = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                if kind == Self::GOAWAY && !self.goaway {
                    self.goaway = true;
                    first_goaway = true;
                }
            }
        }
        first_goaway
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Heard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(cut) = self.cut(cx) {
            return Poll::Ready(Err(cut));
        }
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
        if let Some(cut) = self.cut(cx) {
            return Poll::Ready(Err(cut));
        }
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
impl Connection {
    /// A connection over an in-memory pipe that nothing answers, for tests that need an
    /// endpoint to look connected.
    pub(crate) async fn unanswered() -> Connection {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        // The far end opens with an empty SETTINGS frame, as a server must, then stays open
        // (and unread) for the rest of the test.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
            server.write_all(&settings).await.expect("the pipe is open");
            std::future::pending::<()>().await;
        });
        let authority = Authority::from_static("127.0.0.1:1");
        let settings = Settings::new(None);
        let (connection, _driver) = handshake(&authority, &settings, client)
            .await
            .expect("the handshake completes once the far end has spoken");
        connection
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A connector whose connections never complete, like a SYN to a black hole.
    #[derive(Clone)]
    struct Hanging;

    impl Service<Uri> for Hanging {
        type Response = TokioIo<tokio::net::TcpStream>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _uri: Uri) -> Self::Future {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_attempt_gives_up_at_the_connect_timeout() {
        let settings = Settings::new(Some(Duration::from_secs(3)));
        let authority = Authority::from_static("192.0.2.1:50051");
        let started = tokio::time::Instant::now();
        let attempt = within(
            settings.connect_timeout,
            connect_with(&authority, &settings, Hanging),
        );
        let error = tokio::time::timeout(Duration::from_secs(60), attempt)
            .await
            .expect("the attempt ends by itself")
            .err()
            .expect("a connection that never completes fails");
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
    fn the_frame_scan_finds_the_first_goaway_across_reads() {
        // SETTINGS (6 bytes of payload), then a GOAWAY (8 bytes), then another GOAWAY.
        let mut bytes = vec![0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x10, 0x7];
        bytes.extend([0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        let second = bytes.len();
        bytes.extend([0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        for split in 1..second {
            let mut frames = Frames::default();
            let seen = frames.scan(&bytes[..split]) | frames.scan(&bytes[split..]);
            assert!(seen, "a GOAWAY split at byte {split} is found");
            assert!(
                !frames.scan(&bytes[second..]),
                "only the first GOAWAY is news"
            );
        }
        let mut frames = Frames::default();
        assert!(
            !frames.scan(&bytes[..15]),
            "a SETTINGS frame is not a GOAWAY, nor is a payload byte equal to 7"
        );
    }
}
