//! For the workspace's tests: reads back what a library recorded through the `metrics`
//! facade, with metrics-util's [`DebuggingRecorder`].
//!
//! A snapshot of the debugging recorder takes counters and gauges back to 0, so
//! [`Recorded`] adds the values up across snapshots: a counter reads as its total, a
//! gauge as the sum of what was added to it (right for gauges that are only incremented
//! and decremented, as the libraries' are), a histogram as how many samples it took.
//! Dev-only: no library depends on it outside its tests.
//!
//! # Examples
//!
//! ```
//! use metrics_readback::{DebuggingRecorder, Recorded};
//!
//! let recorder = DebuggingRecorder::new();
//! let recorded = Recorded::new(&recorder);
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!("calls_total", "service" => "adder").increment(2);
//!     metrics::counter!("calls_total", "service" => "other").increment(1);
//! });
//! assert_eq!(recorded.counter("calls_total", &[("service", "adder")]), 2);
//! assert_eq!(recorded.counter("calls_total", &[]), 3);
//! assert_eq!(recorded.label_values("calls_total", "service"), ["adder", "other"]);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, Snapshotter};

pub use metrics_util::MetricKind;
pub use metrics_util::debugging::DebuggingRecorder;

/// What a [`DebuggingRecorder`] was given so far, added up across snapshots.
pub struct Recorded {
    snapshotter: Snapshotter,
    totals: RefCell<HashMap<CompositeKey, f64>>,
}

impl Recorded {
    /// Reads what `recorder` records from now on (and what it holds already).
    pub fn new(recorder: &DebuggingRecorder) -> Self {
        Recorded {
            snapshotter: recorder.snapshotter(),
            totals: RefCell::default(),
        }
    }

    /// The total of the counters named `name` whose labels include all of `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.value(MetricKind::Counter, name, labels) as u64
    }

    /// The sum of the gauges named `name` whose labels include all of `labels`.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(MetricKind::Gauge, name, labels)
    }

    /// How many samples the histograms named `name` whose labels include all of `labels`
    /// took.
    pub fn samples(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.value(MetricKind::Histogram, name, labels) as u64
    }

    /// The values the label `label` took on any metric named `name`, sorted, each once.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.take_snapshot();
        let values: BTreeSet<String> = (self.totals.borrow().keys())
            .filter(|key| key.key().name() == name)
            .flat_map(|key| {
                key.key()
                    .labels()
                    .filter(|l| l.key() == label)
                    .map(|l| l.value().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        values.into_iter().collect()
    }

    /// Waits until `done` holds of what was recorded, checking every 10 ms; panics naming
    /// `what` after 10 s. For a value a task of the library moves in the background.
    pub async fn until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..1000 {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {what} within 10 s");
    }

    /// The sum of the series of `kind` named `name` whose labels include all of `labels`.
    pub fn value(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.take_snapshot();
        (self.totals.borrow().iter())
            .filter(|(key, _)| {
                key.kind() == kind
                    && key.key().name() == name
                    && labels.iter().all(|(k, v)| {
                        (key.key().labels()).any(|label| label.key() == *k && label.value() == *v)
                    })
            })
            .map(|(_, value)| value)
            .sum()
    }

    fn take_snapshot(&self) {
        let mut totals = self.totals.borrow_mut();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let add = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(v) => v.into_inner(),
                DebugValue::Histogram(values) => values.len() as f64,
            };
            *totals.entry(key).or_default() += add;
        }
    }
}

impl fmt::Debug for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorded")
            .field("series", &self.totals.borrow().len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_add_up_across_snapshots() {
        let recorder = DebuggingRecorder::new();
        let recorded = Recorded::new(&recorder);
        metrics::with_local_recorder(&recorder, || {
            let gauge = metrics::gauge!("endpoints", "state" => "ready");
            gauge.increment(2.0);
            metrics::counter!("calls").increment(1);
            metrics::histogram!("seconds").record(0.5);
            assert_eq!(recorded.gauge("endpoints", &[("state", "ready")]), 2.0);
            gauge.decrement(1.0);
            metrics::counter!("calls").increment(1);
            metrics::histogram!("seconds").record(0.25);
        });
        assert_eq!(recorded.gauge("endpoints", &[]), 1.0, "2 then -1");
        assert_eq!(recorded.gauge("endpoints", &[("state", "stale")]), 0.0);
        assert_eq!(recorded.counter("calls", &[]), 2, "one per snapshot");
        assert_eq!(recorded.samples("seconds", &[]), 2);
        assert_eq!(
            recorded.value(MetricKind::Counter, "seconds", &[]),
            0.0,
            "the kind must match"
        );
    }
}
