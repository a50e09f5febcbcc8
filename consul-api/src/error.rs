//! The one error type of the client.

use http::StatusCode;

/// Why a Consul call failed. Decide with the predicates, never with the text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Consul answered with an error status; `message` is its plain-text body.
    #[error("consul answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// Consul's error text, trimmed.
        message: String,
    },
    /// The request did not complete: connection refused or reset, DNS failure.
    #[error("cannot reach consul")]
    Transport(#[source] reqwest::Error),
    /// No answer within the deadline.
    #[error("consul did not answer within the deadline")]
    Timeout(#[source] reqwest::Error),
    /// The answer was not what Consul sends.
    #[error("cannot decode consul's answer at {path}")]
    Decode {
        /// Where in the document decoding failed, such as `[0].Service.Port`.
        path: String,
        /// The decoder's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The answer body was larger than the client accepts.
    #[error("consul's answer is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A setting is unusable.
    #[error("invalid configuration in {setting}: {message}")]
    Config {
        /// The environment variable or setting at fault.
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

// === impl Error ===

impl Error {
    pub(crate) fn config(setting: &'static str, message: impl Into<String>) -> Self {
        Error::Config {
            setting,
            message: message.into(),
        }
    }

    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            Error::Timeout(err)
        } else {
            Error::Transport(err)
        }
    }

    /// The HTTP status Consul answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the same request may succeed later: transport failures, timeouts, 5xx and 429.
    /// A 4xx says the request itself is wrong; a decode failure says the server is not
    /// what we expect; neither improves by retrying.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Timeout(_) => true,
            Error::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            Error::Decode { .. } | Error::TooLarge { .. } | Error::Config { .. } => false,
        }
    }

    /// Whether Consul said the thing asked for does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

impl From<Error> for discovery_core::Error {
    fn from(err: Error) -> Self {
        match &err {
            Error::Status { status, message } => match *status {
                StatusCode::NOT_FOUND => discovery_core::Error::NotFound {
                    what: message.clone(),
                },
                StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                    discovery_core::Error::PermissionDenied {
                        message: message.clone(),
                    }
                }
                s if s.is_client_error() && s != StatusCode::TOO_MANY_REQUESTS => {
                    discovery_core::Error::Rejected {
                        message: message.clone(),
                    }
                }
                _ => discovery_core::Error::unavailable(err),
            },
            Error::Transport(_) | Error::Timeout(_) => discovery_core::Error::unavailable(err),
            _ => discovery_core::Error::other(err),
        }
    }
}
