//! Real tonic servers on 127.0.0.1:0 for the channel to call: tonic-health behind a layer
//! that counts calls and can answer `Unavailable` on demand.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use discovery_core::{ServiceInstance, Weights};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;
use tower_service::Service;

use grpc_resolve::DiscoveredChannel;

/// The service every test discovers.
pub const SERVICE: &str = "adder";

/// One running backend.
pub struct Backend {
    pub addr: SocketAddr,
    pub reporter: HealthReporter,
    connections: Arc<watch::Sender<usize>>,
    calls: Arc<AtomicUsize>,
    unavailable: Arc<AtomicBool>,
    internal_per_ten: Arc<AtomicUsize>,
    gate: Arc<Gate>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    /// Starts a backend on a fresh port.
    pub async fn start() -> Backend {
        Backend::start_on("127.0.0.1:0".parse().expect("an address")).await
    }

    /// Starts a backend on `addr`, which may be the address of a stopped one.
    pub async fn start_on(addr: SocketAddr) -> Backend {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        // A stopped backend's port may still have connections in TIME_WAIT.
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(addr).expect("bind");
        let listener = socket.listen(128).expect("listen");
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let addr = incoming.local_addr().expect("a local address");
        let connections = Arc::new(watch::Sender::new(0usize));
        let incoming = incoming.map({
            let connections = connections.clone();
            move |accepted| {
                accepted.map(|io| {
                    connections.send_modify(|n| *n += 1);
                    CountedIo {
                        io,
                        connections: connections.clone(),
                    }
                })
            }
        });
        let (reporter, health) = tonic_health::server::health_reporter();
        let calls = Arc::new(AtomicUsize::new(0));
        let unavailable = Arc::new(AtomicBool::new(false));
        let internal_per_ten = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Gate::default());
        let counted = Counted {
            inner: health,
            calls: calls.clone(),
            unavailable: unavailable.clone(),
            internal_per_ten: internal_per_ten.clone(),
            gate: gate.clone(),
        };
        let (shutdown, stop) = oneshot::channel();
        let server = tokio::spawn(async move {
            Server::builder()
                .add_service(counted)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop.await;
                })
                .await
                .expect("the server runs");
        });
        Backend {
            addr,
            reporter,
            connections,
            calls,
            unavailable,
            internal_per_ten,
            gate,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// This backend as a discovered instance.
    pub fn instance(&self, id: &str) -> ServiceInstance {
        ServiceInstance::new(id, SERVICE, "127.0.0.1", self.addr.port())
    }

    /// This backend as a discovered instance with a passing weight.
    pub fn weighted(&self, id: &str, passing: u32) -> ServiceInstance {
        self.instance(id).weights(Weights {
            passing,
            warning: 1,
        })
    }

    /// Calls that reached this backend.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        *self.connections.borrow()
    }

    /// Waits until exactly `n` client connections are open.
    pub async fn wait_connections(&self, n: usize) {
        let mut open = self.connections.subscribe();
        settle(open.wait_for(|open| *open == n))
            .await
            .expect("the backend lives");
    }

    /// Holds every call that arrives from now on until [`Backend::release`].
    pub fn hold(&self) {
        self.gate.open.send_replace(false);
    }

    /// Lets held calls (and later ones) through.
    pub fn release(&self) {
        self.gate.open.send_replace(true);
    }

    /// Waits until `n` calls are being held.
    pub async fn wait_held(&self, n: usize) {
        let mut held = self.gate.held.subscribe();
        settle(held.wait_for(|held| *held == n))
            .await
            .expect("the backend lives");
    }

    /// The most calls this backend has had in progress at once.
    pub fn max_concurrent(&self) -> usize {
        self.gate.max_concurrent.load(Ordering::SeqCst)
    }

    /// The `:authority` and `user-agent` of the last call that arrived.
    pub fn last_head(&self) -> (Option<String>, Option<String>) {
        self.gate
            .last_head
            .lock()
            .expect("unpoisoned")
            .clone()
            .unwrap_or_default()
    }

    /// Makes every call answer `Unavailable` (as a draining or overloaded server does).
    pub fn answer_unavailable(&self, yes: bool) {
        self.unavailable.store(yes, Ordering::SeqCst);
    }

    /// Makes `n` of every ten calls answer `Internal` (a server broken for some of its
    /// work); 0 for none.
    pub fn answer_internal_per_ten(&self, n: usize) {
        self.internal_per_ten.store(n, Ordering::SeqCst);
    }

    /// Starts a graceful shutdown without waiting for it: the server sends GOAWAY on every
    /// connection, takes no new calls, and closes each connection once its calls and
    /// streams have ended.
    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Stops the server gracefully and waits until it has stopped.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task ends cleanly");
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// An instance whose port nothing listens on.
pub fn dead_instance(id: &str) -> ServiceInstance {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("a local address").port();
    drop(listener);
    ServiceInstance::new(id, SERVICE, "127.0.0.1", port)
}

/// An instance whose port accepts connections but never says a word, like a hung process
/// whose kernel still completes TCP handshakes.
pub async fn mute_instance(id: &str) -> ServiceInstance {
    raw_instance(id, |mut connection| async move {
        use tokio::io::AsyncReadExt;
        let mut sink = vec![0u8; 16 * 1024];
        while matches!(connection.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await
}

/// An instance that speaks HTTP/2 and accepts every call but never answers one, like a
/// server whose application is stuck: only the client's own deadline ends a call to it.
pub async fn unanswering_instance(id: &str) -> ServiceInstance {
    raw_instance(id, |connection| async move {
        let Ok(mut connection) = h2::server::handshake(connection).await else {
            return;
        };
        let mut held = Vec::new();
        while let Some(Ok(call)) = connection.accept().await {
            held.push(call);
        }
    })
    .await
}

/// An instance on a fresh port whose every accepted connection is handed to `serve`.
async fn raw_instance<F, Fut>(id: &str, serve: F) -> ServiceInstance
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("a local address").port();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            tokio::spawn(serve(connection));
        }
    });
    ServiceInstance::new(id, SERVICE, "127.0.0.1", port)
}

/// One health check through the channel.
pub async fn check(channel: &DiscoveredChannel) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(channel.clone());
    let answer = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    Ok(match answer.status {
        1 => ServingStatus::Serving,
        2 => ServingStatus::NotServing,
        _ => ServingStatus::Unknown,
    })
}

/// Callers making health checks through a channel back to back until stopped, counting
/// what they got.
pub struct Load {
    stop: watch::Sender<bool>,
    callers: Vec<tokio::task::JoinHandle<LoadReport>>,
}

/// What a [`Load`]'s callers got.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: usize,
    pub failed: usize,
    /// The longest any one call took.
    pub slowest: std::time::Duration,
    /// The first few failures' statuses.
    pub errors: Vec<String>,
}

impl Load {
    /// Starts `callers` callers on `channel`.
    pub fn start(channel: &DiscoveredChannel, callers: usize) -> Load {
        let stop = watch::Sender::new(false);
        let callers = (0..callers)
            .map(|_| {
                let channel = channel.clone();
                let mut stopped = stop.subscribe();
                tokio::spawn(async move {
                    let mut report = LoadReport::default();
                    while !*stopped.borrow_and_update() {
                        let started = tokio::time::Instant::now();
                        let result = check(&channel).await;
                        report.slowest = report.slowest.max(started.elapsed());
                        match result {
                            Ok(_) => report.ok += 1,
                            Err(status) => {
                                report.failed += 1;
                                if report.errors.len() < 5 {
                                    report.errors.push(format!("{status:?}"));
                                }
                            }
                        }
                    }
                    report
                })
            })
            .collect();
        Load { stop, callers }
    }

    /// Stops the callers and sums up what they got.
    pub async fn stop(self) -> LoadReport {
        self.stop.send_replace(true);
        let mut total = LoadReport::default();
        for caller in self.callers {
            let report = caller.await.expect("a caller ends cleanly");
            total.ok += report.ok;
            total.failed += report.failed;
            total.slowest = total.slowest.max(report.slowest);
            total.errors.extend(report.errors);
        }
        total
    }
}

/// Watches `channel` for `period`, calling `look` at every change it sees.
pub async fn observe(
    channel: &DiscoveredChannel,
    period: std::time::Duration,
    mut look: impl FnMut(&[grpc_resolve::EndpointInfo]),
) {
    let until = tokio::time::Instant::now() + period;
    loop {
        let changed = channel.changed();
        look(&channel.endpoints());
        if tokio::time::timeout_at(until, changed).await.is_err() {
            return;
        }
    }
}

/// Waits until the channel lists exactly `ready` endpoints as ready.
pub async fn wait_ready(channel: &DiscoveredChannel, ready: usize) {
    settle(channel.wait_for(|eps| eps.iter().filter(|e| e.ready).count() == ready)).await;
}

/// Awaits an event, guarding against a hang: a state that never comes fails the test after
/// a minute instead of stalling the whole run. Not for paused-time tests.
pub async fn settle<F: Future>(event: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(60), event)
        .await
        .expect("expected the channel to reach the awaited state; still waiting after 60 s")
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    calls: Arc<AtomicUsize>,
    unavailable: Arc<AtomicBool>,
    internal_per_ten: Arc<AtomicUsize>,
    gate: Arc<Gate>,
}

/// What a backend's calls pass through: a gate that can hold them, and what it saw.
struct Gate {
    open: watch::Sender<bool>,
    held: watch::Sender<usize>,
    concurrent: AtomicUsize,
    max_concurrent: AtomicUsize,
    last_head: std::sync::Mutex<Option<(Option<String>, Option<String>)>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            open: watch::Sender::new(true),
            held: watch::Sender::new(0),
            concurrent: AtomicUsize::new(0),
            max_concurrent: AtomicUsize::new(0),
            last_head: std::sync::Mutex::new(None),
        }
    }
}

impl Gate {
    /// Waits while the gate is closed; counts the call in progress until the guard drops.
    async fn pass(self: Arc<Self>) -> InProgress {
        let now = self.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_concurrent.fetch_max(now, Ordering::SeqCst);
        let mut open = self.open.subscribe();
        if !*open.borrow_and_update() {
            self.held.send_modify(|n| *n += 1);
            let _ = open.wait_for(|open| *open).await;
            self.held.send_modify(|n| *n -= 1);
        }
        InProgress(self)
    }
}

struct InProgress(Arc<Gate>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.concurrent.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S> Service<http::Request<Body>> for Counted<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call % 10 < self.internal_per_ten.load(Ordering::SeqCst) {
            let answer = tonic::Status::internal("broken").into_http();
            return Box::pin(async move { Ok(answer) });
        }
        let text = |v: &http::HeaderValue| v.to_str().unwrap_or("(not text)").to_owned();
        *self.gate.last_head.lock().expect("unpoisoned") = Some((
            request.uri().authority().map(ToString::to_string),
            request.headers().get(http::header::USER_AGENT).map(text),
        ));
        if self.unavailable.load(Ordering::SeqCst) {
            let answer = tonic::Status::unavailable("draining").into_http();
            return Box::pin(async move { Ok(answer) });
        }
        let passing = self.gate.clone().pass();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let _in_progress = passing.await;
            answer.await
        })
    }
}

impl<S: NamedService> NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

/// A server-side connection that counts itself open until dropped.
struct CountedIo {
    io: TcpStream,
    connections: Arc<watch::Sender<usize>>,
}

impl Drop for CountedIo {
    fn drop(&mut self) {
        self.connections.send_modify(|n| *n -= 1);
    }
}

impl Connected for CountedIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for CountedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
