//! What can go wrong: the crate's [`Error`] (starting the agent), [`HttpError`] (an error
//! answered to a client as Consul answers them, a status and plain text, see [`text`]),
//! and [`chain`], the one way an error and its causes are spelled. Uses only `wire`'s
//! decode error.

use std::error::Error as StdError;
use std::net::SocketAddr;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::wire::DecodeError;

// === Error ===

/// Errors starting or running the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP listener could not be bound.
    #[error("failed to bind {addr}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bound listener's address could not be read.
    #[error("failed to read the listener's address")]
    LocalAddr(#[source] std::io::Error),
    /// The HTTPS certificate or key ([`Config::https`](crate::Config::https)) is unusable.
    #[error("unusable HTTPS certificate or key")]
    Https(#[source] Box<dyn StdError + Send + Sync>),
    /// The HTTP client used by HTTP checks could not be built (or the CA for checks,
    /// [`Config::check_tls_ca`](crate::Config::check_tls_ca), is not PEM).
    #[error("failed to build the HTTP check client")]
    Client(#[source] Box<reqwest::Error>),
    /// The CA for checks ([`Config::check_tls_ca`](crate::Config::check_tls_ca)) is
    /// unusable for gRPC checks over TLS.
    #[error("unusable CA certificate for TLS checks")]
    CheckTls(#[source] Box<dyn StdError + Send + Sync>),
}

// === HttpError ===

/// An error answered as Consul does: a status and a plain-text body.
#[derive(Debug)]
pub(crate) struct HttpError {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, body: impl Into<String>) -> HttpError {
        HttpError {
            status,
            body: body.into(),
        }
    }
    pub(crate) fn bad_request(body: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, body)
    }
    pub(crate) fn not_found(body: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, body)
    }
    pub(crate) fn forbidden(body: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::FORBIDDEN, body)
    }
    pub(crate) fn internal(body: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, body)
    }
    /// The `Request decode failed: ...` 400.
    pub(crate) fn decode(e: DecodeError) -> HttpError {
        HttpError::bad_request(format!("Request decode failed: {}", e.0))
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        text(self.status, self.body)
    }
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A handler's outcome: its answer, or the error it answers with.
pub(crate) type Result<T, E = HttpError> = std::result::Result<T, E>;

// === Causes ===

/// `e` and its causes, outermost first.
pub(crate) fn causes<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&c| c.source())
}

/// `e` and its causes joined with `": "`, like Go's wrapped error strings.
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    causes(e)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
