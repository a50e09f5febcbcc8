//! The crate's one error type.
//!
//! A tonic client turns a channel error into a `tonic::Status` by walking the error's
//! `source()` chain, so every variant keeps its cause as a source: the status a caller sees
//! is the one the cause implies (`Unavailable` for a refused connection, the exact status
//! for [`Error::NoEndpoints`]). [`DisplayChain`] is the one way the crate logs an error
//! with its causes.
//!
//! May use: nothing else of the crate; every other module may use it.

use std::time::Duration;

/// A boxed error, as tower and tonic pass them around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a call through a [`DiscoveredChannel`](crate::DiscoveredChannel) or a target parse
/// failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No endpoint of the service became ready within the channel's empty timeout (or the
    /// call's own deadline, if shorter).
    ///
    /// The source is a `tonic::Status` with code `Unavailable` (`DeadlineExceeded` when
    /// the call's deadline ended the wait), which tonic clients return as is.
    #[error("no endpoints for service {service:?} after {waited:?}")]
    NoEndpoints {
        /// The service the channel discovers.
        service: String,
        /// How long the call waited.
        waited: Duration,
        /// The status a tonic client reports.
        #[source]
        status: tonic::Status,
    },
    /// The call failed on its way to or from an endpoint: the connection broke (reset,
    /// closed, the process died) or the server reset the call's stream.
    ///
    /// The source is a `tonic::Status` saying what broke, whose own source is what the
    /// transport said: `Unavailable` for a broken connection, as gRPC's HTTP/2 mapping has
    /// it (so retry policies keyed on `UNAVAILABLE` retry it), the mapped code for a stream
    /// the server reset (`CANCEL` is `Cancelled`, `REFUSED_STREAM` is `Unavailable`...).
    #[error("call to endpoint {endpoint:?} failed")]
    Transport {
        /// The instance id of the endpoint.
        endpoint: String,
        /// The status a tonic client reports, its message naming the endpoint and the
        /// cause.
        #[source]
        status: tonic::Status,
    },
    /// The call took longer than its deadline (`grpc-timeout`) or the channel's own
    /// [`timeout`](crate::Builder::timeout) allowed, before its response headers came.
    ///
    /// The source is a `tonic::Status` with code `DeadlineExceeded`.
    #[error("call timed out after {after:?}")]
    Timeout {
        /// The limit that ran out.
        after: Duration,
        /// The status a tonic client reports.
        #[source]
        status: tonic::Status,
    },
    /// A target string could not be parsed.
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget {
        /// The string as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// No endpoint within the wait; `deadline_exceeded` when the caller's own deadline
    /// ended the wait (gRPC says `DeadlineExceeded` then), not the channel's empty timeout.
    pub(crate) fn no_endpoints(
        service: &str,
        waited: Duration,
        detail: &str,
        deadline_exceeded: bool,
    ) -> Self {
        let message = format!("no endpoints for service {service:?} after {waited:?}: {detail}");
        let status = if deadline_exceeded {
            tonic::Status::deadline_exceeded(message)
        } else {
            tonic::Status::unavailable(message)
        };
        Error::NoEndpoints {
            service: service.to_owned(),
            waited,
            status,
        }
    }

    /// A call to `endpoint` failed in transport with `cause`, which gRPC reports as `code`.
    pub(crate) fn transport(endpoint: &str, code: tonic::Code, cause: BoxError) -> Self {
        let message = format!(
            "call to endpoint {endpoint:?} failed: {}",
            DisplayChain(&*cause)
        );
        let mut status = tonic::Status::new(code, message);
        status.set_source(std::sync::Arc::from(cause));
        Error::Transport {
            endpoint: endpoint.to_owned(),
            status,
        }
    }

    /// The status a tonic client reports for this error, if it carries one (every variant
    /// but [`Error::InvalidTarget`]).
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::NoEndpoints { status, .. }
            | Error::Transport { status, .. }
            | Error::Timeout { status, .. } => Some(status),
            Error::InvalidTarget { .. } => None,
        }
    }

    /// A call ran out of time after `after`.
    pub(crate) fn timeout(after: Duration) -> Self {
        Error::Timeout {
            after,
            status: tonic::Status::deadline_exceeded(format!("call timed out after {after:?}")),
        }
    }

    /// Whether no endpoint was available: the service has no ready instances now.
    pub fn is_no_endpoints(&self) -> bool {
        matches!(self, Error::NoEndpoints { .. })
    }

    /// Whether the same call may succeed later: no endpoints yet, or a transport failure.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NoEndpoints { .. } | Error::Transport { .. })
    }
}

/// Displays an error with its causes, `a: b: c`.
pub(crate) struct DisplayChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_endpoints_becomes_an_unavailable_status_naming_the_service() {
        let err: BoxError = Box::new(Error::no_endpoints(
            "adder",
            Duration::from_secs(10),
            "the service does not exist",
            false,
        ));
        let status = tonic::Status::from_error(err);
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "expected Unavailable, got {status:?}"
        );
        assert!(
            status.message().contains("\"adder\""),
            "expected the message to name the service, got {:?}",
            status.message()
        );
    }

    #[test]
    fn a_transport_error_becomes_its_code_with_the_cause_in_the_message() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err: BoxError = Box::new(Error::transport(
            "adder-1",
            tonic::Code::Unavailable,
            Box::new(cause),
        ));
        let status = tonic::Status::from_error(err);
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "expected Unavailable, got {status:?}"
        );
        assert_eq!(
            status.message(),
            "call to endpoint \"adder-1\" failed: reset by peer",
            "expected the endpoint and the cause in the message"
        );
    }
}
