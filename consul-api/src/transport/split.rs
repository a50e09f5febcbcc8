//! How a connection budget is spent: a pure rule, so the numbers the README gives are the
//! ones the code uses. Uses nothing else of the crate.
//!
//! Over HTTP/1.1 a connection carries one request at a time, so a blocking query holds a
//! whole connection for up to its wait. The budget is cut in two: most of it for blocking
//! queries, a quarter (one to eight connections) for everything else: writes, TTL reports,
//! reads, and the polls that serve the watches left without a blocking connection. Polls
//! may take at most half of that quarter, so writes never wait behind watches.
//!
//! Over HTTP/2 (an HTTPS agent, which Consul serves with h2) every request is a stream on
//! a shared connection. Go's h2 server lets a connection carry 250 concurrent streams and
//! queues the rest, which for 5-minute blocking queries means minutes; so at most
//! [`STREAMS_PER_CONNECTION`] blocking streams go on one connection, the budget bounds the
//! connections, and the other requests ride on the first connection beside them.

/// Blocking streams per HTTP/2 connection: under the 250 concurrent streams Go's h2 server
/// allows by default, with room for the short requests sharing the connection.
pub(crate) const STREAMS_PER_CONNECTION: usize = 200;

/// Short requests in flight at once over HTTP/2, all on the first connection.
const H2_SHORT_STREAMS: usize = 8;

/// The protocol a transport speaks with its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// Not known yet: an HTTPS agent before its first answer.
    #[default]
    Unknown,
    /// HTTP/1.1: one request at a time per connection.
    Http1,
    /// HTTP/2: many streams on a connection.
    Http2,
}

/// The budget's parts: how many blocking queries may be in flight, how many other requests,
/// how many of those may be polls; and which connection each one uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split {
    pub(crate) protocol: Protocol,
    /// Blocking queries in flight at once.
    pub(crate) blocking: usize,
    /// Other requests in flight at once.
    pub(crate) short: usize,
    /// Of those, polls.
    pub(crate) polls: usize,
}

impl Split {
    /// How `max_connections` is spent over `protocol` (an unknown one is spent as HTTP/1.1).
    pub(crate) fn of(protocol: Protocol, max_connections: usize) -> Split {
        let n = max_connections.max(1);
        match protocol {
            Protocol::Http2 => Split {
                protocol,
                blocking: n * STREAMS_PER_CONNECTION,
                short: H2_SHORT_STREAMS,
                polls: H2_SHORT_STREAMS / 2,
            },
            Protocol::Http1 | Protocol::Unknown => {
                let short = (n / 4).clamp(1, 8);
                Split {
                    protocol,
                    blocking: n.saturating_sub(short),
                    short,
                    polls: (short / 2).max(1),
                }
            }
        }
    }

    /// The connection blocking slot `slot` (below [`Split::blocking`]) uses.
    pub(crate) fn blocking_connection(&self, slot: usize) -> usize {
        match self.protocol {
            Protocol::Http2 => slot / STREAMS_PER_CONNECTION,
            Protocol::Http1 | Protocol::Unknown => slot,
        }
    }

    /// The connection short slot `slot` (below [`Split::short`]) uses.
    pub(crate) fn short_connection(&self, slot: usize) -> usize {
        match self.protocol {
            Protocol::Http2 => 0,
            Protocol::Http1 | Protocol::Unknown => self.blocking + slot,
        }
    }

    /// How many connections these parts may open at most.
    pub(crate) fn connections(&self) -> usize {
        match self.protocol {
            Protocol::Http2 => self.blocking.div_ceil(STREAMS_PER_CONNECTION).max(1),
            Protocol::Http1 | Protocol::Unknown => self.blocking + self.short,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_keeps_twelve_blocking_queries_and_four_other_requests() {
        let split = Split::of(Protocol::Http1, 16);
        assert_eq!((split.blocking, split.short, split.polls), (12, 4, 2));
        assert_eq!(split.connections(), 16, "never more than the budget");
        assert_eq!(
            split.short_connection(0),
            12,
            "short requests after the blocking ones"
        );
    }

    #[test]
    fn every_budget_spends_at_most_itself_and_keeps_one_connection_for_writes() {
        for n in 1..=64 {
            let split = Split::of(Protocol::Http1, n);
            assert_eq!(split.connections(), n, "budget {n}: {split:?}");
            assert!(split.short >= 1, "budget {n}: a connection for writes");
            assert!(
                split.polls < split.short || split.short == 1,
                "budget {n}: polls leave room for writes: {split:?}"
            );
        }
        assert_eq!(
            Split::of(Protocol::Http1, 0).connections(),
            1,
            "0 is read as 1"
        );
    }

    #[test]
    fn over_http2_blocking_streams_fill_one_connection_before_the_next() {
        let split = Split::of(Protocol::Http2, 16);
        assert_eq!(split.blocking, 3200);
        assert_eq!(split.blocking_connection(199), 0);
        assert_eq!(split.blocking_connection(200), 1);
        assert_eq!(
            split.short_connection(3),
            0,
            "short requests ride on the first"
        );
        const { assert!(STREAMS_PER_CONNECTION + H2_SHORT_STREAMS < 250) };
    }
}
