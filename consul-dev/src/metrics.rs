//! The agent's metrics, through the [`metrics`] facade: their names, labels and units,
//! [`describe`], and the calls the HTTP layer and the blocking-query engine record with.
//!
//! The library installs no recorder; without one every call here is the facade's no-op
//! (what remains is building a request's labels). Labels stay bounded: `route` is the
//! pattern the request matched (`/v1/health/service/{service}`, `unmatched` for a path no
//! route takes), never the raw path; `status` is the answer's HTTP status code.
//!
//! Uses nothing else of the crate.

use metrics::{SharedString, Unit};

/// HTTP requests answered, by route pattern and status (counter; `route`, `status`).
pub const REQUESTS: &str = "consul_dev_requests_total";
/// Blocking queries waiting for a change now (gauge).
pub const BLOCKED: &str = "consul_dev_blocked_queries";

/// The `route` label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Describes every metric of this crate to the installed recorder (help text and units).
/// Call it once, after installing the recorder.
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        Unit::Count,
        "HTTP requests answered, by route pattern and status."
    );
    metrics::describe_gauge!(
        BLOCKED,
        Unit::Count,
        "Blocking queries waiting for a change now."
    );
}

/// A request that matched `route` (a pattern, or [`UNMATCHED`]) was answered `status`.
pub(crate) fn answered(route: &str, status: u16) {
    let route = if route == UNMATCHED {
        SharedString::const_str(UNMATCHED)
    } else {
        SharedString::from_owned(route.to_owned())
    };
    metrics::counter!(REQUESTS, "route" => route, "status" => status_label(status)).increment(1);
}

/// A blocking query starts waiting (`true`) or stops.
pub(crate) fn blocked(waiting: bool) {
    let gauge = metrics::gauge!(BLOCKED);
    if waiting {
        gauge.increment(1);
    } else {
        gauge.decrement(1);
    }
}

/// The status as a label, without allocating for the codes the agent answers with.
fn status_label(status: u16) -> SharedString {
    let known = match status {
        200 => "200",
        400 => "400",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        _ => return SharedString::from_owned(status.to_string()),
    };
    SharedString::const_str(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_code() {
        for code in [200, 404, 429, 503, 599] {
            assert_eq!(
                &*status_label(code),
                code.to_string(),
                "expected {code}'s label to be its digits"
            );
        }
    }
}
