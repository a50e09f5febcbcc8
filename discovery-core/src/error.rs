//! The one error type every backend maps its failures into.

use std::error::Error as StdError;
use std::sync::Arc;

/// A boxed, shareable cause.
pub type BoxError = Arc<dyn StdError + Send + Sync + 'static>;

/// Why a registry or resolver call failed.
///
/// Callers decide what to do through the predicates ([`Error::is_retryable`],
/// [`Error::is_not_found`]), never through the message text. `Clone` so that one failure can
/// be handed to every watcher of a query.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry could not be reached or did not answer in time. Retry with backoff.
    #[error("registry unavailable")]
    Unavailable(#[source] BoxError),
    /// The registry answered that it does not know the instance or check: it restarted, or
    /// the instance was removed. A server re-registers.
    #[error("registry does not know {what}")]
    NotFound {
        /// What was asked for, such as `instance "web-1"`.
        what: String,
    },
    /// The request was refused because of what it says (bad name, bad address). Retrying
    /// the same request fails the same way.
    #[error("registry rejected the request: {message}")]
    Rejected {
        /// The registry's own words.
        message: String,
    },
    /// The credentials (an ACL token) do not allow the call.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// The registry's own words.
        message: String,
    },
    /// A failure that fits no other kind, such as an answer the client could not decode.
    #[error("registry call failed")]
    Other(#[source] BoxError),
}

impl Error {
    /// Wraps a transport failure.
    pub fn unavailable(cause: impl StdError + Send + Sync + 'static) -> Self {
        Error::Unavailable(Arc::new(cause))
    }

    /// Wraps any other failure.
    pub fn other(cause: impl StdError + Send + Sync + 'static) -> Self {
        Error::Other(Arc::new(cause))
    }

    /// Whether the same call may succeed later without changes.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Other(_))
    }

    /// Whether the registry does not know the instance or check (re-register to heal).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_decide_retryability() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(Error::unavailable(io).is_retryable());
        assert!(
            !Error::Rejected {
                message: "Missing service name".into()
            }
            .is_retryable()
        );
        let nf = Error::NotFound {
            what: "instance \"a\"".into(),
        };
        assert!(nf.is_not_found() && !nf.is_retryable());
    }

    #[test]
    fn cause_is_kept_as_source() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        let err = Error::unavailable(io);
        let source = std::error::Error::source(&err).expect("a source");
        assert_eq!(source.to_string(), "slow");
    }
}
