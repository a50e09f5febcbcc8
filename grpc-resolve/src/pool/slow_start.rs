//! Slow start (Envoy's `slow_start_config`, linear): a new or returning endpoint's weight
//! ramps from a minimum share of its weight to all of it over a window, so a cold backend
//! (empty caches, a JIT, pools not yet filled) is not handed its full share at once.
//!
//! The call path never reads a clock for this: each endpoint holds its current percentage
//! in an atomic ([`Ramp::percent`]), which the pool's maintenance task refreshes in steps
//! while any ramp runs, and a pick multiplies the weight by it.
//!
//! A ramp starts with every new connection of an endpoint: its first one, and each one
//! after the endpoint lost its connection, was ejected or its server sent GOAWAY (a
//! restarted server is a cold one; a server rotating its connections ramps again too,
//! which costs a share of traffic for one window, never a call).
//!
//! May use: `settings` (the window and the minimum).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::settings::SlowStart;

/// Full weight.
pub(crate) const FULL: u32 = 100;

/// One endpoint's ramp.
#[derive(Debug)]
pub(crate) struct Ramp {
    /// The percentage of its weight the endpoint gets now.
    percent: AtomicU32,
    /// The connection generation the ramp follows and when it came up.
    started: Mutex<Option<(u64, Instant)>>,
}

// === impl Ramp ===

impl Default for Ramp {
    fn default() -> Self {
        Ramp {
            percent: AtomicU32::new(FULL),
            started: Mutex::new(None),
        }
    }
}

impl Ramp {
    /// The percentage of its weight the endpoint gets now (100 once the ramp is over).
    pub(crate) fn percent(&self) -> u32 {
        self.percent.load(Ordering::Relaxed)
    }

    /// Connection `generation` is up: a ramp starts if it is a connection the ramp has not
    /// seen. Returns whether one started.
    pub(crate) fn connected(&self, generation: u64, now: Instant, rule: &SlowStart) -> bool {
        if rule.window.is_zero() {
            return false;
        }
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if started.is_some_and(|(seen, _)| seen == generation) {
            return false;
        }
        *started = Some((generation, now));
        self.percent
            .store(ramp_percent(Duration::ZERO, rule), Ordering::Relaxed);
        true
    }

    /// Brings the percentage up to date; returns whether the ramp is still running.
    pub(crate) fn refresh(&self, now: Instant, rule: &SlowStart) -> bool {
        let started = *self.started.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, since)) = started else {
            return false;
        };
        let percent = ramp_percent(now.saturating_duration_since(since), rule);
        self.percent.store(percent, Ordering::Relaxed);
        percent < FULL
    }
}

/// The percentage of its weight an endpoint gets `elapsed` into its ramp: Envoy's
/// `max(min_weight_percent, elapsed / window)` with aggression 1 (linear), in whole
/// percent.
///
/// ```text
/// window 10 s, minimum 10 %:  0 s -> 10,  0.5 s -> 10,  2.5 s -> 25,  10 s -> 100
/// ```
pub(crate) fn ramp_percent(elapsed: Duration, rule: &SlowStart) -> u32 {
    if rule.window.is_zero() || elapsed >= rule.window {
        return FULL;
    }
    let linear = (elapsed.as_nanos() * u128::from(FULL) / rule.window.as_nanos()) as u32;
    linear.max(rule.min_weight_percent.clamp(1, FULL))
}

/// How often the maintenance task refreshes ramps while one runs: a twentieth of the
/// window (so a step moves the weight by at most 5 points), but not more often than every
/// 10 ms nor less often than every second.
pub(crate) fn step(rule: &SlowStart) -> Duration {
    (rule.window / 20).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> SlowStart {
        SlowStart {
            window: Duration::from_secs(10),
            min_weight_percent: 10,
        }
    }

    #[test]
    fn the_ramp_is_linear_from_the_minimum_to_full_over_the_window() {
        let at = |ms| ramp_percent(Duration::from_millis(ms), &rule());
        assert_eq!(at(0), 10, "starts at the minimum");
        assert_eq!(at(500), 10, "the minimum holds while the line is below it");
        assert_eq!(
            at(2_500),
            25,
            "a quarter of the window: a quarter of the weight"
        );
        assert_eq!(at(9_999), 99, "just before the end");
        assert_eq!(at(10_000), 100, "full at the end of the window");
        assert_eq!(at(60_000), 100, "and after it");
        let off = SlowStart {
            window: Duration::ZERO,
            ..rule()
        };
        assert_eq!(
            ramp_percent(Duration::ZERO, &off),
            100,
            "a zero window is off"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_restarts_the_ramp_and_the_same_one_does_not() {
        let ramp = Ramp::default();
        assert_eq!(ramp.percent(), 100, "no ramp before any connection");
        assert!(
            ramp.connected(1, Instant::now(), &rule()),
            "the first connection ramps"
        );
        assert_eq!(ramp.percent(), 10, "from the minimum");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            !ramp.connected(1, Instant::now(), &rule()),
            "the same connection"
        );
        assert!(
            ramp.refresh(Instant::now(), &rule()),
            "still ramping halfway"
        );
        assert_eq!(ramp.percent(), 50, "halfway: half the weight");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            !ramp.refresh(Instant::now(), &rule()),
            "over at the window's end"
        );
        assert_eq!(ramp.percent(), 100, "full weight");
        assert!(
            ramp.connected(2, Instant::now(), &rule()),
            "a new connection ramps again"
        );
        assert_eq!(ramp.percent(), 10, "from the minimum again");
    }
}
