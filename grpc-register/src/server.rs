//! The builder and the running server.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use discovery_core::{Backoff, CheckSpec, Registration, Registry, ServiceInstance, Weights};
use health::{Health, HealthServer, HealthService};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::server::{Router, TcpIncoming};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Error, advertise};

/// Namespace of the entry point: [`Registered::builder`].
#[derive(Debug)]
pub struct Registered(());

impl Registered {
    /// Starts configuring a server that registers as `service` in `registry`.
    pub fn builder<R: Registry + 'static>(registry: R, service: impl Into<String>) -> Builder {
        Builder::new(SharedRegistry(Arc::new(registry)), service.into())
    }
}

/// How the registry checks the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckKind {
    /// The registry calls `grpc.health.v1.Health/Check` on the server for `service`
    /// (`""`, the default, asks about the whole server).
    Grpc {
        /// The health service name to ask about.
        service: String,
    },
    /// The server reports its own health from its `Health` state every third of `ttl`.
    Ttl(Duration),
    /// The registry sends `GET http://<host>:<port><path>`; the server must serve it.
    Http {
        /// The path, starting with `/`.
        path: String,
    },
    /// The registry opens a TCP connection to the server.
    Tcp,
    /// No check: the instance always looks healthy. For tests only.
    None,
}

/// Configures a registered server; from [`Registered::builder`].
#[derive(Debug)]
#[must_use]
pub struct Builder {
    registry: SharedRegistry,
    service: String,
    id: Option<String>,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    weights: Weights,
    locality: Option<String>,
    check: CheckKind,
    interval: Duration,
    timeout: Duration,
    deregister_after: Option<Duration>,
    advertise: Option<String>,
    registry_addr: Option<SocketAddr>,
    drain: Duration,
    grace: Duration,
    /// Further services on the same server: (registered name, gRPC health service name).
    extra: Vec<(String, String)>,
    health: Health,
    health_server: HealthServer<HealthService>,
}

// === impl Builder ===

impl Builder {
    fn new(registry: SharedRegistry, service: String) -> Self {
        let (health, health_server) = Health::new();
        Builder {
            registry,
            service,
            id: None,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: Weights::default(),
            locality: None,
            check: CheckKind::Grpc {
                service: health::SERVER.to_owned(),
            },
            interval: CheckSpec::DEFAULT_INTERVAL,
            timeout: CheckSpec::DEFAULT_TIMEOUT,
            deregister_after: None,
            advertise: None,
            registry_addr: None,
            drain: Duration::from_secs(2),
            grace: Duration::from_secs(10),
            extra: Vec::new(),
            health,
            health_server,
        }
    }

    /// The instance ID; default `<service>-<host>-<port>`, unique per listener.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds a metadata pair.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Sets the traffic weights.
    pub fn weights(mut self, weights: Weights) -> Self {
        self.weights = weights;
        self
    }

    /// Sets the zone the instance runs in, for callers that prefer their own zone.
    pub fn locality(mut self, zone: impl Into<String>) -> Self {
        self.locality = Some(zone.into());
        self
    }

    /// Sets how the registry checks the instance (default: gRPC health of the server).
    pub fn check(mut self, check: CheckKind) -> Self {
        self.check = check;
        self
    }

    /// Sets the check interval (default 10s).
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the deadline of one check (default 5s).
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Has the registry remove the instance after its check has been critical this long,
    /// so a crashed server does not linger.
    pub fn deregister_after(mut self, after: Duration) -> Self {
        self.deregister_after = Some(after);
        self
    }

    /// The host to register instead of the one derived from the listener.
    pub fn advertise(mut self, host: impl Into<String>) -> Self {
        self.advertise = Some(host.into());
        self
    }

    /// The registry's address, used to pick the local interface to advertise when the
    /// listener is bound to a wildcard address.
    pub fn registry_addr(mut self, addr: SocketAddr) -> Self {
        self.registry_addr = Some(addr);
        self
    }

    /// Time between deregistering and closing the listener, so resolvers stop sending new
    /// calls first (default 2s).
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// How long in-flight calls may take to finish once the listener closes (default 10s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Registers one more service of the same server under its own name: `service` is the
    /// registry name, `health_service` the gRPC service name (`pkg.Service`) whose health
    /// decides it. With gRPC checks the registry asks `host:port/<health_service>`.
    pub fn also_register(
        mut self,
        service: impl Into<String>,
        health_service: impl Into<String>,
    ) -> Self {
        self.extra.push((service.into(), health_service.into()));
        self
    }

    /// The server's health handle: set per-service statuses through it.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Binds `listen`, serves `router` with the health service added, marks it SERVING and
    /// registers it. Returns once the first registration attempt is done; if it failed, the
    /// server serves anyway and registration is retried in the background.
    pub async fn start<L, ResBody>(
        self,
        router: Router<L>,
        listen: SocketAddr,
    ) -> Result<Running, Error>
    where
        L: Layer<Routes> + Send + 'static,
        L::Service: Service<http::Request<Body>, Response = http::Response<ResBody>>
            + Clone
            + Send
            + 'static,
        <L::Service as Service<http::Request<Body>>>::Future: Send,
        <L::Service as Service<http::Request<Body>>>::Error:
            Into<Box<dyn std::error::Error + Send + Sync>> + Send,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Bind first: the real port is only known afterwards.
        let incoming = TcpIncoming::bind(listen)
            .map_err(|source| Error::Bind {
                addr: listen,
                source: Box::new(source),
            })?
            // tonic's Server::tcp_nodelay does not apply to serve_with_incoming.
            .with_nodelay(Some(true));
        let local_addr = incoming.local_addr().map_err(|e| Error::Bind {
            addr: listen,
            source: Box::new(e),
        })?;
        let host = advertise::choose(self.advertise.as_deref(), local_addr, self.registry_addr)
            .map_err(Error::Advertise)?;
        let entries = self.entries(&host, local_addr.port());

        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let router = router.add_service(self.health_server);
        let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        }));

        self.health.set_serving(health::SERVER).await;
        for entry in &entries {
            if !entry.health_service.is_empty() {
                self.health.set_serving(&entry.health_service).await;
            }
        }

        let mut maintained = Vec::with_capacity(entries.len());
        for entry in entries {
            let registered = register(&*self.registry.0, &entry.registration).await;
            maintained.push((entry, registered));
        }
        let registrations = maintained
            .iter()
            .map(|(entry, _)| entry.registration.clone())
            .collect();

        let (maint_stop, maint_rx) = oneshot::channel();
        let maintenance = tokio::spawn(
            Maintenance {
                registry: self.registry.clone(),
                entries: maintained,
                health: self.health.clone(),
                ttl: match self.check {
                    CheckKind::Ttl(ttl) => Some(ttl),
                    _ => None,
                },
                interval: self.interval,
            }
            .run(maint_rx),
        );

        Ok(Running {
            local_addr,
            registrations,
            registry: self.registry,
            health: self.health,
            drain: self.drain,
            grace: self.grace,
            server,
            stop: stop_tx,
            maintenance: (maint_stop, maintenance),
        })
    }

    /// [`start`](Self::start), then run until SIGINT or SIGTERM, then stop gracefully.
    pub async fn serve<L, ResBody>(self, router: Router<L>, listen: SocketAddr) -> Result<(), Error>
    where
        L: Layer<Routes> + Send + 'static,
        L::Service: Service<http::Request<Body>, Response = http::Response<ResBody>>
            + Clone
            + Send
            + 'static,
        <L::Service as Service<http::Request<Body>>>::Future: Send,
        <L::Service as Service<http::Request<Body>>>::Error:
            Into<Box<dyn std::error::Error + Send + Sync>> + Send,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.start(router, listen)
            .await?
            .run_until(crate::shutdown_signal())
            .await
    }

    /// The registrations this server makes: its main service, then the extra ones.
    fn entries(&self, host: &str, port: u16) -> Vec<Entry> {
        let main_health = match &self.check {
            CheckKind::Grpc { service } => service.clone(),
            _ => health::SERVER.to_owned(),
        };
        let mut entries =
            vec![self.entry(&self.service, self.id.clone(), &main_health, host, port)];
        for (service, health_service) in &self.extra {
            entries.push(self.entry(service, None, health_service, host, port));
        }
        entries
    }

    fn entry(
        &self,
        service: &str,
        id: Option<String>,
        health_service: &str,
        host: &str,
        port: u16,
    ) -> Entry {
        let id = id.unwrap_or_else(|| format!("{service}-{host}-{port}"));
        let mut instance = ServiceInstance::new(id, service, host, port)
            .tags(self.tags.iter().cloned())
            .weights(self.weights);
        instance.meta = self.meta.clone();
        instance.locality = self.locality.clone();
        let authority = instance.authority();
        let check = match &self.check {
            CheckKind::Grpc { .. } => Some(CheckSpec::grpc(if health_service.is_empty() {
                authority
            } else {
                format!("{authority}/{health_service}")
            })),
            CheckKind::Ttl(ttl) => Some(CheckSpec::ttl(*ttl)),
            CheckKind::Http { path } => Some(CheckSpec::http(format!("http://{authority}{path}"))),
            CheckKind::Tcp => Some(CheckSpec::tcp(authority)),
            CheckKind::None => None,
        }
        .map(|c| c.interval(self.interval).timeout(self.timeout));
        let mut registration = Registration::new(instance);
        registration.check = check;
        registration.deregister_after = self.deregister_after;
        Entry {
            registration,
            health_service: health_service.to_owned(),
        }
    }
}

/// One registration and the health service whose status it reports.
#[derive(Debug, Clone)]
struct Entry {
    registration: Registration,
    health_service: String,
}

/// A server that is serving and registered; stop it with [`Running::stop`] or
/// [`Running::run_until`].
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    /// The main registration first, then the extra services'.
    registrations: Vec<Registration>,
    registry: SharedRegistry,
    health: Health,
    drain: Duration,
    grace: Duration,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: oneshot::Sender<()>,
    maintenance: (oneshot::Sender<()>, JoinHandle<()>),
}

// === impl Running ===

impl Running {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What was registered: the main service first, then those added with
    /// [`Builder::also_register`].
    pub fn registrations(&self) -> &[Registration] {
        &self.registrations
    }

    /// The main registered instance ID.
    pub fn id(&self) -> &str {
        &self.registrations[0].instance.id
    }

    /// The health handle.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Waits for `signal`, then stops gracefully. Returns early with the error if the server
    /// fails on its own.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::select! {
            () = signal => self.stop().await,
            ended = &mut self.server => {
                // The server stopped by itself: still take the instance out of the registry.
                let Running { registry, registrations, maintenance, .. } = self;
                let _ = maintenance.0.send(());
                let _ = maintenance.1.await;
                deregister_all(&*registry.0, &registrations).await;
                match ended {
                    Ok(result) => result.map_err(Error::Serve),
                    Err(join) => Err(Error::Join(join)),
                }
            }
        }
    }

    /// Stops gracefully: NOT_SERVING → deregister → drain → close the listener and let
    /// in-flight calls finish within the grace period.
    pub async fn stop(self) -> Result<(), Error> {
        let Running {
            registrations,
            registry,
            health,
            drain,
            grace,
            mut server,
            stop,
            maintenance,
            ..
        } = self;
        // Stop renewing first, or a renewal could re-register after the deregistration.
        let _ = maintenance.0.send(());
        let _ = maintenance.1.await;

        health.shutdown().await;
        deregister_all(&*registry.0, &registrations).await;
        tokio::time::sleep(drain).await;

        let _ = stop.send(());
        match tokio::time::timeout(grace, &mut server).await {
            Ok(Ok(result)) => result.map_err(Error::Serve),
            Ok(Err(join)) => Err(Error::Join(join)),
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    "in-flight calls outlived the grace period; closing them"
                );
                server.abort();
                Ok(())
            }
        }
    }
}

/// Registers once, logging the outcome; a failure is retried by the maintenance task.
async fn register(registry: &dyn Registry, registration: &Registration) -> bool {
    let id = &registration.instance.id;
    match registry.register(registration).await {
        Ok(()) => {
            tracing::info!(%id, addr = %registration.instance.authority(), "registered");
            true
        }
        Err(err) => {
            tracing::warn!(%id, error = %err, "registration failed; serving anyway and retrying");
            false
        }
    }
}

async fn deregister_all(registry: &dyn Registry, registrations: &[Registration]) {
    for registration in registrations {
        let id = &registration.instance.id;
        // Bounded: a registry that hangs must not keep the process from stopping; the check
        // (or deregister-after) removes the instance anyway.
        match tokio::time::timeout(Duration::from_secs(5), registry.deregister(id)).await {
            Ok(Ok(())) => tracing::info!(%id, "deregistered"),
            Ok(Err(err)) if err.is_not_found() => tracing::info!(%id, "already deregistered"),
            Ok(Err(err)) => tracing::warn!(%id, error = %err, "deregistration failed"),
            Err(_) => tracing::warn!(%id, "deregistration timed out"),
        }
    }
}

/// The registry, shared by the server handle and its maintenance task.
#[derive(Clone)]
struct SharedRegistry(Arc<dyn Registry>);

impl std::fmt::Debug for SharedRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

/// The wait before registering again after failed rounds.
const REGISTER_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

/// Keeps the registrations alive while the server runs.
///
/// Every check interval (a third of the TTL in TTL mode) it looks at each registration:
/// one that failed is registered again (with backoff), one the registry forgot (an agent
/// restarted with empty state) is registered again at once, and TTL checks get the status
/// the health state derives. Registry errors are logged and retried, never fatal.
struct Maintenance {
    registry: SharedRegistry,
    entries: Vec<(Entry, bool)>,
    health: Health,
    ttl: Option<Duration>,
    interval: Duration,
}

impl Maintenance {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut failures: u32 = 0;
        loop {
            let pause = if self.entries.iter().any(|(_, registered)| !registered) {
                REGISTER_BACKOFF.delay(failures)
            } else if let Some(ttl) = self.ttl {
                // Three reports per TTL: one lost report does not let the check expire.
                jitter(ttl / 3)
            } else {
                jitter(self.interval)
            };
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
            }
            let mut failed = false;
            for (entry, registered) in &mut self.entries {
                match tend(
                    &*self.registry.0,
                    &self.health,
                    self.ttl.is_some(),
                    entry,
                    *registered,
                )
                .await
                {
                    Ok(()) => *registered = true,
                    Err(err) => {
                        failed = true;
                        *registered = false;
                        tracing::warn!(id = %entry.registration.instance.id, error = %err, "registry call failed; retrying");
                    }
                }
            }
            failures = if failed {
                failures.saturating_add(1)
            } else {
                0
            };
        }
    }
}

/// One round of care for one registration.
async fn tend(
    registry: &dyn Registry,
    health: &Health,
    ttl: bool,
    entry: &Entry,
    registered: bool,
) -> Result<(), discovery_core::Error> {
    let registration = &entry.registration;
    let id = &registration.instance.id;
    if !registered {
        registry.register(registration).await?;
        tracing::info!(%id, "registered");
        if !ttl {
            return Ok(());
        }
    }
    if ttl {
        let (status, output) = health.registry_status(&entry.health_service);
        return match registry.report(id, status, &output).await {
            Err(err) if err.is_not_found() => {
                tracing::warn!(%id, "registry forgot the instance; registering again");
                registry.register(registration).await?;
                registry.report(id, status, &output).await
            }
            other => other,
        };
    }
    if !registry.is_registered(id).await? {
        tracing::warn!(%id, "registry forgot the instance; registering again");
        registry.register(registration).await?;
    }
    Ok(())
}

/// `d` scaled by a random factor in [0.8, 1.0): spreads many servers' calls apart.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.2 * fastrand::f64())
}
