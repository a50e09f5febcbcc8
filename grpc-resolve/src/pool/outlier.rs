//! Passive outlier detection for one endpoint: its failures in a row, whether they call
//! for an ejection, and how long an ejection lasts (doubling with each ejection in a row,
//! up to a cap). Whether the ejection may happen is the pool's question: it never ejects
//! its last usable endpoint.
//!
//! Beside it, ejection by failure rate (gRPC's A50 "failure percentage", Envoy's
//! `failure_percentage_threshold`): each endpoint counts its calls and its failed calls
//! (one relaxed increment per call), and every interval the pool takes those counts and
//! [`rate_ejections`] decides, for the whole set at once, who is ejected.
//!
//! May use: `settings` (the thresholds).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::settings::{FailureRate, Outlier};

/// One endpoint's outlier record.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// Failed calls in a row.
    failures: AtomicU32,
    /// Ejections in a row (no success between them): what doubles the next one.
    ejections: AtomicU32,
    /// Calls ended since the failure rates were last computed.
    interval_calls: AtomicU64,
    /// Of those, the ones that failed by the server's fault.
    interval_failures: AtomicU64,
    /// A50's ejection multiplier: up by one per rate ejection, down by one per interval
    /// spent in rotation.
    rate_multiplier: AtomicU32,
}

/// One endpoint's calls over one interval, as [`rate_ejections`] judges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Interval {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
}

// === impl Record ===

impl Record {
    /// A call succeeded: the failures in a row and the doubling start over.
    pub(crate) fn succeeded(&self) {
        // Read before writing: nearly every call succeeds, and a store each time would take
        // the cache line from the other cores' calls for nothing.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failed call. Returns the failures in a row once they reach `outlier`'s
    /// threshold (never while detection is off), so the endpoint is due for ejection.
    pub(crate) fn failed(&self, outlier: &Outlier) -> Option<u32> {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if outlier.consecutive_failures == 0 || failures < outlier.consecutive_failures {
            return None;
        }
        Some(failures)
    }

    /// Starts an ejection: failures count afresh from here. Returns how long it lasts.
    pub(crate) fn eject(&self, outlier: &Outlier) -> Duration {
        self.failures.store(0, Ordering::Relaxed);
        let earlier = self.ejections.fetch_add(1, Ordering::Relaxed);
        ejection_time(outlier, earlier)
    }

    /// Failed calls in a row.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Counts an ended call for the failure rate; `failed` when it failed by the server's
    /// fault.
    pub(crate) fn count(&self, failed: bool) {
        self.interval_calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.interval_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The calls of the interval that ends now; the next one counts from zero. A call
    /// counted between the two swaps lands in one interval or the next, never lost.
    pub(crate) fn take_interval(&self) -> Interval {
        let failures = self.interval_failures.swap(0, Ordering::Relaxed);
        let calls = self.interval_calls.swap(0, Ordering::Relaxed);
        Interval {
            calls: calls.max(failures),
            failures,
        }
    }

    /// Starts an ejection by failure rate; returns how long it lasts: the interval times
    /// the multiplier (A50), capped at the longer of `max` and one interval.
    pub(crate) fn eject_for_rate(&self, rule: &FailureRate, max: Duration) -> Duration {
        let multiplier = self.rate_multiplier.fetch_add(1, Ordering::Relaxed) + 1;
        rule.interval
            .saturating_mul(multiplier)
            .min(max.max(rule.interval))
    }

    /// An interval passed with the endpoint in rotation: the multiplier decays (A50).
    pub(crate) fn rate_interval_passed(&self) {
        let _ = self
            .rate_multiplier
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| m.checked_sub(1));
    }
}

/// Which endpoints the failure-rate rule ejects, by index into `intervals` (the calls of
/// each endpoint in rotation over the last interval), worst first. `ejected` endpoints are
/// out of rotation already, of `total` in the set.
///
/// An endpoint is judged only with at least `request_volume` calls, and only when at least
/// `minimum_hosts` endpoints are. It is ejected when its failure percentage is at least
/// `threshold_percent` and stands out from the others': more than 1.5 times the failure
/// percentage of the other judged endpoints' calls together. So a fleet failing alike (a
/// bad request mix, a shared dependency down) loses nobody, while one bad endpoint among
/// healthy ones, or a minority of bad ones, is ejected. Ejected endpoints, for any reason,
/// never exceed `max_ejection_percent` of `total`, but one may always be.
///
/// ```text
/// 4 endpoints at 0 %, 1 at 30 %   -> the one at 30 % (30 > 1.5 x 0)
/// 2 at 0 %, 3 at 30 %             -> one of the three under the default 10 % share
///                                    (30 > 1.5 x 15); up to two with a share of 40 %
/// 5 at 30 %                       -> nobody (30 < 1.5 x 30)
/// ```
pub(crate) fn rate_ejections(
    intervals: &[Interval],
    rule: &FailureRate,
    ejected: usize,
    total: usize,
) -> Vec<usize> {
    if rule.threshold_percent == 0 {
        return Vec::new();
    }
    let judged: Vec<usize> = (0..intervals.len())
        .filter(|i| intervals[*i].calls > 0 && intervals[*i].calls >= rule.request_volume)
        .collect();
    if judged.len() < rule.minimum_hosts.max(1) {
        return Vec::new();
    }
    let all_calls: u64 = judged.iter().map(|i| intervals[*i].calls).sum();
    let all_failures: u64 = judged.iter().map(|i| intervals[*i].failures).sum();
    let mut due: Vec<usize> = judged
        .into_iter()
        .filter(|i| {
            let Interval { calls, failures } = intervals[*i];
            let (calls, failures) = (u128::from(calls), u128::from(failures));
            let over_threshold = failures * 100 >= u128::from(rule.threshold_percent) * calls;
            let (rest_calls, rest_failures) = (
                u128::from(all_calls) - calls,
                u128::from(all_failures) - failures,
            );
            // failures / calls > 1.5 * rest_failures / rest_calls, without division.
            let stands_out = failures * rest_calls * 2 > 3 * rest_failures * calls;
            over_threshold && stands_out
        })
        .collect();
    // Worst first: a higher failure fraction; ties keep their order.
    due.sort_by(|a, b| {
        let (a, b) = (intervals[*a], intervals[*b]);
        (u128::from(b.failures) * u128::from(a.calls))
            .cmp(&(u128::from(a.failures) * u128::from(b.calls)))
    });
    let cap = (total * rule.max_ejection_percent as usize / 100).max(1);
    due.truncate(cap.saturating_sub(ejected));
    due
}

/// How long an ejection lasts after `earlier` ejections in a row: the base, doubled for
/// each, up to the cap.
fn ejection_time(outlier: &Outlier, earlier: u32) -> Duration {
    outlier
        .base_ejection
        .saturating_mul(1u32.checked_shl(earlier.min(31)).unwrap_or(u32::MAX))
        .min(outlier.max_ejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier(failures: u32) -> Outlier {
        Outlier {
            consecutive_failures: failures,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(60),
        }
    }

    #[test]
    fn failures_are_due_for_ejection_at_the_threshold_and_never_when_off() {
        let record = Record::default();
        assert_eq!(record.failed(&outlier(3)), None, "one failure of three");
        assert_eq!(record.failed(&outlier(3)), None, "two of three");
        assert_eq!(record.failed(&outlier(3)), Some(3), "three of three: due");
        assert_eq!(record.consecutive_failures(), 3, "all three counted");

        let off = Record::default();
        for _ in 0..10 {
            assert_eq!(off.failed(&outlier(0)), None, "a threshold of 0 is off");
        }
    }

    #[test]
    fn an_ejection_restarts_the_failures_and_a_success_restarts_the_doubling() {
        let record = Record::default();
        record.failed(&outlier(1));
        assert_eq!(
            record.eject(&outlier(1)),
            Duration::from_secs(1),
            "first: the base"
        );
        assert_eq!(record.consecutive_failures(), 0, "failures count afresh");
        assert_eq!(
            record.eject(&outlier(1)),
            Duration::from_secs(2),
            "second in a row: doubled"
        );
        record.succeeded();
        assert_eq!(
            record.eject(&outlier(1)),
            Duration::from_secs(1),
            "after a success: the base again"
        );
    }

    fn rule(max_ejection_percent: u32) -> FailureRate {
        FailureRate {
            max_ejection_percent,
            ..FailureRate::default()
        }
    }

    /// Intervals of 100 calls each, failing the given numbers of them.
    fn hundreds(failures: &[u64]) -> Vec<Interval> {
        failures
            .iter()
            .map(|&failures| Interval {
                calls: 100,
                failures,
            })
            .collect()
    }

    #[test]
    fn one_endpoint_failing_30_percent_among_healthy_ones_is_ejected() {
        assert_eq!(
            rate_ejections(&hundreds(&[0, 0, 30, 0, 0]), &rule(10), 0, 5),
            vec![2],
            "the one at 30 % stands out"
        );
        assert_eq!(
            rate_ejections(&hundreds(&[0, 1, 19, 0, 0]), &rule(10), 0, 5),
            Vec::<usize>::new(),
            "19 % is under the 20 % threshold"
        );
    }

    #[test]
    fn a_minority_failing_loses_only_the_allowed_share_and_the_worst_first() {
        assert_eq!(
            rate_ejections(&hundreds(&[30, 0, 40, 0, 30]), &rule(10), 0, 5),
            vec![2],
            "10 % of 5 rounds down, but one may always be ejected: the worst"
        );
        assert_eq!(
            rate_ejections(&hundreds(&[30, 0, 40, 0, 30]), &rule(40), 0, 5).len(),
            2,
            "40 % of 5: two"
        );
        assert_eq!(
            rate_ejections(&hundreds(&[30, 0, 40, 0, 30]), &rule(40), 1, 5).len(),
            1,
            "one already ejected counts against the share"
        );
        assert_eq!(
            rate_ejections(&hundreds(&[30, 0, 40, 0, 30]), &rule(10), 1, 5),
            Vec::<usize>::new(),
            "the share is used up"
        );
    }

    #[test]
    fn a_fleet_failing_alike_loses_nobody() {
        assert_eq!(
            rate_ejections(&hundreds(&[30, 30, 30, 30, 30]), &rule(100), 0, 5),
            Vec::<usize>::new(),
            "nobody stands out when all fail alike"
        );
        assert_eq!(
            rate_ejections(&hundreds(&[30, 30, 30, 30, 0]), &rule(100), 0, 5),
            Vec::<usize>::new(),
            "nor when most do"
        );
    }

    #[test]
    fn too_few_calls_or_endpoints_are_not_judged() {
        let few = [
            Interval {
                calls: 49,
                failures: 49,
            },
            Interval {
                calls: 100,
                failures: 0,
            },
            Interval {
                calls: 100,
                failures: 0,
            },
            Interval {
                calls: 100,
                failures: 0,
            },
        ];
        assert_eq!(
            rate_ejections(&few, &rule(100), 0, 4),
            Vec::<usize>::new(),
            "49 calls are under the volume of 50"
        );
        assert_eq!(
            rate_ejections(&hundreds(&[90, 0]), &rule(100), 0, 2),
            Vec::<usize>::new(),
            "two endpoints are under the minimum of three"
        );
        let off = FailureRate {
            threshold_percent: 0,
            ..rule(100)
        };
        assert_eq!(
            rate_ejections(&hundreds(&[100, 0, 0]), &off, 0, 3),
            Vec::<usize>::new(),
            "a threshold of 0 is off"
        );
    }

    #[test]
    fn the_rate_ejection_grows_with_each_and_decays_with_each_interval_in_rotation() {
        let record = Record::default();
        let rule = rule(10);
        let max = Duration::from_secs(60);
        assert_eq!(
            record.eject_for_rate(&rule, max),
            Duration::from_secs(10),
            "one interval"
        );
        assert_eq!(
            record.eject_for_rate(&rule, max),
            Duration::from_secs(20),
            "two"
        );
        record.rate_interval_passed();
        assert_eq!(
            record.eject_for_rate(&rule, max),
            Duration::from_secs(20),
            "decayed by one"
        );
        for _ in 0..10 {
            record.eject_for_rate(&rule, max);
        }
        assert_eq!(record.eject_for_rate(&rule, max), max, "capped");
        record.count(true);
        record.count(false);
        assert_eq!(
            record.take_interval(),
            Interval {
                calls: 2,
                failures: 1
            },
            "the interval's counts"
        );
        assert_eq!(record.take_interval(), Interval::default(), "and afresh");
    }

    #[test]
    fn ejection_time_doubles_up_to_the_cap_without_overflowing() {
        let outlier = outlier(1);
        assert_eq!(ejection_time(&outlier, 0), Duration::from_secs(1), "base");
        assert_eq!(ejection_time(&outlier, 5), Duration::from_secs(32), "2^5 s");
        assert_eq!(
            ejection_time(&outlier, 6),
            Duration::from_secs(60),
            "capped"
        );
        assert_eq!(
            ejection_time(&outlier, u32::MAX),
            Duration::from_secs(60),
            "any number of ejections stays at the cap"
        );
    }
}
