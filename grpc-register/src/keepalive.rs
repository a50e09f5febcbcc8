//! The keep-alive task: while the server runs, it registers again what failed or what the
//! registry forgot, and reports TTL checks from the health state. Uses only the registry
//! and the health handle; the builder and the running server use it.

use std::sync::Arc;
use std::time::Duration;

use discovery_core::{Backoff, Registration, Registry};
use health::Health;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One registration and the health service whose status it reports.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) registration: Registration,
    pub(crate) health_service: String,
}

/// The registry, shared by the server handle and its maintenance task.
#[derive(Clone)]
pub(crate) struct SharedRegistry(pub(crate) Arc<dyn Registry>);

impl std::fmt::Debug for SharedRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

/// Registers once, logging the outcome; a failure is retried by the maintenance task.
pub(crate) async fn register(registry: &dyn Registry, registration: &Registration) -> bool {
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

/// The running keep-alive task.
#[derive(Debug)]
pub(crate) struct KeepAlive {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

// === impl KeepAlive ===

impl KeepAlive {
    /// Starts tending `entries`, each with whether its first registration succeeded.
    /// `ttl` is set in TTL mode; `interval` is the check interval otherwise.
    pub(crate) fn spawn(
        registry: SharedRegistry,
        entries: Vec<(Entry, bool)>,
        health: Health,
        ttl: Option<Duration>,
        interval: Duration,
    ) -> Self {
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(
            Maintenance {
                registry,
                entries,
                health,
                ttl,
                interval,
            }
            .run(stop_rx),
        );
        KeepAlive { stop, task }
    }

    /// Ends the task and waits until it has, so no renewal can follow.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
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

// === impl Maintenance ===

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
