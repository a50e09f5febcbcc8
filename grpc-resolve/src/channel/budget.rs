//! The retry budget (Finagle's `RetryBudget`, tower's `TpsBudget`): retries may be at most
//! `ratio` of the calls of the last `ttl`, plus a floor of `min_per_second` retries per
//! second, so a failing fleet sees at most `1 + ratio` times its traffic, not twice it.
//!
//! Why not tower's `TpsBudget`: its `deposit`, made for every call, takes a mutex and reads
//! the clock, on every core's calls; this channel's call path does neither. Here a deposit
//! costs nothing: the channel already counts every call it starts, and the budget reads
//! that counter only when a retry asks (rare: only after a failed attempt). Calls made since
//! the last look are spread evenly over the time since then, which is exact for steady
//! traffic and close enough for a bound.
//!
//! May use: nothing else of the crate.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How many slots the window is cut into; deposits and withdrawals expire slot by slot.
const SLOTS: usize = 10;

/// A retry budget's settings; see [`Builder::retry_budget`](crate::Builder::retry_budget).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BudgetConfig {
    /// How long a call's deposit counts.
    pub(crate) ttl: Duration,
    /// Retries allowed per second whatever the traffic.
    pub(crate) min_per_second: u32,
    /// Retries allowed per call over the window.
    pub(crate) ratio: f64,
}

/// The budget of one channel.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    config: BudgetConfig,
    window: Mutex<Window>,
}

/// Deposits and withdrawals per slot; `current` covers `[since, since + slot)`.
#[derive(Debug)]
struct Window {
    slot: Duration,
    calls: [f64; SLOTS],
    retries: [u64; SLOTS],
    current: usize,
    since: Instant,
    /// The call count and the time of the last look.
    seen: u64,
    seen_at: Instant,
}

// === impl BudgetConfig ===

impl Default for BudgetConfig {
    /// Finagle's and tower's defaults: 20 % of the calls of the last 10 s, plus 10 per
    /// second.
    fn default() -> Self {
        BudgetConfig {
            ttl: Duration::from_secs(10),
            min_per_second: 10,
            ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    /// The settings with `ttl` brought within 1 to 60 s and `ratio` within 0 to 10 (NaN is
    /// 0), as tower's `TpsBudget` requires (it panics where this clamps).
    pub(crate) fn new(ttl: Duration, min_per_second: u32, ratio: f64) -> Self {
        BudgetConfig {
            ttl: ttl.clamp(Duration::from_secs(1), Duration::from_secs(60)),
            min_per_second,
            ratio: if ratio.is_nan() {
                0.0
            } else {
                ratio.clamp(0.0, 10.0)
            },
        }
    }
}

// === impl RetryBudget ===

impl RetryBudget {
    /// A budget whose first look sees `calls` calls made so far (none in the window).
    pub(crate) fn new(config: BudgetConfig, calls: u64, now: Instant) -> Self {
        RetryBudget {
            config,
            window: Mutex::new(Window {
                slot: config.ttl / SLOTS as u32,
                calls: [0.0; SLOTS],
                retries: [0; SLOTS],
                current: 0,
                since: now,
                seen: calls,
                seen_at: now,
            }),
        }
    }

    /// Takes one retry from the budget if it has one; `calls` is the channel's count of
    /// calls started so far.
    pub(crate) fn withdraw(&self, calls: u64, now: Instant) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.advance(calls, now);
        let deposits: f64 = window.calls.iter().sum();
        let withdrawn: u64 = window.retries.iter().sum();
        let floor = f64::from(self.config.min_per_second) * self.config.ttl.as_secs_f64();
        let allowed = floor + self.config.ratio * deposits;
        if (withdrawn as f64) + 1.0 > allowed {
            return false;
        }
        let current = window.current;
        window.retries[current] += 1;
        true
    }
}

// === impl Window ===

impl Window {
    /// Moves the window to `now`, spreading the calls made since the last look evenly over
    /// the time since it and dropping slots older than the ttl.
    fn advance(&mut self, calls: u64, now: Instant) {
        let new = calls.saturating_sub(self.seen) as f64;
        let span = now.saturating_duration_since(self.seen_at).as_secs_f64();
        let from = self.seen_at;
        self.seen = calls;
        self.seen_at = now;
        // The share of `new` made between `a` and `b`.
        let share = |a: Instant, b: Instant| {
            if span <= 0.0 {
                new
            } else {
                new * b.saturating_duration_since(a.max(from)).as_secs_f64() / span
            }
        };
        if now.saturating_duration_since(self.since) >= self.slot * SLOTS as u32 {
            // Nothing looked for a whole window: everything in it has expired. Start the
            // window afresh so that it ends now, and spread the new calls over it below.
            self.calls = [0.0; SLOTS];
            self.retries = [0; SLOTS];
            self.since = now
                .checked_sub(self.slot * (SLOTS as u32 - 1))
                .unwrap_or(now);
        }
        while self.since + self.slot <= now {
            let end = self.since + self.slot;
            self.calls[self.current] += share(self.since, end);
            self.current = (self.current + 1) % SLOTS;
            self.calls[self.current] = 0.0;
            self.retries[self.current] = 0;
            self.since = end;
        }
        self.calls[self.current] += share(self.since, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min_per_second: u32, ratio: f64) -> BudgetConfig {
        BudgetConfig::new(Duration::from_secs(10), min_per_second, ratio)
    }

    /// Withdraws until refused; returns how many it got.
    fn drain(budget: &RetryBudget, calls: u64) -> u64 {
        let mut got = 0;
        while budget.withdraw(calls, Instant::now()) {
            got += 1;
            assert!(got < 1_000_000, "expected the budget to run out");
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_ratio_of_recent_calls_plus_the_floor() {
        let budget = RetryBudget::new(config(1, 0.2), 0, Instant::now());
        assert_eq!(
            drain(&budget, 0),
            10,
            "no calls yet: the floor, 1/s over 10 s"
        );
        assert_eq!(drain(&budget, 100), 20, "100 calls: 20 % of them more");
        assert_eq!(drain(&budget, 100), 0, "nothing new: nothing more");
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_and_withdrawals_expire_after_the_ttl() {
        let budget = RetryBudget::new(config(0, 0.5), 0, Instant::now());
        assert_eq!(drain(&budget, 100), 50, "half of 100 calls");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            drain(&budget, 100),
            0,
            "5 s on, the same calls and retries count"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            drain(&budget, 100),
            0,
            "11 s on, both expired: nothing to spend"
        );
        assert_eq!(drain(&budget, 140), 20, "40 new calls: 20 retries");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            drain(&budget, 140),
            0,
            "a long idle spell empties the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn calls_between_two_looks_are_spread_over_the_time_between_them() {
        let budget = RetryBudget::new(config(0, 1.0), 0, Instant::now());
        tokio::time::advance(Duration::from_secs(20)).await;
        // 200 calls over 20 s: the window (nine whole slots and the current one, just
        // begun) holds 90 of them.
        let got = drain(&budget, 200);
        assert!(
            (85..=100).contains(&got),
            "expected about 90 (the window's share), got {got}"
        );
    }

    #[test]
    fn bad_settings_are_clamped_not_panicked_on() {
        let config = BudgetConfig::new(Duration::ZERO, 0, f64::NAN);
        assert_eq!(config.ttl, Duration::from_secs(1), "ttl at least 1 s");
        assert_eq!(config.ratio, 0.0, "NaN is no ratio");
        let config = BudgetConfig::new(Duration::from_secs(3600), 0, 99.0);
        assert_eq!(config.ttl, Duration::from_secs(60), "ttl at most 60 s");
        assert_eq!(config.ratio, 10.0, "ratio at most 10");
    }
}
