//! One attempt of a call on one picked endpoint: wait for the connection to take the
//! stream, send, and say what the outcome allows ([`Attempt`]). Whether to try again, and
//! where, is the caller's: the retry loop and the hedging race both send through here.
//!
//! May use: `body` (the call counted on its endpoint), `classify`; below the channel, the
//! pool, `replay` and `error`.

use std::sync::Arc;

use tokio::time::Instant;
use tonic::body::Body;

use super::body::{InFlight, ResponseBody};
use super::classify::{self, Verdict};
use crate::error::{BoxError, DisplayChain, Error};
use crate::pool::{Picked, Pool};
use crate::replay::ReplayBody;

/// How one attempt ended.
pub(super) enum Attempt {
    /// An answer for the caller, success or not.
    Answered(http::Response<Body>),
    /// The server answered `Unavailable` without a body (draining, overloaded): another
    /// endpoint may take the call once the request can be sent again.
    Unavailable(http::Response<Body>),
    /// The request provably did not reach the server; the body is given back when the
    /// attempt had not taken it yet.
    NotSent(Error, Option<ReplayBody>),
    /// The call failed in transport after it may have reached the server.
    Failed(Error),
}

// === impl Attempt ===

impl Attempt {
    /// Whether this outcome ends a hedging race: an answer does, a failure that another
    /// attempt may still beat does not.
    pub(super) fn wins(&self) -> bool {
        matches!(self, Attempt::Answered(_))
    }

    /// Whether another endpoint may take the call: the request did not reach the server,
    /// or the server refused it with `Unavailable`.
    pub(super) fn may_go_elsewhere(&self) -> bool {
        matches!(self, Attempt::NotSent(..) | Attempt::Unavailable(_))
    }

    /// The request's body, if the attempt never took it.
    pub(super) fn take_body(&mut self) -> Option<ReplayBody> {
        match self {
            Attempt::NotSent(_, body) => body.take(),
            _ => None,
        }
    }

    /// What the caller gets when no other attempt follows.
    pub(super) fn into_result(self) -> Result<http::Response<Body>, Error> {
        match self {
            Attempt::Answered(response) | Attempt::Unavailable(response) => Ok(response),
            Attempt::NotSent(error, _) | Attempt::Failed(error) => Err(error),
        }
    }
}

/// Sends `body` with the head `parts` to `picked`. `timed_out_after`: the instant after
/// which the attempt, dropped unanswered, timed out on its endpoint (and counts against
/// it).
pub(super) async fn send(
    pool: &Arc<Pool>,
    picked: Picked,
    parts: http::request::Parts,
    body: ReplayBody,
    timed_out_after: Option<Instant>,
) -> Attempt {
    let mut call = InFlight::new(pool.clone(), picked, timed_out_after);
    // The connection fails readiness only once it has closed; the request is still ours,
    // so another endpoint can take it.
    if let Err(error) = call.connection.ready().await {
        call.judge(Verdict::Unavailable);
        pool.connection_stale(call.endpoint(), call.generation);
        tracing::debug!(service = %pool.service, endpoint = %call.endpoint().id, %error, "endpoint connection closed");
        let error = Error::transport(&call.endpoint().id, tonic::Code::Unavailable, error.into());
        return Attempt::NotSent(error, Some(body));
    }
    match call.connection.send(parts, body).await {
        Ok(response) => {
            call.answered();
            let (head, response_body) = response.into_parts();
            let mut unavailable = false;
            if let Some(verdict) = classify::verdict(&head.headers) {
                // A trailers-only answer: the status is all there is.
                call.judge(verdict);
                unavailable = verdict == Verdict::Unavailable;
            } else if matches!(head.status.as_u16(), 502..=504) {
                call.judge(Verdict::Unavailable);
            }
            let response_body = Body::new(ResponseBody::new(response_body, call));
            let response = http::Response::from_parts(head, response_body);
            if unavailable {
                Attempt::Unavailable(response)
            } else {
                Attempt::Answered(response)
            }
        }
        Err(error) => {
            call.judge(Verdict::Unavailable);
            let error: BoxError = error.into();
            if classify::connection_done(&*error) {
                pool.connection_stale(call.endpoint(), call.generation);
            }
            tracing::debug!(service = %pool.service, endpoint = %call.endpoint().id, error = %DisplayChain(&*error), "call failed in transport");
            let never_sent = classify::never_sent(&*error);
            let code = classify::transport_code(&*error);
            let error = Error::transport(&call.endpoint().id, code, error);
            if never_sent {
                Attempt::NotSent(error, None)
            } else {
                Attempt::Failed(error)
            }
        }
    }
}
