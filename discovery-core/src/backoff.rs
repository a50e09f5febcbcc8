//! The one backoff policy of the workspace: every retry loop (a reconnect, a watch query, a
//! re-registration) waits as [`Backoff`] says. Uses nothing else of this crate.

use std::time::Duration;

/// How long to wait before the next attempt after consecutive failures: exponential from
/// `base`, capped at `max`, each delay drawn uniformly from the upper half of its ceiling.
///
/// The jitter keeps many clients that failed together (an agent restart, a network blip)
/// from retrying in lockstep; keeping the lower half out keeps the growth exponential, so a
/// down peer is not hammered by unlucky short draws.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use discovery_core::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// // The third retry (attempt 2) waits between 200 and 400 ms.
/// let delay = backoff.delay(2);
/// assert!(delay >= Duration::from_millis(200) && delay <= Duration::from_millis(400));
/// // Far enough in, every delay is capped.
/// assert!(backoff.delay(40) <= Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

// === impl Backoff ===

impl Backoff {
    /// Delays growing from `base` to `max` (a `max` below `base` is raised to it).
    pub const fn new(base: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < base.as_nanos() {
            base
        } else {
            max
        };
        Backoff { base, max }
    }

    /// The first ceiling.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The cap.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The longest delay before retry number `attempt` (0 for the first retry):
    /// `base * 2^attempt`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt` (0 for the first retry), drawn from
    /// `[ceiling / 2, ceiling]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let half = self.ceiling(attempt) / 2;
        half.saturating_add(half.mul_f64(fastrand::f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_stay_in_the_upper_half() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..40 {
            let ceiling = (Duration::from_millis(100) * 2u32.saturating_pow(attempt.min(20)))
                .min(Duration::from_secs(5));
            assert_eq!(backoff.ceiling(attempt), ceiling, "attempt {attempt}");
            let d = backoff.delay(attempt);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {attempt}: expected {d:?} within [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
    }

    #[test]
    fn a_cap_below_the_base_is_raised_to_it() {
        let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(backoff.max(), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(10), Duration::from_secs(2));
    }

    #[test]
    fn huge_attempts_do_not_overflow() {
        let backoff = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::MAX);
        assert!(backoff.delay(u32::MAX) >= Duration::MAX / 2);
    }
}
