//! The protocol rules of a watch loop as small pure functions, tested without a server:
//! which index to block on, how long to wait before the next query, when an agent is
//! answering blocking queries at once without anything changing, and how often a watch
//! outside the blocking set polls. Uses the watch settings.

use std::time::Duration;

use super::config::WatchConfig;

/// Answers in a row that came back early with an unchanged index before a loop slows down.
pub(crate) const EARLY_ANSWERS: u32 = 3;

/// The least time between two queries of a loop whose agent answers blocking queries at
/// once without the index moving: at most one request a second per watch, instead of one
/// per `min_interval`.
pub(crate) const BROKEN_AGENT_SPACING: Duration = Duration::from_secs(1);

/// The index to block on next, given the one we sent and the one Consul returned.
pub(crate) fn next_index(sent: u64, returned: u64) -> u64 {
    // Never block on 0: it would return at once, every time. Read a 0 as 1 first, so a
    // server that always says 0 is not mistaken for one whose index went backwards.
    let returned = returned.max(1);
    if returned < sent {
        // Went backwards: the data was reset; read afresh.
        0
    } else {
        returned
    }
}

/// Whether a blocking query (one sent with an index) came back with the same index in
/// less than half its wait: Consul holds such a query until the index moves or the wait
/// ends, so an agent that does this is broken (or a proxy in between is).
pub(crate) fn answered_early(sent: u64, returned: u64, took: Duration, wait: Duration) -> bool {
    sent > 0 && returned.max(1) == sent && took < wait / 2
}

/// How long after the start of its last query a loop sends the next: the backoff after
/// `failures` failures in a row, one second after [`EARLY_ANSWERS`] early answers in a row,
/// else `min_interval`. A real change resets both counts, so changes are never slowed.
pub(crate) fn spacing(config: &WatchConfig, failures: u32, early: u32) -> Duration {
    if failures > 0 {
        config
            .backoff
            .delay(failures.saturating_sub(1))
            .max(config.min_interval)
    } else if early >= EARLY_ANSWERS {
        BROKEN_AGENT_SPACING.max(config.min_interval)
    } else {
        config.min_interval
    }
}

/// How long a watch outside the blocking set waits between two polls, given how long its
/// service has been quiet: a quarter of that, within the configured bounds. A service that
/// just changed is likely to change again soon (a rolling restart moves it many times in a
/// few minutes); one quiet for an hour is not, and polling it often would cost the agent for
/// nothing.
pub(crate) fn poll_interval(quiet: Duration, min: Duration, max: Duration) -> Duration {
    (quiet / 4).clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use discovery_core::Backoff;

    use super::*;

    #[test]
    fn index_hygiene() {
        assert_eq!(next_index(0, 0), 1, "a zero index is read as 1");
        assert_eq!(next_index(1, 0), 1, "a zero after 1 is no reset");
        assert_eq!(next_index(0, 42), 42);
        assert_eq!(next_index(42, 42), 42, "unchanged: block again");
        assert_eq!(next_index(42, 7), 0, "backwards: start over");
    }

    #[test]
    fn an_answer_is_early_only_if_it_blocked_and_came_back_unchanged_before_half_its_wait() {
        let wait = Duration::from_secs(300);
        let soon = Duration::from_millis(5);
        assert!(answered_early(42, 42, soon, wait));
        assert!(
            !answered_early(42, 43, soon, wait),
            "the index moved: a change"
        );
        assert!(
            !answered_early(0, 42, soon, wait),
            "a read that did not block"
        );
        assert!(
            !answered_early(42, 42, Duration::from_secs(301), wait),
            "the wait ran out: Consul's normal answer"
        );
        assert!(answered_early(1, 0, soon, wait), "a 0 stands for 1");
    }

    #[test]
    fn spacing_is_the_backoff_after_failures_a_second_for_a_broken_agent_else_the_minimum() {
        let config = WatchConfig::default()
            .min_interval(Duration::from_millis(20))
            .backoff(Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(1),
            ));
        assert_eq!(spacing(&config, 0, 0), Duration::from_millis(20));
        assert_eq!(
            spacing(&config, 0, EARLY_ANSWERS - 1),
            Duration::from_millis(20)
        );
        assert_eq!(spacing(&config, 0, EARLY_ANSWERS), Duration::from_secs(1));
        let after_failure = spacing(&config, 1, 0);
        assert!(
            after_failure >= Duration::from_millis(50)
                && after_failure <= Duration::from_millis(100),
            "first retry within the backoff's first ceiling: {after_failure:?}"
        );
    }

    #[test]
    fn a_quiet_service_is_polled_less_often_within_bounds() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(poll_interval(Duration::ZERO, min, max), min);
        assert_eq!(
            poll_interval(Duration::from_secs(40), min, max),
            Duration::from_secs(10)
        );
        assert_eq!(poll_interval(Duration::from_secs(3600), min, max), max);
        assert_eq!(
            poll_interval(Duration::from_secs(3600), min, Duration::ZERO),
            min,
            "a maximum below the minimum is raised to it"
        );
    }
}
