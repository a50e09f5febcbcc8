//! What an attempt's outcome says: about the endpoint (a [`Verdict`] from the gRPC status),
//! about the request (whether a transport error proves it never reached the server, or
//! that the connection takes no new calls), and to the caller (the gRPC code a transport
//! error stands for, [`transport_code`]).
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

/// The gRPC code a failed attempt's transport error stands for, by gRPC's HTTP/2 mapping
/// (PROTOCOL-HTTP2.md, "Errors"): a stream the server reset maps by its reason
/// (`REFUSED_STREAM` is `Unavailable`, `CANCEL` is `Cancelled`, `ENHANCE_YOUR_CALM` is
/// `ResourceExhausted`, `INADEQUATE_SECURITY` is `PermissionDenied`, the protocol errors
/// are `Internal`); a `tonic::Status` in the chain (the request's own body failed) keeps
/// its code; everything else is the connection breaking (reset, closed, a GOAWAY with an
/// error, an unanswered keepalive) and is `Unavailable`, never tonic's `Unknown`: the call
/// may well succeed on another endpoint.
pub(super) fn transport_code(error: &(dyn std::error::Error + 'static)) -> tonic::Code {
    for cause in std::iter::successors(Some(error), |error| error.source()) {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            return status.code();
        }
        if let Some(h2) = cause.downcast_ref::<h2::Error>()
            && h2.is_reset()
            && h2.is_remote()
        {
            return reset_code(h2.reason());
        }
    }
    tonic::Code::Unavailable
}

/// The gRPC code of a stream reset by the server with `reason`.
fn reset_code(reason: Option<h2::Reason>) -> tonic::Code {
    use h2::Reason;
    match reason {
        Some(Reason::REFUSED_STREAM) => tonic::Code::Unavailable,
        Some(Reason::CANCEL) => tonic::Code::Cancelled,
        Some(Reason::ENHANCE_YOUR_CALM) => tonic::Code::ResourceExhausted,
        Some(Reason::INADEQUATE_SECURITY) => tonic::Code::PermissionDenied,
        Some(
            Reason::NO_ERROR
            | Reason::PROTOCOL_ERROR
            | Reason::INTERNAL_ERROR
            | Reason::FLOW_CONTROL_ERROR
            | Reason::SETTINGS_TIMEOUT
            | Reason::FRAME_SIZE_ERROR
            | Reason::COMPRESSION_ERROR
            | Reason::CONNECT_ERROR,
        ) => tonic::Code::Internal,
        _ => tonic::Code::Unknown,
    }
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
    fn a_broken_connection_is_unavailable_and_a_reset_stream_maps_by_its_reason() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(
            transport_code(&reset),
            tonic::Code::Unavailable,
            "a connection reset is Unavailable"
        );
        let local = h2::Error::from(h2::Reason::CANCEL);
        assert_eq!(
            transport_code(&local),
            tonic::Code::Unavailable,
            "a reset made here is not the server's word: the connection's fate decides"
        );
        let status = tonic::Status::resource_exhausted("too big");
        assert_eq!(
            transport_code(&status),
            tonic::Code::ResourceExhausted,
            "a status in the chain keeps its code"
        );
        assert_eq!(
            reset_code(Some(h2::Reason::CANCEL)),
            tonic::Code::Cancelled,
            "CANCEL"
        );
        assert_eq!(
            reset_code(Some(h2::Reason::REFUSED_STREAM)),
            tonic::Code::Unavailable,
            "REFUSED_STREAM"
        );
        assert_eq!(
            reset_code(Some(h2::Reason::INTERNAL_ERROR)),
            tonic::Code::Internal,
            "INTERNAL_ERROR"
        );
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
