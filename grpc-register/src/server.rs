//! The running server and its stop sequence: NOT_SERVING → deregister → drain → graceful
//! stop, also when the server ends by itself. Uses the keep-alive task; the builder makes a
//! [`Running`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use discovery_core::{Registration, Registry};
use health::Health;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::http_health::HttpHealth;
use crate::keepalive::{KeepAlive, SharedRegistry};

/// A server that is serving and registered; stop it with [`Running::stop`] or
/// [`Running::run_until`].
///
/// Dropping it instead closes the listener and ends the keep-alive task but leaves the
/// registration behind, as a crash would: the registry's check turns it critical, and its
/// deregister-after removes it.
#[derive(Debug)]
pub struct Running {
    pub(crate) local_addr: SocketAddr,
    /// The main registration first, then the extra services'.
    pub(crate) registrations: Vec<Registration>,
    pub(crate) registry: SharedRegistry,
    pub(crate) health: Health,
    pub(crate) drain: Duration,
    pub(crate) grace: Duration,
    pub(crate) server: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Closes the listener and starts tonic's graceful shutdown.
    pub(crate) stop: oneshot::Sender<()>,
    pub(crate) keepalive: KeepAlive,
    /// The HTTP/1.1 health route, with [`CheckKind::HttpHealth`](crate::CheckKind::HttpHealth);
    /// it answers until the server has stopped (503 once NOT_SERVING).
    pub(crate) http_health: Option<HttpHealth>,
}

// === impl Running ===

impl Running {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What was registered: the main service first, then those added with
    /// [`Builder::also_register`](crate::Builder::also_register).
    pub fn registrations(&self) -> &[Registration] {
        &self.registrations
    }

    /// Where the HTTP/1.1 health route is served, with
    /// [`CheckKind::HttpHealth`](crate::CheckKind::HttpHealth).
    pub fn http_health_addr(&self) -> Option<SocketAddr> {
        self.http_health.as_ref().map(HttpHealth::local_addr)
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
                let Running { registry, registrations, keepalive, .. } = self;
                keepalive.stop().await;
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
            keepalive,
            http_health,
            ..
        } = self;
        // Stop renewing first, or a renewal could re-register after the deregistration.
        keepalive.stop().await;

        health.shutdown().await;
        deregister_all(&*registry.0, &registrations).await;
        tokio::time::sleep(drain).await;

        let _ = stop.send(());
        // Closed with the server, so the registry's check still reads NOT_SERVING meanwhile.
        let _http_health = http_health;
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

/// Deregisters every registration, each within a bound.
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
