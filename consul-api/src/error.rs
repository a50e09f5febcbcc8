//! The one error type of the client, its mapping onto discovery-core's, and the crate's
//! error-chain formatter. Uses nothing else of the crate.

use http::StatusCode;

/// `Box<dyn Error + Send + Sync>`, as tower means it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    /// The request did not complete: connection refused or reset, DNS failure (the cause
    /// is the HTTP client's error, or an [`Exchange`](crate::Exchange)'s).
    #[error("cannot reach consul")]
    Transport(#[source] BoxError),
    /// No answer within the deadline.
    #[error("consul did not answer within the deadline")]
    Timeout(#[source] BoxError),
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
            Error::Timeout(Box::new(err))
        } else {
            Error::Transport(Box::new(err))
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
            Error::Decode { .. } | Error::TooLarge { .. } => discovery_core::Error::invalid(err),
            Error::Config { .. } => discovery_core::Error::other(err),
        }
    }
}

/// What an error is about: its causes, outermost first, joined by `": "`, without its own
/// message, which for some (reqwest's "builder error") says nothing; its own message when it
/// has no cause. The crate's one formatter of an error chain.
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = Vec::new();
    let mut cause = err.source();
    while let Some(err) = cause {
        text.push(err.to_string());
        cause = err.source();
    }
    if text.is_empty() {
        err.to_string()
    } else {
        text.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_error() -> Error {
        Error::Decode {
            path: "[0].Service.Port".into(),
            source: serde_json::from_str::<u16>("\"eighty\"").unwrap_err(),
        }
    }

    #[test]
    fn an_unusable_answer_is_not_retryable_on_either_side_of_the_boundary() {
        for err in [decode_error(), Error::TooLarge { limit: 10 }] {
            assert!(!err.is_retryable(), "{err} is not retryable here");
            let core = discovery_core::Error::from(err);
            assert!(
                matches!(core, discovery_core::Error::Invalid(_)) && !core.is_retryable(),
                "an unusable answer stays not retryable in the core: {core:?}"
            );
        }
    }

    #[test]
    fn statuses_map_to_the_core_kinds() {
        let status = |code: u16| Error::Status {
            status: StatusCode::from_u16(code).unwrap(),
            message: "m".into(),
        };
        let kinds = [404, 403, 400, 429, 500].map(|code| discovery_core::Error::from(status(code)));
        assert!(kinds[0].is_not_found(), "404: {:?}", kinds[0]);
        assert!(
            matches!(kinds[1], discovery_core::Error::PermissionDenied { .. }),
            "403: {:?}",
            kinds[1]
        );
        assert!(
            matches!(kinds[2], discovery_core::Error::Rejected { .. }),
            "400: {:?}",
            kinds[2]
        );
        assert!(
            kinds[3].is_retryable() && kinds[4].is_retryable(),
            "429 and 500 retry"
        );
    }
}
