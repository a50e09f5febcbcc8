//! The builder: what a registered server is configured with (what it registers as is a
//! [`Profile`](crate::registration::Profile)). [`Builder::start`] runs the start sequence
//! (bind → serve → SERVING → register → keep alive) and hands over a [`Running`] server.
//! Uses the running server, the keep-alive task, `registration` and `advertise`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use discovery_core::{Registry, Weights};
use health::{Health, HealthServer, HealthService};
use tokio::sync::oneshot;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::server::{Router, TcpIncoming};
use tower_layer::Layer;
use tower_service::Service;

use crate::advertise;
use crate::error::Error;
use crate::http_health::HttpHealth;
use crate::keepalive::{KeepAlive, SharedRegistry, register_first};
use crate::registration::{CheckKind, Profile};
use crate::server::Running;
use crate::signal::shutdown_signal;

/// The layer stacks a tonic `Router<L>` can be served with: tonic's own bounds on
/// `Router::serve_with_incoming_shutdown`, written once for [`Builder::start`] and
/// [`Builder::serve`] (and here, in the blanket impl that gives it to every such `L`; there
/// is nothing to implement).
pub trait RouterLayer:
    Layer<
        Routes,
        Service: Service<
            http::Request<Body>,
            Response = http::Response<Self::ResponseBody>,
            Future: Send,
            Error: Into<BoxError> + Send,
        > + Clone
                     + Send
                     + 'static,
    > + Send
    + 'static
{
    /// The body of the stack's responses.
    type ResponseBody: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
}

impl<L, B> RouterLayer for L
where
    L: Layer<
            Routes,
            Service: Service<
                http::Request<Body>,
                Response = http::Response<B>,
                Future: Send,
                Error: Into<BoxError> + Send,
            > + Clone
                         + Send
                         + 'static,
        > + Send
        + 'static,
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    type ResponseBody = B;
}

/// What tonic (and tower) ask of a service's and a body's errors.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Namespace of the entry point: [`Registered::builder`].
#[derive(Debug)]
pub struct Registered(());

impl Registered {
    /// Starts configuring a server that registers as `service` in `registry`.
    pub fn builder<R: Registry + 'static>(registry: R, service: impl Into<String>) -> Builder {
        Builder::new(SharedRegistry(Arc::new(registry)), service.into())
    }
}

/// Configures a registered server; from [`Registered::builder`].
#[derive(Debug)]
#[must_use]
pub struct Builder {
    registry: SharedRegistry,
    /// What the server registers as.
    profile: Profile,
    advertise: Option<String>,
    registry_addr: Option<SocketAddr>,
    drain: Duration,
    grace: Duration,
    health: Health,
    health_server: HealthServer<HealthService>,
}

// === impl Builder ===

impl Builder {
    /// How long an instance's check may stay critical before the registry removes it,
    /// unless [`Builder::deregister_after`] says otherwise: 10 minutes.
    ///
    /// A server killed outright (SIGKILL, OOM, a lost machine) never deregisters; without
    /// this its critical registration stays forever, and each restart on a new port adds
    /// one more. Passing-only queries skip critical instances, so one that lingers costs
    /// little: the agent's check keeps dialling a dead port, the UI shows one more row.
    /// Removing a live server costs more: one critical for a spell (a dependency down,
    /// overload shedding, a slow start) is registered again by its keep-alive within one
    /// interval, but each removal and return is two catalog writes that wake every watcher
    /// of the service. Ten minutes
    /// outlasts such spells, leaves a crashed instance visible long enough to be noticed,
    /// and is well above Consul's floor of one minute. (go-kratos uses the same.)
    pub const DEFAULT_DEREGISTER_AFTER: Duration = Duration::from_secs(10 * 60);

    fn new(registry: SharedRegistry, service: String) -> Self {
        let (health, health_server) = Health::new();
        Builder {
            registry,
            profile: Profile::new(service, Self::DEFAULT_DEREGISTER_AFTER),
            advertise: None,
            registry_addr: None,
            drain: Duration::from_secs(2),
            grace: Duration::from_secs(10),
            health,
            health_server,
        }
    }

    /// The instance ID; default `<service>-<host>-<port>`, unique per listener.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.profile.id = Some(id.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.profile.tags.push(tag.into());
        self
    }

    /// Adds a metadata pair.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.profile.meta.insert(key.into(), value.into());
        self
    }

    /// Sets the traffic weights.
    pub fn weights(mut self, weights: Weights) -> Self {
        self.profile.weights = weights;
        self
    }

    /// Sets the zone the instance runs in, for callers that prefer their own zone.
    pub fn locality(mut self, zone: impl Into<String>) -> Self {
        self.profile.locality = Some(zone.into());
        self
    }

    /// Sets how the registry checks the instance (default: gRPC health of the server).
    pub fn check(mut self, check: CheckKind) -> Self {
        self.profile.check = check;
        self
    }

    /// Sets the check interval (default 10s).
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.profile.interval = interval;
        self
    }

    /// Sets the deadline of one check (default 5s).
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.profile.timeout = timeout;
        self
    }

    /// Has the registry remove the instance after its check has been critical this long,
    /// so a crashed server does not linger (default
    /// [`DEFAULT_DEREGISTER_AFTER`](Self::DEFAULT_DEREGISTER_AFTER), 10 minutes; Consul
    /// raises anything under a minute to a minute). `None` keeps a critical instance until
    /// it deregisters itself.
    pub fn deregister_after(mut self, after: impl Into<Option<Duration>>) -> Self {
        self.profile.deregister_after = after.into();
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
        (self.profile.extra).push((service.into(), health_service.into()));
        self
    }

    /// The server's health handle: set per-service statuses through it.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Binds `listen`, serves `router` with the health service added, marks it SERVING and
    /// registers it. Returns once the first registration attempt is done; if it failed, the
    /// server serves anyway and registration is retried in the background.
    pub async fn start<L: RouterLayer>(
        self,
        router: Router<L>,
        listen: SocketAddr,
    ) -> Result<Running, Error> {
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
        let http_health = match &self.profile.check {
            CheckKind::HttpHealth { listen } => Some(
                HttpHealth::start(*listen, self.health.clone()).map_err(|e| Error::Bind {
                    addr: *listen,
                    source: Box::new(e),
                })?,
            ),
            _ => None,
        };
        let http_port = http_health.as_ref().map(|h| h.local_addr().port());
        let entries = (self.profile).entries(&host, local_addr.port(), http_port);

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

        let ttl = match self.profile.check {
            CheckKind::Ttl(ttl) => Some(ttl),
            _ => None,
        };
        let mut maintained = Vec::with_capacity(entries.len());
        for entry in entries {
            let standing =
                register_first(&*self.registry.0, &self.health, ttl.is_some(), &entry).await;
            maintained.push((entry, standing));
        }
        let registrations = maintained
            .iter()
            .map(|(entry, _)| entry.registration.clone())
            .collect();

        let keepalive = KeepAlive::spawn(
            self.registry.clone(),
            maintained,
            self.health.clone(),
            ttl,
            self.profile.interval,
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
            keepalive,
            http_health,
        })
    }

    /// [`start`](Self::start), then run until SIGINT or SIGTERM, then stop gracefully.
    pub async fn serve<L: RouterLayer>(
        self,
        router: Router<L>,
        listen: SocketAddr,
    ) -> Result<(), Error> {
        self.start(router, listen)
            .await?
            .run_until(shutdown_signal())
            .await
    }
}

#[cfg(test)]
mod tests {
    use discovery_core::{CheckSpec, MemoryRegistry, Registration, ServiceInstance};

    use super::*;

    fn builder() -> Builder {
        Registered::builder(MemoryRegistry::new(), "adder")
    }

    /// The registrations `builder` derives for a listener at `host:port`.
    fn derived(builder: &Builder, host: &str, port: u16) -> Vec<Registration> {
        (builder.profile)
            .entries(host, port, None)
            .into_iter()
            .map(|entry| entry.registration)
            .collect()
    }

    #[test]
    fn by_default_one_instance_with_a_grpc_check_on_the_servers_own_health() {
        let got = derived(&builder(), "10.0.0.5", 50051);
        let want = Registration::new(ServiceInstance::new(
            "adder-10.0.0.5-50051",
            "adder",
            "10.0.0.5",
            50051,
        ))
        .check(CheckSpec::grpc("10.0.0.5:50051"))
        .deregister_after(Duration::from_secs(600));
        assert_eq!(
            got,
            [want],
            "default id <service>-<host>-<port>, no tags or meta, default weights, a gRPC \
             check of the whole server at the default interval and timeout, removed after \
             10 minutes critical"
        );
        let never = builder().deregister_after(None);
        assert_eq!(
            derived(&never, "10.0.0.5", 50051)[0].deregister_after,
            None,
            "deregister_after(None) turns the removal off"
        );
        let entries = builder().profile.entries("10.0.0.5", 50051, None);
        assert_eq!(
            entries[0].health_service,
            health::SERVER,
            "the main instance follows the whole server's health"
        );
    }

    #[test]
    fn every_setting_reaches_the_registration() {
        let weights = Weights {
            passing: 3,
            warning: 0,
        };
        let builder = builder()
            .id("adder-1")
            .tag("v2")
            .tag("canary")
            .meta("version", "2.1")
            .weights(weights)
            .locality("eu-west-1a")
            .check(CheckKind::Grpc {
                service: "calc.Adder".into(),
            })
            .check_interval(Duration::from_secs(3))
            .check_timeout(Duration::from_millis(500))
            .deregister_after(Duration::from_secs(90));
        let got = derived(&builder, "10.0.0.5", 50051);

        let mut instance = ServiceInstance::new("adder-1", "adder", "10.0.0.5", 50051)
            .tags(["v2", "canary"])
            .weights(weights)
            .meta("version", "2.1");
        instance.locality = Some("eu-west-1a".into());
        let mut want = Registration::new(instance).check(
            CheckSpec::grpc("10.0.0.5:50051/calc.Adder")
                .interval(Duration::from_secs(3))
                .timeout(Duration::from_millis(500)),
        );
        want.deregister_after = Some(Duration::from_secs(90));
        assert_eq!(
            got,
            [want],
            "id, tags in order, meta, weights, locality, a gRPC check of calc.Adder with the \
             interval and timeout set, deregister_after"
        );
        assert_eq!(
            builder.profile.entries("10.0.0.5", 50051, None)[0].health_service,
            "calc.Adder",
            "the instance follows the health of the service its check asks about"
        );
    }

    #[test]
    fn each_check_kind_derives_its_check_spec() {
        let check = |kind: CheckKind| {
            let builder = builder()
                .check(kind)
                .check_interval(Duration::from_secs(2))
                .check_timeout(Duration::from_secs(1));
            derived(&builder, "10.0.0.5", 50051)[0].check.clone()
        };
        let every = |spec: CheckSpec| {
            spec.interval(Duration::from_secs(2))
                .timeout(Duration::from_secs(1))
        };
        assert_eq!(
            check(CheckKind::Ttl(Duration::from_secs(15))),
            Some(CheckSpec::ttl(Duration::from_secs(15))),
            "a TTL check has its TTL and no interval or timeout"
        );
        assert_eq!(
            check(CheckKind::Http {
                path: "/healthz".into()
            }),
            Some(every(CheckSpec::http("http://10.0.0.5:50051/healthz"))),
            "an HTTP check of the path on the bound address"
        );
        let http_health = builder()
            .check(CheckKind::HttpHealth {
                listen: "0.0.0.0:0".parse().unwrap(),
            })
            .also_register("multiplier", "calc.Multiplier");
        let checks: Vec<_> = (http_health.profile)
            .entries("fd00::5", 50051, Some(8081))
            .into_iter()
            .map(|e| e.registration.check)
            .collect();
        assert_eq!(
            checks,
            [
                Some(CheckSpec::http("http://[fd00::5]:8081/health")),
                Some(CheckSpec::http(
                    "http://[fd00::5]:8081/health/calc.Multiplier"
                )),
            ],
            "an HTTP check of the health route on its own port, per service"
        );
        assert_eq!(
            check(CheckKind::GrpcTls {
                service: "calc.Adder".into()
            }),
            Some(CheckSpec::Grpc {
                target: "10.0.0.5:50051/calc.Adder".into(),
                use_tls: true,
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
            }),
            "a gRPC check over TLS of the service on the bound address"
        );
        assert_eq!(
            check(CheckKind::Tcp),
            Some(every(CheckSpec::tcp("10.0.0.5:50051"))),
            "a TCP check of the bound address"
        );
        assert_eq!(
            check(CheckKind::None),
            None,
            "no check at all with CheckKind::None"
        );
    }

    #[test]
    fn an_ipv6_host_is_bracketed_in_the_check_target() {
        let got = derived(&builder(), "fd00::5", 50051);
        assert_eq!(
            got[0].instance.host, "fd00::5",
            "the host is registered bare"
        );
        assert_eq!(
            got[0].check,
            Some(CheckSpec::grpc("[fd00::5]:50051")),
            "the check dials [host]:port"
        );
    }

    #[test]
    fn further_services_register_under_their_own_names_and_health() {
        let builder = builder()
            .id("adder-1")
            .tag("v2")
            .meta("version", "2.1")
            .deregister_after(Duration::from_secs(60))
            .also_register("multiplier", "calc.Multiplier");
        let entries = builder.profile.entries("10.0.0.5", 50051, None);
        assert_eq!(entries.len(), 2, "the main service, then the extra one");

        let extra = &entries[1];
        let mut want = Registration::new(
            ServiceInstance::new("multiplier-10.0.0.5-50051", "multiplier", "10.0.0.5", 50051)
                .tags(["v2"])
                .meta("version", "2.1"),
        )
        .check(CheckSpec::grpc("10.0.0.5:50051/calc.Multiplier"));
        want.deregister_after = Some(Duration::from_secs(60));
        assert_eq!(
            extra.registration, want,
            "the extra service gets a default id of its own (the id set is the main one's), \
             the shared tags, meta and deregister_after, and a gRPC check of its own service"
        );
        assert_eq!(
            extra.health_service, "calc.Multiplier",
            "the extra instance follows its own service's health"
        );
        assert_eq!(
            entries[0].registration.instance.id, "adder-1",
            "the main instance keeps the id set"
        );
    }
}
