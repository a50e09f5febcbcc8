//! The server's registration metrics, through the [`metrics`] facade: their names, labels
//! and units, [`describe`], and the calls the keep-alive task records them with.
//!
//! This crate installs no recorder; without one every call here is the facade's no-op.
//! Registrations and reports are rare (one per check interval at most), so handles are
//! looked up at each event rather than kept. Labels: `service` (the registered service's
//! name), `state`, `outcome` and `status` (fixed sets below). Never an instance's address
//! or a token.
//!
//! Uses only the core model.

use discovery_core::HealthStatus;
use metrics::Unit;

/// Registrations by where they stand with the registry (gauge; `service`, `state`: `new`
/// (not accepted yet), `registered`, `lost` (accepted, then in doubt after a failed
/// call)). A deregistered one leaves the count.
pub const REGISTRATIONS: &str = "grpc_register_registrations";
/// Calls registering an instance (counter; `service`, `outcome`: `ok`, `error`).
pub const ATTEMPTS: &str = "grpc_register_registration_attempts_total";
/// Registrations made again because the registry had forgotten the instance (an agent
/// restarted empty, a reaped instance) (counter; `service`).
pub const REREGISTRATIONS: &str = "grpc_register_reregistrations_total";
/// TTL reports sent, by the status reported (counter; `service`, `status`: `passing`,
/// `warning`, `critical`).
pub const HEALTH_REPORTS: &str = "grpc_register_health_reports_total";

/// Describes every metric of this crate to the installed recorder (help text and units).
/// Call it once, after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        REGISTRATIONS,
        Unit::Count,
        "Registrations by where they stand with the registry: new, registered, lost."
    );
    describe_counter!(
        ATTEMPTS,
        Unit::Count,
        "Calls registering an instance, by outcome."
    );
    describe_counter!(
        REREGISTRATIONS,
        Unit::Count,
        "Registrations made again because the registry had forgotten the instance."
    );
    describe_counter!(
        HEALTH_REPORTS,
        Unit::Count,
        "TTL reports sent, by the status reported."
    );
}

/// A registration of `service` moved from state `from` to `to` (`None`: not counted:
/// before its first attempt, or after it was deregistered).
pub(crate) fn moved(service: &str, from: Option<&'static str>, to: Option<&'static str>) {
    if from == to {
        return;
    }
    if let Some(from) = from {
        metrics::gauge!(REGISTRATIONS, "service" => service.to_owned(), "state" => from)
            .decrement(1);
    }
    if let Some(to) = to {
        metrics::gauge!(REGISTRATIONS, "service" => service.to_owned(), "state" => to).increment(1);
    }
}

/// A call registering an instance of `service` ended, `ok` or not.
pub(crate) fn attempted(service: &str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!(ATTEMPTS, "service" => service.to_owned(), "outcome" => outcome).increment(1);
}

/// The registry had forgotten an instance of `service`; it is registered again.
pub(crate) fn reregistered(service: &str) {
    metrics::counter!(REREGISTRATIONS, "service" => service.to_owned()).increment(1);
}

/// A TTL report of `status` for an instance of `service` is sent.
pub(crate) fn reported(service: &str, status: HealthStatus) {
    metrics::counter!(HEALTH_REPORTS, "service" => service.to_owned(), "status" => status.as_str())
        .increment(1);
}
