//! The registration's metrics, read back through metrics-util's `DebuggingRecorder`: a
//! server counts as registered once the registry accepted it, its TTL reports by status, a
//! registration the registry forgot as made again, and nothing once it stopped.
//!
//! The test runs on a current-thread runtime with the recorder set as the thread's local
//! one, so the server's keep-alive task records into it.

use std::time::Duration;

use discovery_core::{MemoryRegistry, Registry};
use grpc_register::{CheckKind, Registered, metrics};
use metrics_readback::{DebuggingRecorder, Recorded};
use tonic::transport::Server;

/// The registration's metrics read back.
trait RegistrationMetrics {
    /// The registration-state gauge of `state` for the service `adder`.
    fn registrations(&self, state: &str) -> f64;
}

impl RegistrationMetrics for Recorded {
    fn registrations(&self, state: &str) -> f64 {
        self.gauge(
            metrics::REGISTRATIONS,
            &[("service", "adder"), ("state", state)],
        )
    }
}

#[tokio::test(flavor = "current_thread")]
async fn registration_state_attempts_reports_and_reregistrations_are_counted() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let registry = MemoryRegistry::new();
    let running = Registered::builder(registry.clone(), "adder")
        .check(CheckKind::Ttl(Duration::from_millis(300)))
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .expect("the server starts");
    assert_eq!(
        recorded.registrations("registered"),
        1.0,
        "expected the accepted registration counted registered"
    );
    assert_eq!(
        recorded.counter(
            metrics::ATTEMPTS,
            &[("service", "adder"), ("outcome", "ok")]
        ),
        1,
        "expected one successful attempt"
    );
    recorded
        .until("a passing TTL report", |r| {
            r.counter(
                metrics::HEALTH_REPORTS,
                &[("service", "adder"), ("status", "passing")],
            ) >= 1
        })
        .await;

    // The registry forgets the instance: the next report finds out and registers again.
    registry.deregister(running.id()).await.unwrap();
    recorded
        .until("a re-registration", |r| {
            r.counter(metrics::REREGISTRATIONS, &[("service", "adder")]) >= 1
        })
        .await;
    assert!(
        recorded.counter(
            metrics::ATTEMPTS,
            &[("service", "adder"), ("outcome", "ok")]
        ) >= 2,
        "expected the re-registration counted as an attempt"
    );

    running.stop().await.expect("a graceful stop");
    assert_eq!(
        recorded.registrations("registered")
            + recorded.registrations("new")
            + recorded.registrations("lost"),
        0.0,
        "expected a stopped server's registration counted nowhere"
    );
}
