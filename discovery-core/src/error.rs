//! The one error type every backend maps its failures into. Uses nothing else of this crate.

use std::error::Error as StdError;
use std::sync::Arc;

/// A cause shared by every holder of one failure.
///
/// An `Arc`, not the `Box` that tower and this workspace's other crates call `SharedError`,
/// because one failure of a watch is handed to each of its subscribers.
pub type SharedError = Arc<dyn StdError + Send + Sync + 'static>;

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
    Unavailable(#[source] SharedError),
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
    /// The registry answered with something the client cannot use: an answer that does not
    /// decode, or one larger than the client accepts. Asking again the same way gets the same
    /// answer, so this is not retryable (a watch still retries it, after its backoff).
    #[error("registry answer unusable")]
    Invalid(#[source] SharedError),
    /// A failure that fits no other kind.
    #[error("registry call failed")]
    Other(#[source] SharedError),
}

impl Error {
    /// Wraps a transport failure.
    pub fn unavailable(cause: impl StdError + Send + Sync + 'static) -> Self {
        Error::Unavailable(Arc::new(cause))
    }

    /// Wraps an answer the client cannot use.
    pub fn invalid(cause: impl StdError + Send + Sync + 'static) -> Self {
        Error::Invalid(Arc::new(cause))
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
        let decode = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad json");
        assert!(!Error::invalid(decode).is_retryable());
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
