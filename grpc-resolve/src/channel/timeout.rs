//! A call's time limits: the caller's `grpc-timeout`, the channel's own timeout, and the
//! deadline of the wait for an endpoint.
//!
//! May use: nothing else of the crate.

use std::time::Duration;

use tokio::time::Instant;

/// A call's time limit, if it has one: the shorter of the caller's deadline
/// (`grpc-timeout`) and the channel's own timeout.
pub(super) fn call_limit(headers: &http::HeaderMap, channel: Option<Duration>) -> Option<Duration> {
    let callers = headers
        .get(&GRPC_TIMEOUT)
        .and_then(|v| grpc_timeout(v.as_bytes()));
    match (callers, channel) {
        (Some(callers), Some(channel)) => Some(callers.min(channel)),
        (callers, channel) => callers.or(channel),
    }
}

/// A call's [`Deadline`]. Reading the clock is not free on every machine (it traps to the
/// hypervisor on some virtual ones) and most calls never wait, so for a call without a
/// time limit it is worked out when the call first has to wait: the empty timeout counts
/// from then. A call's limit counts from the call's start.
pub(super) struct LazyDeadline {
    empty_timeout: Duration,
    deadline: Option<Deadline>,
}

// === impl LazyDeadline ===

impl LazyDeadline {
    /// `limit`: when the call started and when it must end, if it has a limit.
    pub(super) fn new(empty_timeout: Duration, limit: Option<(Instant, Instant)>) -> Self {
        LazyDeadline {
            empty_timeout,
            deadline: limit
                .map(|(started, ends)| Deadline::new(empty_timeout, started, Some(ends))),
        }
    }

    pub(super) fn get(&mut self) -> Deadline {
        *self
            .deadline
            .get_or_insert_with(|| Deadline::new(self.empty_timeout, Instant::now(), None))
    }
}

const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// When a call stops waiting for an endpoint: after the channel's empty timeout, or at the
/// end of the call's own time limit if that comes first.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    pub(super) at: Instant,
    pub(super) started: Instant,
    /// Whether `at` is the end of the call's own limit (gRPC then says `DeadlineExceeded`).
    pub(super) callers: bool,
}

// === impl Deadline ===

impl Deadline {
    fn new(empty_timeout: Duration, started: Instant, call_ends: Option<Instant>) -> Self {
        let empty = started + empty_timeout;
        match call_ends {
            Some(ends) if ends < empty => Deadline {
                at: ends,
                started,
                callers: true,
            },
            _ => Deadline {
                at: empty,
                started,
                callers: false,
            },
        }
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(grpc_timeout(b"5S"), Some(Duration::from_secs(5)), "seconds");
        assert_eq!(
            grpc_timeout(b"250m"),
            Some(Duration::from_millis(250)),
            "millis"
        );
        assert_eq!(
            grpc_timeout(b"2H"),
            Some(Duration::from_secs(7200)),
            "hours"
        );
        assert_eq!(
            grpc_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999)),
            "nanos"
        );
        for bad in [&b""[..], b"S", b"5", b"5s", b"123456789S", b"-1S", b"1.5S"] {
            assert_eq!(
                grpc_timeout(bad),
                None,
                "{:?} is not a grpc-timeout",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        /// Any header value parses or is refused without a panic; every well-formed one
        /// means its digits in its unit.
        #[test]
        fn any_grpc_timeout_value_parses_or_is_refused(value in proptest::collection::vec(proptest::num::u8::ANY, 0..12)) {
            let _ = grpc_timeout(&value);
        }

        #[test]
        fn well_formed_grpc_timeouts_mean_their_digits(n in 0u64..100_000_000, unit in 0usize..6) {
            let (letter, per) = [
                ('H', Duration::from_secs(3600)),
                ('M', Duration::from_secs(60)),
                ('S', Duration::from_secs(1)),
                ('m', Duration::from_millis(1)),
                ('u', Duration::from_micros(1)),
                ('n', Duration::from_nanos(1)),
            ][unit];
            let value = format!("{n}{letter}");
            let expected = per.checked_mul(u32::try_from(n).expect("under 10^8"));
            proptest::prop_assert_eq!(grpc_timeout(value.as_bytes()), expected, "{}", value);
        }
    }
}
