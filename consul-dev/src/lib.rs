#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// Each module uses only those below it (the README's "Layout" draws it):
// leaves `config`, `query`, `serve` (connections, generic over the service); `state`
// (model, store, wake-ups); `wire` (on the model); `error`; `acl`, `filter`; `blocking`,
// `checks` (on the store); `web`; the endpoint families `agent`, `catalog`, `health`,
// `status`, `ui`; and this file, which starts it all.
mod acl;
mod agent;
mod blocking;
mod catalog;
mod checks;
mod config;
mod error;
mod filter;
mod health;
pub mod metrics;
mod query;
mod routing;
mod serve;
mod state;
mod status;
mod ui;
mod web;
mod wire;

pub use config::Config;
pub use error::Error;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use http::{HeaderName, HeaderValue};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tonic::codegen::Service;

use crate::checks::Checks;
use crate::state::Shared;
use crate::web::{App, AppState};

// === DevAgent ===

/// A running dev agent. Stops serving (and stops its check runners) when dropped.
#[derive(Debug)]
pub struct DevAgent {
    addr: SocketAddr,
    scheme: &'static str,
    app: AppState,
    shutdown_tx: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    reaper: AbortHandle,
}

impl DevAgent {
    /// Starts an agent with the default [`Config`] on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr) -> Result<DevAgent, Error> {
        DevAgent::start_with(Config::default(), addr).await
    }

    /// Starts an agent with `config` on `addr` (port 0 picks a free port).
    pub async fn start_with(config: Config, addr: SocketAddr) -> Result<DevAgent, Error> {
        let tls = match &config.https {
            Some(id) => {
                Some(serve::tls_acceptor(&id.cert_chain_pem, &id.key_pem).map_err(Error::Https)?)
            }
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let settings = serve::Settings {
            max_conns_per_client: config.http_max_conns_per_client,
            header_read_timeout: Some(config.http_header_read_timeout).filter(|t| !t.is_zero()),
            tls,
        };
        let listener = bind(addr).await?;
        let local = listener.local_addr().map_err(Error::LocalAddr)?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let check_ca = config.check_tls_ca.clone();
        let shared = Arc::new(Shared::new(config, shutdown_rx.clone()));
        let runner = Checks::new(Arc::clone(&shared), check_ca.as_deref())?;
        let app = Arc::new(App::new(Arc::clone(&shared), runner));
        let service = router(Arc::clone(&app));
        let server = tokio::spawn(serve::run(listener, service, settings, shutdown_rx));
        let reaper = tokio::spawn(checks::reaper(shared)).abort_handle();
        tracing::info!(addr = %local, node = %app.node(), scheme, "consul-dev agent started");
        Ok(DevAgent {
            addr: local,
            scheme,
            app,
            shutdown_tx,
            server: Some(server),
            reaper,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:PORT"`, usable as `CONSUL_HTTP_ADDR` (with
    /// `CONSUL_HTTP_SSL=true` when the agent serves HTTPS).
    pub fn http_addr(&self) -> String {
        self.addr.to_string()
    }

    /// `"https"` when the agent serves HTTPS ([`Config::https`]), else `"http"`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// The agent's base URL: `scheme://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// How many blocking queries are waiting for a change right now.
    ///
    /// A query counts once it has read the state it answers from, so a change made after it
    /// is counted is certain to wake it. Tests use this (or
    /// [`DevAgent::wait_for_blocked_queries`]) instead of sleeping before a change.
    pub fn blocked_queries(&self) -> usize {
        self.app.blocked.get()
    }

    /// Waits until at least `n` blocking queries are waiting for a change.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse()?).await?;
    /// let http = reqwest::Client::builder().no_proxy().build()?;
    /// let url = format!("http://{}/v1/health/service/web", agent.http_addr());
    /// let index = http.get(&url).send().await?.headers()["x-consul-index"].to_str()?.to_owned();
    /// let query = tokio::spawn(http.get(format!("{url}?index={index}&wait=1m")).send());
    /// agent.wait_for_blocked_queries(1).await;
    /// // Only now register `web`: the query is sure to see the change.
    /// let register = format!("http://{}/v1/agent/service/register", agent.http_addr());
    /// http.put(register).body(r#"{"Name":"web"}"#).send().await?;
    /// let answer = query.await??.text().await?;
    /// assert!(answer.contains(r#""Service":"web""#));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_blocked_queries(&self, n: usize) {
        self.app.blocked.wait_for_at_least(n).await;
    }

    /// Stops the server and all check runners, giving open requests a second to finish
    /// (as Consul's agent gives its HTTP servers) before closing every connection; blocking
    /// queries still waiting end with their connection, unanswered, as in Consul.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        tracing::info!(addr = %self.addr, "consul-dev agent stopped");
    }

    fn signal_stop(&self) {
        self.shutdown_tx.send_replace(true);
        self.reaper.abort();
        self.app.shared.stop_all_runners();
    }
}

impl Drop for DevAgent {
    /// A dropped agent stops at once, its connections closed (a crash, for tests that
    /// simulate one).
    fn drop(&mut self) {
        self.signal_stop();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Binds `addr`. A fixed port that is still in use is retried for a short while: a
/// just-dropped agent on the same port (a simulated restart) releases it asynchronously.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let mut attempts = 0;
    loop {
        match listen(addr) {
            Ok(l) => return Ok(l),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && addr.port() != 0
                    && attempts < 60 =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(source) => return Err(Error::Bind { addr, source }),
        }
    }
}

/// A listening socket as Go's `net.Listen` makes one: `SO_REUSEADDR`, and a backlog of the
/// kernel's `somaxconn` rather than the 128 of Rust's standard library and tokio, so that a
/// burst of connections (a thousand watchers starting at once) is queued, not dropped to
/// wait out a SYN retransmit as it would never be on Consul.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(listen_backlog())
}

/// Go's `maxListenerBacklog` on Linux: `/proc/sys/net/core/somaxconn`, at most 65535.
fn listen_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .map_or(4096, |n| n.min(65_535))
}

/// The whole HTTP API.
fn router(app: AppState) -> WithPolicyHeader {
    let policy = HeaderValue::from_static(acl::default_policy(app.config()));
    let router = Router::new()
        .merge(agent::router())
        .merge(health::router())
        .merge(catalog::router())
        .merge(status::router())
        .merge(ui::router())
        .fallback(routing::not_found)
        .with_state(app);
    WithPolicyHeader { router, policy }
}

// === WithPolicyHeader ===

/// The router, adding `X-Consul-Default-ACL-Policy` to every API response as Consul's
/// `wrap` does (not to the answers of its `Index` handler and UI: [`routing::OutsideTheApi`]).
///
/// A wrapper around the whole router rather than an axum middleware layer: a layer wraps
/// each route, and for every request clones the route's boxed service and boxes a future,
/// which was about 5% of the agent's work when a thousand blocking queries wake at once.
/// This adds the header and nothing else. Every response passes through it, the router's
/// own (404 fallback, 405s, extractor rejections) included. `Service` is tower's, as
/// re-exported by tonic, which the agent already uses for gRPC checks.
#[derive(Debug, Clone)]
struct WithPolicyHeader {
    router: Router,
    policy: HeaderValue,
}

impl Service<Request> for WithPolicyHeader {
    type Response = Response;
    type Error = Infallible;
    type Future = PolicyHeaderFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, req: Request) -> PolicyHeaderFuture {
        PolicyHeaderFuture {
            inner: self.router.call(req),
            policy: self.policy.clone(),
        }
    }
}

/// The router's answer, with the policy header added.
struct PolicyHeaderFuture {
    inner: RouteFuture<Infallible>,
    policy: HeaderValue,
}

impl Future for PolicyHeaderFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Ok(mut resp) = ready!(Pin::new(&mut this.inner).poll(cx));
        if resp.extensions().get::<routing::OutsideTheApi>().is_none() {
            resp.headers_mut()
                .insert(X_CONSUL_DEFAULT_ACL_POLICY, this.policy.clone());
        }
        Poll::Ready(Ok(resp))
    }
}

const X_CONSUL_DEFAULT_ACL_POLICY: HeaderName =
    HeaderName::from_static("x-consul-default-acl-policy");
