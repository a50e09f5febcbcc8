//! A single-node, in-memory, Consul-compatible agent for development and tests.
//!
//! No real Consul can be assumed on a developer's machine or in CI, so every example and
//! integration test of consul-grpc runs against this agent. It answers like Consul CE does
//! where it answers at all: the same status codes, error texts, JSON shapes, headers, index
//! and blocking semantics; and it runs TTL, HTTP, TCP and gRPC checks itself. What it does
//! not support is listed in the crate's README, with every known deviation.
//!
//! It shares no wire types with the client crate on purpose, so a wire mistake on one side
//! cannot hide behind the same mistake on the other.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), consul_dev::Error> {
//! let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse().expect("valid address")).await?;
//! // Point a client (or CONSUL_HTTP_ADDR) at `agent.http_addr()`.
//! assert!(agent.http_addr().starts_with("127.0.0.1:"));
//! agent.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod acl;
mod agent;
mod catalog;
mod checks;
mod filter;
mod health;
mod state;
mod status;
mod ui;
mod web;
mod wire;

use std::fmt;
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
use axum::serve::{IncomingStream, Listener, ListenerExt};
use http::{HeaderName, HeaderValue};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tonic::codegen::Service;

use crate::state::Shared;

/// The Consul version this agent claims to be.
pub(crate) const CONSUL_VERSION: &str = "1.21.0";

// === Error ===

/// Errors starting or running the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP listener could not be bound.
    #[error("failed to bind {addr}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bound listener's address could not be read.
    #[error("failed to read the listener's address")]
    LocalAddr(#[source] std::io::Error),
    /// The HTTP client used by HTTP checks could not be built.
    #[error("failed to build the HTTP check client")]
    Client(#[source] Box<reqwest::Error>),
}

// === Config ===

/// How the agent presents itself and the timings of its reaper.
///
/// Built with [`Config::default`] and the `#[must_use]` setters. Its `Debug` output shows
/// whether an ACL token is set, never the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The local node's name (default: the host name).
    pub node_name: String,
    /// The local node's ID (default: a random UUID).
    pub node_id: String,
    /// The datacenter (default `dc1`).
    pub datacenter: String,
    /// With a token, ACLs are on with default policy deny, and this is the only (management)
    /// token. Without one, ACLs are off.
    pub acl_token: Option<String>,
    /// How often services critical past their `DeregisterCriticalServiceAfter` are reaped
    /// (Consul: 30s). Shorter values are a test-only deviation.
    pub reaper_interval: Duration,
    /// The floor applied to `DeregisterCriticalServiceAfter` (Consul: 1m). Shorter values are
    /// a test-only deviation.
    pub min_deregister_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: host_name(),
            node_id: random_uuid(),
            datacenter: "dc1".to_owned(),
            acl_token: None,
            reaper_interval: Duration::from_secs(30),
            min_deregister_after: Duration::from_secs(60),
        }
    }
}

/// By hand so that the management token never reaches a log or a panic message.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            node_name,
            node_id,
            datacenter,
            acl_token,
            reaper_interval,
            min_deregister_after,
        } = self;
        f.debug_struct("Config")
            .field("node_name", node_name)
            .field("node_id", node_id)
            .field("datacenter", datacenter)
            .field("acl_token", &acl_token.as_ref().map(|_| "<redacted>"))
            .field("reaper_interval", reaper_interval)
            .field("min_deregister_after", min_deregister_after)
            .finish()
    }
}

impl Config {
    /// Sets the node name.
    #[must_use]
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = name.into();
        self
    }

    /// Sets the node ID.
    #[must_use]
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// Sets the datacenter.
    #[must_use]
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.datacenter = dc.into();
        self
    }

    /// Turns ACLs on (default deny) with `token` as the management token.
    #[must_use]
    pub fn acl_token(mut self, token: impl Into<String>) -> Self {
        self.acl_token = Some(token.into());
        self
    }

    /// Sets the reaper period.
    #[must_use]
    pub fn reaper_interval(mut self, every: Duration) -> Self {
        self.reaper_interval = every;
        self
    }

    /// Sets the `DeregisterCriticalServiceAfter` floor.
    #[must_use]
    pub fn min_deregister_after(mut self, floor: Duration) -> Self {
        self.min_deregister_after = floor;
        self
    }
}

/// The machine's host name, or `consul-dev` if it cannot be read.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "consul-dev".to_owned())
}

/// A random version-4 UUID string.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    fastrand::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

// === DevAgent ===

/// A running dev agent. Stops serving (and stops its check runners) when dropped.
#[derive(Debug)]
pub struct DevAgent {
    addr: SocketAddr,
    shared: Arc<Shared>,
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
        let listener = bind(addr).await?;
        let local = listener.local_addr().map_err(Error::LocalAddr)?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(config, shutdown_rx.clone())?);
        let app = router(Arc::clone(&shared));
        let mut stop = shutdown_rx;
        // Go sets TCP_NODELAY on every connection, Consul's HTTP server's included; so do we,
        // so that no answer is ever held back by Nagle's algorithm.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "failed to set TCP_NODELAY");
            }
        });
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                // An error means the agent handle is gone: stop too.
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        let reaper = tokio::spawn(checks::reaper(Arc::clone(&shared))).abort_handle();
        tracing::info!(addr = %local, node = %shared.config.node_name, "consul-dev agent started");
        Ok(DevAgent {
            addr: local,
            shared,
            shutdown_tx,
            server: Some(server),
            reaper,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:PORT"`, usable as `CONSUL_HTTP_ADDR`.
    pub fn http_addr(&self) -> String {
        self.addr.to_string()
    }

    /// How many blocking queries are waiting for a change right now.
    ///
    /// A query counts once it has read the state it answers from, so a change made after it
    /// is counted is certain to wake it. Tests use this (or
    /// [`DevAgent::wait_for_blocked_queries`]) instead of sleeping before a change.
    pub fn blocked_queries(&self) -> usize {
        self.shared.blocked.get()
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
        self.shared.blocked.wait_for_at_least(n).await;
    }

    /// Stops the server and all check runners, waiting (up to a few seconds) for open
    /// connections to finish so the port can be reused at once.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), server)
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
        self.shared.stop_all_runners();
    }
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Binds `addr`. A fixed port that is still in use is retried for a short while: a
/// just-dropped agent on the same port (a simulated restart) releases it asynchronously.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let mut attempts = 0;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
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

/// The whole HTTP API.
fn router(shared: Arc<Shared>) -> WithPolicyHeader {
    let policy = HeaderValue::from_static(acl::default_policy(&shared.config));
    let router = Router::new()
        .merge(agent::router())
        .merge(health::router())
        .merge(catalog::router())
        .merge(status::router())
        .merge(ui::router())
        .fallback(web::not_found)
        .with_state(shared);
    WithPolicyHeader { router, policy }
}

// === WithPolicyHeader ===

/// The router, adding `X-Consul-Default-ACL-Policy` to every response as Consul does.
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

/// `axum::serve` asks for a service per connection: a clone (an `Arc` and a static value).
impl<'a, L: Listener> Service<IncomingStream<'a, L>> for WithPolicyHeader {
    type Response = WithPolicyHeader;
    type Error = Infallible;
    type Future = std::future::Ready<Result<WithPolicyHeader, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(self.clone()))
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
        resp.headers_mut()
            .insert(X_CONSUL_DEFAULT_ACL_POLICY, this.policy.clone());
        Poll::Ready(Ok(resp))
    }
}

const X_CONSUL_DEFAULT_ACL_POLICY: HeaderName =
    HeaderName::from_static("x-consul-default-acl-policy");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_redacts_the_acl_token() {
        let config = Config::default().node_name("n1").acl_token("s3cr3t-token");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cr3t-token"),
            "the token must not appear in Debug output: {debug}"
        );
        assert!(
            debug.contains("acl_token: Some(\"<redacted>\")") && debug.contains("\"n1\""),
            "Debug output still shows the other fields and that a token is set: {debug}"
        );
        let without = format!("{:?}", Config::default());
        assert!(
            without.contains("acl_token: None"),
            "no token shows as None: {without}"
        );
    }
}
