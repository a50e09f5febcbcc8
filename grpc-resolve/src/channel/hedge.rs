//! Hedged calls: when a call's attempt has not answered within a delay, the same request
//! goes to another endpoint as well, and the first answer wins (gRPC's hedging policy,
//! gRFC A6; Finagle's backup requests). [`Hedging`] is what the channel is configured
//! with; [`race`] runs the attempts of one call, knowing nothing of HTTP.
//!
//! May use: nothing else of the crate.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, sleep_until};

/// The most attempts one hedged call may make, as in gRPC.
const MAX_ATTEMPTS: usize = 5;

/// Which calls are hedged and how: set with
/// [`Builder::hedging`](crate::Builder::hedging).
///
/// A hedged call is sent to one endpoint; if no answer (response headers) came after
/// `delay`, it is sent to another endpoint too, and again after each further `delay`, up
/// to `max_attempts` attempts on as many endpoints. The first answer wins and the other
/// attempts are cancelled. An attempt that fails in transport or is answered `Unavailable`
/// without a body does not win: the others go on, and the next attempt starts at once.
///
/// Hedging sends one request to several servers, so only hedge methods that are safe to
/// run twice (idempotent). Each attempt after the first needs the retry budget's leave,
/// so a slow fleet sees at most the budget's extra traffic. Requests whose body has not
/// been sent whole (a client stream still sending) or is larger than 64 KiB are not
/// hedged. An attempt that was cancelled unanswered after running `delay` or more counts
/// as a timeout of its endpoint for outlier detection.
///
/// ```
/// use std::time::Duration;
/// use grpc_resolve::Hedging;
///
/// let hedging = Hedging::after(Duration::from_millis(20))
///     .max_attempts(3)
///     .method("/adder.Adder/Add");
/// assert!(hedging.applies("/adder.Adder/Add"));
/// assert!(!hedging.applies("/adder.Adder/Sum"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hedging {
    delay: Duration,
    max_attempts: usize,
    /// Paths hedged (`/pkg.Service/Method`), or whole services (`/pkg.Service/`); empty
    /// means every call.
    methods: Vec<String>,
}

/// What one call needs of the policy.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) delay: Duration,
    pub(super) max_attempts: usize,
}

// === impl Hedging ===

impl Hedging {
    /// Hedges every call of the channel after `delay` without an answer, with at most two
    /// attempts. Choose a delay above the service's usual p95 or p99 answer time: lower
    /// hedges ordinary calls, higher waits longer before a stuck call gets help.
    pub fn after(delay: Duration) -> Self {
        Hedging {
            delay,
            max_attempts: 2,
            methods: Vec::new(),
        }
    }

    /// At most `n` attempts per call, the first included (brought within 2 to 5, as gRPC).
    pub fn max_attempts(mut self, n: usize) -> Self {
        self.max_attempts = n.clamp(2, MAX_ATTEMPTS);
        self
    }

    /// Hedges only this method (`/pkg.Service/Method`) or, with a trailing slash, every
    /// method of this service (`/pkg.Service/`); repeatable. Without any, every call is
    /// hedged.
    pub fn method(mut self, path: impl Into<String>) -> Self {
        self.methods.push(path.into());
        self
    }

    /// Whether a call to `path` is hedged.
    pub fn applies(&self, path: &str) -> bool {
        self.methods.is_empty()
            || self.methods.iter().any(|method| {
                if method.ends_with('/') {
                    path.starts_with(method.as_str())
                } else {
                    path == method
                }
            })
    }

    pub(super) fn plan(&self) -> Plan {
        Plan {
            delay: self.delay,
            max_attempts: self.max_attempts,
        }
    }
}

/// Runs one call's attempts: `first`, and another from `next` each time `plan.delay`
/// passes without an answer or an attempt ends without winning, while fewer than
/// `plan.max_attempts` started. `next` returns `None` when no attempt can start now (no
/// other endpoint, no budget, no body to send again); the race then tries again after the
/// next delay. `wins` tells an answer that ends the race from a failure that lets the
/// others go on.
///
/// Returns the first winning outcome; when every attempt ended without winning and no
/// other can start, the last outcome. Attempts still running when it returns are dropped.
pub(super) async fn race<T, F>(
    plan: Plan,
    first: F,
    mut next: impl FnMut() -> Option<F>,
    wins: impl Fn(&T) -> bool,
) -> T
where
    F: Future<Output = T>,
{
    let mut running = FuturesUnordered::new();
    running.push(first);
    let mut started = 1;
    let timer = sleep_until(Instant::now() + plan.delay);
    let mut timer = pin!(timer);
    loop {
        let more = started < plan.max_attempts;
        tokio::select! {
            biased;
            Some(outcome) = running.next() => {
                if wins(&outcome) {
                    return outcome;
                }
                if more && let Some(attempt) = next() {
                    running.push(attempt);
                    started += 1;
                    timer.as_mut().reset(Instant::now() + plan.delay);
                } else if running.is_empty() {
                    return outcome;
                }
            }
            () = timer.as_mut(), if more => {
                if let Some(attempt) = next() {
                    running.push(attempt);
                    started += 1;
                }
                timer.as_mut().reset(Instant::now() + plan.delay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// An attempt that ends after `after` with `outcome` (`Ok` wins, `Err` does not).
    async fn attempt(after: Duration, outcome: Result<u32, u32>) -> Result<u32, u32> {
        tokio::time::sleep(after).await;
        outcome
    }

    fn plan(delay_ms: u64, max_attempts: usize) -> Plan {
        Plan {
            delay: Duration::from_millis(delay_ms),
            max_attempts,
        }
    }

    /// Races `first` and the attempts of `later`, in order; returns the outcome, when it
    /// came, and how many attempts started.
    async fn run(
        plan: Plan,
        first: (u64, Result<u32, u32>),
        later: &[(u64, Result<u32, u32>)],
    ) -> (Result<u32, u32>, Duration, usize) {
        let started = Instant::now();
        let later = RefCell::new(later.iter());
        let count = RefCell::new(1);
        let outcome = race(
            plan,
            attempt(Duration::from_millis(first.0), first.1),
            || {
                let (after, outcome) = later.borrow_mut().next()?;
                *count.borrow_mut() += 1;
                Some(attempt(Duration::from_millis(*after), *outcome))
            },
            Result::is_ok,
        )
        .await;
        (outcome, started.elapsed(), count.into_inner())
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_within_the_delay_starts_no_hedge() {
        let (outcome, took, attempts) = run(plan(50, 3), (10, Ok(1)), &[(1, Ok(2))]).await;
        assert_eq!((outcome, attempts), (Ok(1), 1), "no hedge");
        assert_eq!(took, Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_attempt_is_overtaken_by_its_hedge() {
        let (outcome, took, attempts) =
            run(plan(50, 2), (10_000, Ok(1)), &[(5, Ok(2)), (1, Ok(3))]).await;
        assert_eq!((outcome, attempts), (Ok(2), 2), "the hedge wins");
        assert_eq!(
            took,
            Duration::from_millis(55),
            "delay plus the hedge's time"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hedges_go_out_one_delay_apart_up_to_the_limit() {
        let (outcome, took, attempts) = run(
            plan(50, 3),
            (10_000, Ok(1)),
            &[(10_000, Ok(2)), (5, Ok(3)), (1, Ok(4))],
        )
        .await;
        assert_eq!((outcome, attempts), (Ok(3), 3), "the third attempt wins");
        assert_eq!(took, Duration::from_millis(105));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_attempt_starts_the_next_at_once_and_does_not_win() {
        let (outcome, took, attempts) = run(plan(50, 2), (10, Err(1)), &[(5, Ok(2))]).await;
        assert_eq!((outcome, attempts), (Ok(2), 2));
        assert_eq!(took, Duration::from_millis(15), "no wait for the delay");
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_attempt_fails_the_last_failure_is_the_answer() {
        let (outcome, _, attempts) = run(plan(50, 2), (10, Err(1)), &[(5, Err(2))]).await;
        assert_eq!((outcome, attempts), (Err(2), 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_while_another_attempt_runs_waits_for_that_one() {
        // The hedge starts at 50 ms and fails at 55 ms; the first, at its limit of two,
        // still answers at 80 ms.
        let (outcome, took, attempts) = run(plan(50, 2), (80, Ok(1)), &[(5, Err(2))]).await;
        assert_eq!((outcome, attempts), (Ok(1), 2));
        assert_eq!(took, Duration::from_millis(80));
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_to_start_now_is_tried_again_after_the_next_delay() {
        let calls = RefCell::new(0);
        let started = Instant::now();
        let outcome = race(
            plan(50, 2),
            attempt(Duration::from_secs(10), Ok(1)),
            || {
                *calls.borrow_mut() += 1;
                // Nothing the first time (say, no other endpoint ready yet).
                (*calls.borrow() > 1).then(|| attempt(Duration::from_millis(1), Ok(2)))
            },
            Result::is_ok,
        )
        .await;
        assert_eq!(outcome, Ok(2));
        assert_eq!(started.elapsed(), Duration::from_millis(101));
    }

    #[test]
    fn methods_match_exactly_or_by_service() {
        let all = Hedging::after(Duration::from_millis(1));
        assert!(all.applies("/any.Service/Method"), "no method named: all");
        let some = all.clone().method("/a.A/Get").method("/b.B/");
        assert!(some.applies("/a.A/Get"));
        assert!(!some.applies("/a.A/GetMore"), "exact, not a prefix");
        assert!(some.applies("/b.B/Anything"), "a whole service");
        assert!(!some.applies("/c.C/Get"));
        assert_eq!(all.max_attempts(9).max_attempts, 5, "at most five");
        assert_eq!(some.max_attempts(1).max_attempts, 2, "at least two");
    }
}
