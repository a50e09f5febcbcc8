//! What a registered server registers as: how the registry checks it ([`CheckKind`]),
//! its name, tags, metadata, weights and zone, and the registrations derived from those
//! once the listener's address is known, one per service the server registers (the main
//! one, then those added with [`Builder::also_register`](crate::Builder::also_register)).
//! The [`Builder`](crate::Builder) sets these and starts the server with them.
//!
//! May use: `keepalive` (the entries it keeps registered), `http_health` (the route's path).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use discovery_core::{CheckSpec, Registration, ServiceInstance, Weights};

use crate::http_health;
use crate::keepalive::Entry;

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
    /// [`CheckKind::Grpc`] over TLS (Consul's `GRPCUseTLS`), for a server you serve with
    /// TLS (`Server::builder().tls_config(..)`, tonic's `tls-ring` or `tls-aws-lc`
    /// feature). The registry verifies the certificate for the advertised host, so the
    /// certificate must name it (an IP address as an IP SAN) and the registry must trust
    /// its CA: a Consul agent needs `enable_agent_tls_for_checks` with a CA file for a
    /// private CA (consul-dev: `Config::check_tls_ca`), or a certificate from a public one.
    GrpcTls {
        /// The health service name to ask about.
        service: String,
    },
    /// The server reports its own health from its `Health` state every third of `ttl`.
    Ttl(Duration),
    /// The registry sends `GET http://<host>:<port><path>` to the gRPC port, where you
    /// serve it yourself (tonic serves HTTP/2 only unless told `accept_http1`, and routes
    /// only gRPC paths). Every service of the server is checked at the same URL. Prefer
    /// [`CheckKind::HttpHealth`], which serves the route for you.
    Http {
        /// The path, starting with `/`.
        path: String,
    },
    /// The server serves its health state over HTTP/1.1 on `listen` (port 0 picks a free
    /// one), and the registry checks it there: `GET http://<host>:<port>/health` for the
    /// main service, `/health/<gRPC service>` for one added with
    /// [`Builder::also_register`](crate::Builder::also_register). 200 while SERVING, 429 while an indicator reports
    /// degraded, 503 otherwise, as Consul's HTTP checks read them. `<host>` is the
    /// advertised host of the gRPC listener, so bind where the registry can reach it.
    HttpHealth {
        /// Where to serve the health route.
        listen: SocketAddr,
    },
    /// The registry opens a TCP connection to the server.
    Tcp,
    /// No check: the instance always looks healthy. For tests only.
    None,
}

/// The builder's settings that decide the registrations.
#[derive(Debug)]
pub(crate) struct Profile {
    pub(crate) service: String,
    pub(crate) id: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) weights: Weights,
    pub(crate) locality: Option<String>,
    pub(crate) check: CheckKind,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) deregister_after: Option<Duration>,
    /// Further services on the same server: (registered name, gRPC health service name).
    pub(crate) extra: Vec<(String, String)>,
}

// === impl Profile ===

impl Profile {
    /// `service` with a gRPC check of the server's own health at the registry's default
    /// interval and timeout, removed after `deregister_after` critical.
    pub(crate) fn new(service: String, deregister_after: Duration) -> Self {
        Profile {
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
            deregister_after: Some(deregister_after),
            extra: Vec::new(),
        }
    }

    /// The registrations this server makes for a listener at `host:port` (and the health
    /// route's port, with [`CheckKind::HttpHealth`]): its main service, then the extra ones.
    pub(crate) fn entries(&self, host: &str, port: u16, http_port: Option<u16>) -> Vec<Entry> {
        let main_health = match &self.check {
            CheckKind::Grpc { service } | CheckKind::GrpcTls { service } => service.clone(),
            _ => health::SERVER.to_owned(),
        };
        let mut entries = vec![self.entry(
            &self.service,
            self.id.clone(),
            &main_health,
            host,
            (port, http_port),
        )];
        for (service, health_service) in &self.extra {
            entries.push(self.entry(service, None, health_service, host, (port, http_port)));
        }
        entries
    }

    fn entry(
        &self,
        service: &str,
        id: Option<String>,
        health_service: &str,
        host: &str,
        (port, http_port): (u16, Option<u16>),
    ) -> Entry {
        let id = id.unwrap_or_else(|| format!("{service}-{host}-{port}"));
        let mut instance = ServiceInstance::new(id, service, host, port)
            .tags(self.tags.iter().cloned())
            .weights(self.weights);
        instance.meta = self.meta.clone();
        instance.locality = self.locality.clone();
        let authority = instance.authority();
        let grpc_target = || {
            if health_service.is_empty() {
                authority.clone()
            } else {
                format!("{authority}/{health_service}")
            }
        };
        let check = match &self.check {
            CheckKind::Grpc { .. } => Some(CheckSpec::grpc(grpc_target())),
            CheckKind::GrpcTls { .. } => {
                let mut spec = CheckSpec::grpc(grpc_target());
                if let CheckSpec::Grpc { use_tls, .. } = &mut spec {
                    *use_tls = true;
                }
                Some(spec)
            }
            CheckKind::Ttl(ttl) => Some(CheckSpec::ttl(*ttl)),
            CheckKind::Http { path } => Some(CheckSpec::http(format!("http://{authority}{path}"))),
            CheckKind::HttpHealth { .. } => {
                // The authority rules of an instance (IPv6 in brackets), on the health port.
                let side = ServiceInstance::new("", "", host, http_port.unwrap_or(port));
                Some(CheckSpec::http(format!(
                    "http://{}{}",
                    side.authority(),
                    http_health::path_of(health_service)
                )))
            }
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
