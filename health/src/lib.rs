//! `grpc.health.v1` for tonic servers, with a handle that knows what it reported.
//!
//! tonic-health serves the protocol; this crate adds what service discovery needs on top: a
//! [`Health`] handle that remembers every status it set (tonic-health's reporter can only
//! write), turns the whole server NOT_SERVING in one call at shutdown, and derives the
//! registry-facing status ([`Health::registry_status`]) a TTL check reports.
//!
//! Everything starts NOT_SERVING, the overall server (`""`) included: a server says it is
//! ready only once it is, which is what a registry's health check must see before it sends
//! traffic.
//!
//! # Examples
//!
//! ```
//! use health::Health;
//! use discovery_core::HealthStatus;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (health, server) = Health::new();
//! // Mount `server` on a tonic router: `Server::builder().add_service(server)`.
//! # drop(server);
//! health.set_serving("adder.Adder").await;
//! assert_eq!(health.registry_status("adder.Adder").0, HealthStatus::Passing);
//! health.shutdown().await;
//! assert_eq!(health.registry_status("adder.Adder").0, HealthStatus::Critical);
//! # }
//! ```

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use discovery_core::HealthStatus;
use tonic_health::server::HealthReporter;

pub use tonic_health::ServingStatus;
pub use tonic_health::pb::health_server::HealthServer;
pub use tonic_health::server::HealthService;

/// The name of the overall server in `grpc.health.v1`: the empty string.
pub const SERVER: &str = "";

/// A handle on a server's `grpc.health.v1` statuses. Clones share the same state.
#[derive(Debug, Clone)]
pub struct Health {
    reporter: HealthReporter,
    /// What was last reported, per service name. tonic-health keeps its own copy but offers
    /// no read access.
    statuses: Arc<Mutex<BTreeMap<String, ServingStatus>>>,
}

// === impl Health ===

impl Health {
    /// A handle and the linked `grpc.health.v1` service to mount on a tonic router.
    ///
    /// The overall server status (`""`) starts NOT_SERVING.
    pub async fn start() -> (Health, HealthServer<HealthService>) {
        let (health, server) = Health::new();
        health.set_status(SERVER, ServingStatus::NotServing).await;
        (health, server)
    }

    /// Like [`Health::start`] but synchronous: the overall status is recorded as NOT_SERVING
    /// here and reaches the served state at the first `set_*` call.
    pub fn new() -> (Health, HealthServer<HealthService>) {
        let reporter = HealthReporter::new();
        let server = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
        let health = Health {
            reporter,
            statuses: Arc::new(Mutex::new(BTreeMap::from([(
                SERVER.to_owned(),
                ServingStatus::NotServing,
            )]))),
        };
        (health, server)
    }

    /// Sets the status of `service` (`""` for the whole server).
    pub async fn set_status(&self, service: &str, status: ServingStatus) {
        self.lock().insert(service.to_owned(), status);
        self.reporter.set_service_status(service, status).await;
    }

    /// Marks `service` SERVING.
    pub async fn set_serving(&self, service: &str) {
        self.set_status(service, ServingStatus::Serving).await;
    }

    /// Marks `service` NOT_SERVING.
    pub async fn set_not_serving(&self, service: &str) {
        self.set_status(service, ServingStatus::NotServing).await;
    }

    /// Marks every known service and the server NOT_SERVING: the first step of a graceful
    /// stop, so health checks fail before the listener goes away.
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        for name in names {
            self.set_not_serving(&name).await;
        }
    }

    /// The last status set for `service`, if any.
    pub fn status(&self, service: &str) -> Option<ServingStatus> {
        self.lock().get(service).copied()
    }

    /// The status a registry should record for `service`, with an output text: passing
    /// while SERVING, critical otherwise (an unknown service is critical, as a gRPC health
    /// check sees it).
    pub fn registry_status(&self, service: &str) -> (HealthStatus, String) {
        match self.status(service) {
            Some(ServingStatus::Serving) => (HealthStatus::Passing, format!("{service:?} SERVING")),
            Some(ServingStatus::NotServing) => {
                (HealthStatus::Critical, format!("{service:?} NOT_SERVING"))
            }
            Some(ServingStatus::Unknown) => {
                (HealthStatus::Critical, format!("{service:?} UNKNOWN"))
            }
            None => (
                HealthStatus::Critical,
                format!("{service:?} SERVICE_UNKNOWN"),
            ),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ServingStatus>> {
        // Every write is a single insert: a poisoned map is still consistent.
        self.statuses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
