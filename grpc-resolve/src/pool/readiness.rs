//! Where one endpoint's connection stands: one [`State`] (which for an up connection
//! includes what its server's health service said and whether the server stopped
//! answering) and when its ejection ends, with the rule of whether a call may pick it.
//!
//! May use: `http2` (the connection it holds) and the crate's `metrics` (the state it is
//! counted in).

use tokio::time::Instant;

use super::http2::Connection;
use crate::metrics::EndpointState;

/// Where an endpoint's connection stands.
///
/// The reconnect loop moves it between `Connecting` and `Up`; a call that learns the
/// connection takes no new calls makes it `Stale` (and the loop connects afresh);
/// discovery's removal makes it `Removed`, for good.
pub(super) enum State {
    /// No connection: the reconnect loop is making one, backing off, or waiting out an
    /// ejection.
    Connecting,
    /// Connected: calls may pick it, unless it is ejected, its health service says it
    /// does not serve (or has not answered yet), or it stopped answering calls.
    Up {
        connection: Connection,
        /// Which of the endpoint's connections this is, so that news about one
        /// connection (it takes no new calls, its health, its silence) is not applied to
        /// the next.
        generation: u64,
        /// What the server's health service says on this connection.
        health: Health,
        /// The monitor found its calls stopped completing while others' complete; it is
        /// out of rotation while a probe asks whether the server still answers.
        unresponsive: bool,
    },
    /// The connection takes no new calls (the server sent GOAWAY, or it closed while
    /// streams keep its socket open); the reconnect loop was told to connect afresh.
    Stale,
    /// Left discovery, or the channel is gone: never picked, never connected again.
    Removed,
}

/// What a connection's server says of its health, as its `grpc.health.v1.Health/Watch`
/// stream reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    /// Health checking is on and the stream has not answered yet: not picked (gRFC A17).
    Awaiting,
    /// SERVING, or health checking is off, or the server has no health service, or the
    /// stream failed before it answered.
    Serving,
    /// NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN: not picked until SERVING.
    NotServing,
}

/// The channel's view of an endpoint's server, in [`EndpointInfo::condition`](crate::EndpointInfo::condition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// Not connected, or connected and waiting for the health service's first answer.
    Unknown,
    /// Connected, and serving as far as the channel can tell.
    Serving,
    /// Its health service says it does not serve (NOT_SERVING or SERVICE_UNKNOWN).
    NotServing,
    /// Its calls stopped completing while other endpoints' completed; it is out of
    /// rotation while a probe asks whether it still answers.
    Unresponsive,
}

/// What decides whether a call may pick an endpoint: its [`State`] and its ejection.
pub(super) struct Readiness {
    pub(super) state: State,
    /// Connections made so far: numbers the next one's generation.
    connections: u64,
    /// Until when outlier detection keeps it out of rotation.
    pub(super) ejected_until: Option<Instant>,
}

// === impl Readiness ===

impl Readiness {
    pub(super) fn new() -> Self {
        Readiness {
            state: State::Connecting,
            connections: 0,
            ejected_until: None,
        }
    }

    /// A new connection is up, with the next generation (returned; 0 once removed).
    pub(super) fn connected(&mut self, connection: Connection, health: Health) -> u64 {
        if matches!(self.state, State::Removed) {
            return 0;
        }
        self.connections += 1;
        self.state = State::Up {
            connection,
            generation: self.connections,
            health,
            unresponsive: false,
        };
        self.connections
    }

    /// Applies `change` to the health and the suspicion of connection `generation` if it
    /// is the current one; returns what `change` returns (`false` otherwise).
    pub(super) fn up(
        &mut self,
        generation: u64,
        change: impl FnOnce(&mut Health, &mut bool) -> bool,
    ) -> bool {
        match &mut self.state {
            State::Up {
                generation: up,
                health,
                unresponsive,
                ..
            } if *up == generation => change(health, unresponsive),
            _ => false,
        }
    }

    pub(super) fn condition(&self) -> Condition {
        match self.state {
            State::Up {
                unresponsive: true, ..
            } => Condition::Unresponsive,
            State::Up { health, .. } => match health {
                Health::Awaiting => Condition::Unknown,
                Health::Serving => Condition::Serving,
                Health::NotServing => Condition::NotServing,
            },
            _ => Condition::Unknown,
        }
    }

    /// The connection is gone (it ended, or the reconnect loop dropped it); the loop
    /// connects again.
    pub(super) fn disconnected(&mut self) {
        if matches!(self.state, State::Removed) {
            return;
        }
        self.state = State::Connecting;
    }

    /// Connection `generation` takes no new calls; returns whether it was the current one
    /// (only then does anything change).
    pub(super) fn stale(&mut self, generation: u64) -> bool {
        match self.state {
            State::Up { generation: up, .. } if up == generation => {
                self.state = State::Stale;
                true
            }
            _ => false,
        }
    }

    /// Dropping the connection here drops only the endpoint's handle: calls in flight keep
    /// theirs.
    pub(super) fn remove(&mut self) {
        self.state = State::Removed;
    }

    /// Up, serving, answering, and not ejected.
    pub(super) fn is_usable(&self, now: &mut LazyNow) -> bool {
        matches!(
            self.state,
            State::Up {
                health: Health::Serving,
                unresponsive: false,
                ..
            }
        ) && self.ejected_until.is_none_or(|until| until <= now.get())
    }

    /// The state the metrics count it in; `None` once removed. Reads the clock only while
    /// an ejection is set.
    pub(super) fn metric_state(&self) -> Option<EndpointState> {
        let ejected = self
            .ejected_until
            .is_some_and(|until| until > Instant::now());
        match self.state {
            State::Removed => None,
            _ if ejected => Some(EndpointState::Ejected),
            State::Connecting => Some(EndpointState::Connecting),
            State::Up {
                unresponsive: true, ..
            } => Some(EndpointState::Unresponsive),
            State::Up {
                health: Health::Serving,
                ..
            } => Some(EndpointState::Ready),
            State::Up { .. } => Some(EndpointState::NotServing),
            State::Stale => Some(EndpointState::Stale),
        }
    }

    pub(super) fn connection(&self) -> Option<(Connection, u64)> {
        match &self.state {
            State::Up {
                connection,
                generation,
                ..
            } => Some((connection.clone(), *generation)),
            _ => None,
        }
    }
}

/// The current time, read at most once and only when needed: picking an endpoint needs it
/// only while some endpoint is ejected, and reading the clock is not free on every machine
/// (it traps to the hypervisor on some virtual ones).
#[derive(Debug, Default)]
pub(super) struct LazyNow(Option<Instant>);

// === impl LazyNow ===

impl LazyNow {
    pub(super) fn at(now: Instant) -> Self {
        LazyNow(Some(now))
    }

    pub(super) fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(readiness: &Readiness) -> Option<u64> {
        readiness.connection().map(|(_, generation)| generation)
    }

    #[tokio::test(start_paused = true)]
    async fn connecting_then_up_then_stale_then_connecting_again() {
        let mut readiness = Readiness::new();
        let mut now = LazyNow::default();
        assert!(
            matches!(readiness.state, State::Connecting),
            "a new endpoint starts connecting"
        );
        assert!(
            !readiness.is_usable(&mut now),
            "not usable before connecting"
        );

        readiness.connected(Connection::unanswered().await, Health::Serving);
        assert_eq!(generation(&readiness), Some(1), "the first connection");
        assert!(readiness.is_usable(&mut now), "usable once up");

        assert!(
            !readiness.stale(0),
            "news of another connection changes nothing"
        );
        assert!(readiness.is_usable(&mut now), "still up");
        assert!(readiness.stale(1), "the current connection went stale");
        assert!(matches!(readiness.state, State::Stale), "stale");
        assert!(
            !readiness.is_usable(&mut now),
            "a stale endpoint is not picked"
        );
        assert!(
            !readiness.stale(1),
            "stale once: the news is not applied twice"
        );

        readiness.disconnected();
        assert!(
            matches!(readiness.state, State::Connecting),
            "the loop drops it and connects again"
        );
        readiness.connected(Connection::unanswered().await, Health::Serving);
        assert_eq!(
            generation(&readiness),
            Some(2),
            "a new connection, a new generation"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_while_up_replaces_the_connection_with_a_new_generation() {
        let mut readiness = Readiness::new();
        readiness.connected(Connection::unanswered().await, Health::Serving);
        readiness.connected(Connection::unanswered().await, Health::Serving);
        assert_eq!(generation(&readiness), Some(2), "the second connection");
        assert!(
            !readiness.stale(1),
            "news of the first leaves the second up"
        );
        assert!(
            readiness.is_usable(&mut LazyNow::default()),
            "the second connection is usable"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn removed_is_for_good() {
        let mut readiness = Readiness::new();
        readiness.connected(Connection::unanswered().await, Health::Serving);
        readiness.remove();
        assert!(matches!(readiness.state, State::Removed), "removed");
        assert_eq!(generation(&readiness), None, "its connection is dropped");
        readiness.connected(Connection::unanswered().await, Health::Serving);
        readiness.disconnected();
        assert!(
            matches!(readiness.state, State::Removed),
            "neither a connection nor its loss brings it back"
        );
        assert!(!readiness.stale(1), "nor is staleness news to it");
        assert!(
            !readiness.is_usable(&mut LazyNow::default()),
            "never usable again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejected_connection_is_not_usable_until_the_ejection_ends() {
        let mut readiness = Readiness::new();
        readiness.connected(Connection::unanswered().await, Health::Serving);
        readiness.ejected_until = Some(Instant::now() + std::time::Duration::from_secs(1));
        assert!(
            !readiness.is_usable(&mut LazyNow::default()),
            "up but ejected: not usable"
        );
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(
            readiness.is_usable(&mut LazyNow::default()),
            "usable once the ejection has ended"
        );
    }
}
