//! The settings of watches: how long a blocking query waits, how loops are spaced and back
//! off, and how often a watch outside the blocking set polls. Uses the core backoff.

use std::time::Duration;

use discovery_core::Backoff;

/// Blocking-query, polling and retry settings of watches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchConfig {
    /// How long one blocking query may wait at the server.
    pub wait: Duration,
    /// Least time between the starts of two queries of one loop.
    pub min_interval: Duration,
    /// The wait after consecutive failures.
    pub backoff: Backoff,
    /// Least time between two polls of a watch outside the blocking set (one whose service
    /// just changed).
    pub min_poll_interval: Duration,
    /// Most time between two polls of a watch outside the blocking set (one whose service has
    /// been quiet for a while): the longest a change to it may go unseen.
    pub max_poll_interval: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            wait: Duration::from_secs(300),
            min_interval: Duration::from_millis(20),
            // A cap low enough that a watch resumes within a second of Consul coming back,
            // high enough that a down agent sees about one request per second per query.
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            min_poll_interval: Duration::from_secs(1),
            max_poll_interval: Duration::from_secs(30),
        }
    }
}

impl WatchConfig {
    /// Sets the blocking wait.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sets the backoff after failures.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the minimum spacing of queries.
    #[must_use]
    pub fn min_interval(mut self, min_interval: Duration) -> Self {
        self.min_interval = min_interval;
        self
    }

    /// Sets the least time between two polls of a watch outside the blocking set.
    #[must_use]
    pub fn min_poll_interval(mut self, interval: Duration) -> Self {
        self.min_poll_interval = interval;
        self
    }

    /// Sets the most time between two polls of a watch outside the blocking set.
    #[must_use]
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }
}
