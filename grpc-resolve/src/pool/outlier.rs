//! Passive outlier detection for one endpoint: its failures in a row, whether they call
//! for an ejection, and how long an ejection lasts (doubling with each ejection in a row,
//! up to a cap). Whether the ejection may happen is the pool's question: it never ejects
//! its last usable endpoint.
//!
//! May use: `settings` (the thresholds).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::settings::Outlier;

/// One endpoint's outlier record.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// Failed calls in a row.
    failures: AtomicU32,
    /// Ejections in a row (no success between them): what doubles the next one.
    ejections: AtomicU32,
}

// === impl Record ===

impl Record {
    /// A call succeeded: the failures in a row and the doubling start over.
    pub(crate) fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
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
