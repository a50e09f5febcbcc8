//! Whether an endpoint's calls still complete, measured at almost no cost per call: a
//! coarse pool-wide [`Clock`] that the monitor advances, and each endpoint's [`Progress`]
//! stamped with it when a call is sent and when an answer comes.
//!
//! A call reads the clock (one relaxed load) instead of the system time, and touches two
//! counters of its endpoint. From them the monitor knows, for each endpoint, since when
//! it has had calls waiting and no answer (a lower bound on the age of its oldest call
//! in flight), when it last answered, and the pool's recent answer time.
//!
//! May use: nothing else of the crate.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// One tick of the coarse clock: how often the monitor wakes, and the precision of every
/// figure here.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// The pool's coarse clock, in [`TICK`]s since the monitor started.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    ticks: AtomicU64,
    /// The recent answer time (from send to response headers) in ticks, times 16: an
    /// exponentially weighted mean with weight 1/8 for each new answer.
    latency_x16: AtomicU64,
}

// === impl Clock ===

impl Clock {
    /// The tick now.
    pub(crate) fn now(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// The monitor moves the clock to `ticks`.
    pub(crate) fn set(&self, ticks: u64) {
        self.ticks.store(ticks, Ordering::Relaxed);
    }

    /// An answer came `ticks` after its call was sent. Fast services (answers within a
    /// tick) never write: the mean stays 0.
    fn answered_after(&self, ticks: u64) {
        let old = self.latency_x16.load(Ordering::Relaxed);
        let new = old - old.div_ceil(8) + ticks.saturating_mul(2);
        if new != old {
            // Racing updates lose a sample now and then; a mean does not mind.
            self.latency_x16.store(new, Ordering::Relaxed);
        }
    }

    /// The recent mean answer time, in ticks (rounded up).
    pub(crate) fn latency(&self) -> u64 {
        self.latency_x16.load(Ordering::Relaxed).div_ceil(16)
    }
}

/// One endpoint's calls waiting for an answer, and when it last made progress.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Calls sent whose response headers have not come (nor has their end).
    waiting: AtomicUsize,
    /// The tick since which it has had calls waiting and given no answer: the last answer,
    /// or the call that found none waiting.
    since: AtomicU64,
    /// The tick of its last answer.
    answered: AtomicU64,
    /// Probes it answered since a call of its own last got an answer: each doubles the
    /// silence it is allowed, so a long call (a client stream whose answer comes at its
    /// end) is not probed over and over.
    excused: AtomicU32,
}

/// What the monitor reads of an endpoint's [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Calls waiting for an answer.
    pub(crate) waiting: usize,
    /// Since when it has answered nothing while calls waited (meaningful with `waiting`).
    pub(crate) since: u64,
    /// Its last answer.
    pub(crate) answered: u64,
    /// Probes answered since its last answer to a call.
    pub(crate) excused: u32,
}

// === impl Progress ===

impl Progress {
    /// A call was sent at tick `now`.
    pub(crate) fn sent(&self, now: u64) {
        if self.waiting.fetch_add(1, Ordering::Relaxed) == 0 {
            self.since.store(now, Ordering::Relaxed);
        }
    }

    /// The call sent at tick `sent` got its answer (response headers) at tick `now`.
    pub(crate) fn answered(&self, clock: &Clock, sent: u64, now: u64) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if self.answered.load(Ordering::Relaxed) != now {
            self.answered.store(now, Ordering::Relaxed);
            self.since.store(now, Ordering::Relaxed);
            if self.excused.load(Ordering::Relaxed) != 0 {
                self.excused.store(0, Ordering::Relaxed);
            }
        }
        clock.answered_after(now.saturating_sub(sent));
    }

    /// A call sent ended without an answer (it failed, timed out or was dropped).
    pub(crate) fn abandoned(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// A new connection: nothing waits on it yet, and its silence starts now.
    pub(crate) fn restart(&self, now: u64) {
        self.since.store(now, Ordering::Relaxed);
        self.answered.store(now, Ordering::Relaxed);
        self.excused.store(0, Ordering::Relaxed);
    }

    /// It answered a probe at tick `now`: its silence starts afresh, and it may stay silent
    /// twice as long before the next suspicion.
    pub(crate) fn excuse(&self, now: u64) {
        self.since.store(now, Ordering::Relaxed);
        self.answered.store(now, Ordering::Relaxed);
        self.excused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn seen(&self) -> Seen {
        Seen {
            waiting: self.waiting.load(Ordering::Relaxed),
            since: self.since.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            excused: self.excused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_starts_with_the_first_waiting_call_and_ends_with_an_answer() {
        let clock = Clock::default();
        let progress = Progress::default();
        progress.sent(3);
        progress.sent(5);
        assert_eq!(
            progress.seen(),
            Seen {
                waiting: 2,
                since: 3,
                answered: 0,
                excused: 0
            },
            "silent since the first call that found none waiting"
        );
        progress.answered(&clock, 3, 9);
        assert_eq!(
            progress.seen(),
            Seen {
                waiting: 1,
                since: 9,
                answered: 9,
                excused: 0
            },
            "an answer is progress: the silence restarts"
        );
        progress.abandoned();
        progress.sent(12);
        assert_eq!(
            progress.seen().since,
            12,
            "with none waiting, the next call starts the silence"
        );
    }

    #[test]
    fn the_mean_answer_time_follows_slow_answers_and_ignores_fast_ones() {
        let clock = Clock::default();
        let progress = Progress::default();
        for _ in 0..100 {
            progress.sent(0);
            progress.answered(&clock, 0, 0);
        }
        assert_eq!(clock.latency(), 0, "answers within a tick");
        for _ in 0..100 {
            progress.sent(0);
            progress.answered(&clock, 0, 4);
        }
        assert_eq!(clock.latency(), 4, "answers after 4 ticks");
    }
}
