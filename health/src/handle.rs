//! The [`Health`] handle: base statuses set by the server, verdicts of indicators, and the
//! effective statuses pushed to `grpc.health.v1` clients. Runs the indicators of
//! [`indicator`](crate::indicator).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use discovery_core::HealthStatus;
use tokio::task::AbortHandle;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::indicator::{Indicator, IndicatorOptions, Level, Probe, Scope};

/// The name of the overall server in `grpc.health.v1`: the empty string.
pub const SERVER: &str = "";

/// A handle on a server's `grpc.health.v1` statuses. Clones share the same state.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    reporter: HealthReporter,
    state: Mutex<State>,
    /// Serializes pushes to the reporter, so the last push carries the latest state.
    push: tokio::sync::Mutex<()>,
    /// Indicator tasks, stopped at shutdown.
    tasks: Mutex<Vec<AbortHandle>>,
}

#[derive(Debug, Default)]
struct State {
    /// What the server set per service (`""` is the whole server).
    base: BTreeMap<String, ServingStatus>,
    /// The latest verdict of each indicator, by name.
    probes: BTreeMap<String, (Scope, Probe)>,
}

impl State {
    fn effective(&self, service: &str) -> Option<ServingStatus> {
        let base = *self.base.get(service)?;
        let down = self
            .probes
            .values()
            .any(|(scope, probe)| scope.covers(service) && probe.level == Level::Down);
        Some(if base == ServingStatus::Serving && down {
            ServingStatus::NotServing
        } else {
            base
        })
    }
}

// === impl Health ===

impl Health {
    /// A handle and the linked `grpc.health.v1` service to mount on a tonic router. The
    /// overall server status (`""`) is recorded NOT_SERVING; it reaches clients with the
    /// first change (use [`Health::start`] to publish it at once).
    pub fn new() -> (Health, HealthServer<HealthService>) {
        let reporter = HealthReporter::new();
        let server = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
        let state = State {
            base: BTreeMap::from([(SERVER.to_owned(), ServingStatus::NotServing)]),
            probes: BTreeMap::new(),
        };
        let health = Health {
            inner: Arc::new(Inner {
                reporter,
                state: Mutex::new(state),
                push: tokio::sync::Mutex::new(()),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        (health, server)
    }

    /// Like [`Health::new`], with the NOT_SERVING overall status published before it returns.
    pub async fn start() -> (Health, HealthServer<HealthService>) {
        let (health, server) = Health::new();
        health.push().await;
        (health, server)
    }

    /// Sets the status of `service` (`""` for the whole server), as the server sees it;
    /// clients see NOT_SERVING instead while an indicator covering it is down.
    pub async fn set_status(&self, service: &str, status: ServingStatus) {
        self.state().base.insert(service.to_owned(), status);
        self.push().await;
    }

    /// Marks `service` SERVING.
    pub async fn set_serving(&self, service: &str) {
        self.set_status(service, ServingStatus::Serving).await;
    }

    /// Marks `service` NOT_SERVING.
    pub async fn set_not_serving(&self, service: &str) {
        self.set_status(service, ServingStatus::NotServing).await;
    }

    /// Stops the indicators and marks every known service and the server NOT_SERVING: the
    /// first step of a graceful stop, so health checks fail before the listener goes away.
    pub async fn shutdown(&self) {
        for task in self.tasks().drain(..) {
            task.abort();
        }
        for status in self.state().base.values_mut() {
            *status = ServingStatus::NotServing;
        }
        self.push().await;
    }

    /// What `grpc.health.v1` clients see for `service` now, if it is known.
    pub fn status(&self, service: &str) -> Option<ServingStatus> {
        self.state().effective(service)
    }

    /// Records an indicator's verdict and applies it. Indicators registered with
    /// [`Health::add_indicator`] report through this; push-style indicators (like
    /// [`InFlightLimitLayer`](crate::InFlightLimitLayer)) call it directly.
    pub async fn report(&self, indicator: &str, scope: Scope, probe: Probe) {
        self.record(indicator, scope, probe);
        self.push().await;
    }

    /// [`report`](Self::report) from synchronous code: records at once, publishes on a
    /// spawned task. Needs a tokio runtime.
    pub fn report_now(&self, indicator: &str, scope: Scope, probe: Probe) {
        self.record(indicator, scope, probe);
        let health = self.clone();
        tokio::spawn(async move { health.push().await });
    }

    fn record(&self, indicator: &str, scope: Scope, probe: Probe) {
        let mut state = self.state();
        let changed = state
            .probes
            .get(indicator)
            .is_none_or(|(_, old)| old.level != probe.level);
        if changed {
            tracing::info!(indicator, level = ?probe.level, detail = %probe.detail, "health indicator changed");
        }
        state.probes.insert(indicator.to_owned(), (scope, probe));
    }

    /// Runs `indicator` every `options.interval` (the first probe at once) until
    /// [`Health::shutdown`]. A probe that outlives `options.timeout` counts as down.
    pub fn add_indicator(
        &self,
        name: impl Into<String>,
        options: IndicatorOptions,
        indicator: impl Indicator,
    ) {
        let name = name.into();
        let health = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let probe = match tokio::time::timeout(options.timeout, indicator.probe()).await {
                    Ok(probe) => probe,
                    Err(_) => Probe::down(format!("no answer within {:?}", options.timeout)),
                };
                health.report(&name, options.scope.clone(), probe).await;
                tokio::time::sleep(options.interval).await;
            }
        });
        self.tasks().push(task.abort_handle());
    }

    /// The status a registry should record for `service`, with an output text: critical
    /// while NOT_SERVING or an indicator covering it is down, warning while one is degraded,
    /// passing otherwise. An unknown service is critical, as a gRPC health check sees it.
    pub fn registry_status(&self, service: &str) -> (HealthStatus, String) {
        let state = self.state();
        let Some(base) = state.base.get(service).copied() else {
            return (
                HealthStatus::Critical,
                format!("{service:?} SERVICE_UNKNOWN"),
            );
        };
        let mut worst = Level::Up;
        let mut details = Vec::new();
        for (name, (scope, probe)) in &state.probes {
            if scope.covers(service) {
                worst = worst.max(probe.level);
                if probe.level != Level::Up {
                    details.push(format!("{name}: {}", probe.detail));
                }
            }
        }
        let word = match base {
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::Unknown => "UNKNOWN",
        };
        let status = match (base, worst) {
            (ServingStatus::Serving, Level::Up) => HealthStatus::Passing,
            (ServingStatus::Serving, Level::Degraded) => HealthStatus::Warning,
            _ => HealthStatus::Critical,
        };
        let mut output = format!("{service:?} {word}");
        for detail in details {
            output.push_str("; ");
            output.push_str(&detail);
        }
        (status, output)
    }

    /// Publishes the effective status of every known service.
    async fn push(&self) {
        let _serial = self.inner.push.lock().await;
        let statuses: Vec<(String, ServingStatus)> = {
            let state = self.state();
            state
                .base
                .keys()
                .filter_map(|s| state.effective(s).map(|st| (s.clone(), st)))
                .collect()
        };
        for (service, status) in statuses {
            self.inner
                .reporter
                .set_service_status(&service, status)
                .await;
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation is a single insert or assignment: a poisoned map is consistent.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tasks(&self) -> MutexGuard<'_, Vec<AbortHandle>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn down_indicators_override_serving_and_degraded_ones_warn() {
        let (health, _server) = Health::new();
        health.set_serving(SERVER).await;
        health.set_serving("a.A").await;
        health.set_serving("b.B").await;
        assert_eq!(health.registry_status("a.A").0, HealthStatus::Passing);

        health
            .report(
                "db",
                Scope::Services(vec!["a.A".into()]),
                Probe::down("refused"),
            )
            .await;
        assert_eq!(health.status("a.A"), Some(ServingStatus::NotServing));
        assert_eq!(
            health.status("b.B"),
            Some(ServingStatus::Serving),
            "out of scope"
        );
        let (status, output) = health.registry_status("a.A");
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(output, "\"a.A\" SERVING; db: refused");

        health
            .report(
                "db",
                Scope::Services(vec!["a.A".into()]),
                Probe::new(Level::Degraded, "slow"),
            )
            .await;
        assert_eq!(
            health.status("a.A"),
            Some(ServingStatus::Serving),
            "degraded still serves"
        );
        assert_eq!(health.registry_status("a.A").0, HealthStatus::Warning);

        health.report("db", Scope::All, Probe::up("ok")).await;
        assert_eq!(health.registry_status("a.A").0, HealthStatus::Passing);
    }

    #[tokio::test]
    async fn shutdown_turns_everything_not_serving() {
        let (health, _server) = Health::new();
        health.set_serving(SERVER).await;
        health.set_serving("a.A").await;
        health.shutdown().await;
        assert_eq!(health.status(SERVER), Some(ServingStatus::NotServing));
        assert_eq!(health.status("a.A"), Some(ServingStatus::NotServing));
        assert_eq!(health.registry_status("a.A").0, HealthStatus::Critical);
        assert_eq!(health.registry_status("nope").0, HealthStatus::Critical);
    }

    #[tokio::test(start_paused = true)]
    async fn indicators_run_on_their_interval_and_time_out_as_down() {
        let (health, _server) = Health::new();
        health.set_serving(SERVER).await;
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let c = calls.clone();
        health.add_indicator(
            "slow",
            IndicatorOptions::every(std::time::Duration::from_secs(10))
                .timeout(std::time::Duration::from_secs(1)),
            crate::indicator_fn(move || {
                let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Probe::up("fast")
                    } else {
                        // Outlives the 1s timeout.
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        Probe::up("too late")
                    }
                }
            }),
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(
            health.registry_status(SERVER).0,
            HealthStatus::Passing,
            "first probe up"
        );
        tokio::time::sleep(std::time::Duration::from_secs(12)).await;
        let (status, output) = health.registry_status(SERVER);
        assert_eq!(status, HealthStatus::Critical, "a timed-out probe is down");
        assert!(output.contains("slow: no answer within 1s"), "{output}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
