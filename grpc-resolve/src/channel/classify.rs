//! What an attempt's outcome says: about the endpoint (a [`Verdict`] from the gRPC status),
//! and about the request (whether a transport error proves it never reached the server,
//! or that the connection takes no new calls).
//!
//! May use: nothing else of the crate.

use http::HeaderMap;

/// What a call's answer says about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The endpoint is fine (whatever the call's own status).
    Healthy,
    /// The endpoint answered, with a status that is the server's fault (`Unknown`,
    /// `Internal`, `DataLoss`): it counts for the endpoint's failure rate, not as a failure
    /// in a row (the endpoint is reachable).
    Faulted,
    /// The endpoint answered `Unavailable` (or a gateway error): count it against it.
    Unavailable,
}

/// Reads the `grpc-status` of a header or trailer map, if there is one.
pub(super) fn verdict(headers: &HeaderMap) -> Option<Verdict> {
    const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    let status = headers.get(&GRPC_STATUS)?;
    Some(match status.as_bytes() {
        b"14" => Verdict::Unavailable,
        // Unknown, Internal, DataLoss. Not DeadlineExceeded: the deadline is the caller's
        // choice, so a tight one would eject healthy endpoints, and an endpoint that stops
        // answering is caught by its calls' age instead.
        b"2" | b"13" | b"15" => Verdict::Faulted,
        _ => Verdict::Healthy,
    })
}

/// Whether a transport error proves the request never reached the server's application:
/// hyper gave the request back before dispatching it, or the server's HTTP/2 layer said it
/// did not process the stream.
pub(super) fn never_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    any_cause(error, |error| {
        error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
            || error.downcast_ref::<h2::Error>().is_some_and(unprocessed)
    })
}

/// Whether a transport error shows the endpoint's connection takes no new calls, though
/// streams still in flight may keep its socket open: hyper says the connection closed, or
/// the server's GOAWAY came.
pub(super) fn connection_done(error: &(dyn std::error::Error + 'static)) -> bool {
    any_cause(error, |error| {
        error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
            || error
                .downcast_ref::<h2::Error>()
                .is_some_and(|e| e.is_go_away() && e.is_remote())
    })
}

/// Whether `error` or any error in its chain of sources satisfies `test`.
fn any_cause(
    error: &(dyn std::error::Error + 'static),
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    std::iter::successors(Some(error), |error| error.source()).any(test)
}

/// Whether an HTTP/2 error says the server did not process the stream (RFC 9113 §8.7):
/// it reset the stream with `REFUSED_STREAM` (overloaded, or shutting down), or its
/// graceful `GOAWAY` came before the stream (h2 gives that error only to streams above the
/// GOAWAY's last stream id and to streams opened after it; streams the server did accept
/// see the connection close instead).
fn unprocessed(error: &h2::Error) -> bool {
    error.is_remote()
        && match error.reason() {
            Some(h2::Reason::REFUSED_STREAM) => error.is_reset(),
            Some(h2::Reason::NO_ERROR) => error.is_go_away(),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_faults_count_for_the_failure_rate_and_the_callers_do_not() {
        let status = |code: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", http::HeaderValue::from_static(code));
            verdict(&headers)
        };
        assert_eq!(status("14"), Some(Verdict::Unavailable), "Unavailable");
        for code in ["2", "13", "15"] {
            assert_eq!(
                status(code),
                Some(Verdict::Faulted),
                "Unknown, Internal, DataLoss: {code}"
            );
        }
        for code in ["0", "3", "4", "5", "7", "8", "12", "16"] {
            assert_eq!(
                status(code),
                Some(Verdict::Healthy),
                "OK, the caller's codes and DeadlineExceeded: {code}"
            );
        }
        assert_eq!(verdict(&HeaderMap::new()), None, "no status yet");
    }

    #[test]
    fn only_a_refusal_from_the_server_means_unprocessed() {
        // Made here, not received from the server: it says nothing about what the server
        // did.
        let local = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(
            !unprocessed(&local),
            "a locally made REFUSED_STREAM proves nothing"
        );
        assert!(
            !never_sent(&local),
            "nor does it mean never sent when it is the cause"
        );
    }
}
