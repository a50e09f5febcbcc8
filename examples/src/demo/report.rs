//! The end of the demo: each step's calls beside what the servers counted, the promise the
//! design makes for the step and whether it held. Pure; uses the traffic's tally.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use super::traffic::Tally;

/// What the design promises about a step's failed calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Promise {
    /// Not one call fails.
    NoFailures,
    /// At most `bound` calls fail, for the reason given.
    AtMost {
        /// The most failed calls allowed.
        bound: u64,
        /// Which calls may fail, e.g. "the calls in flight on n2 when it was killed".
        which: String,
    },
}

impl Promise {
    fn bound(&self) -> u64 {
        match self {
            Promise::NoFailures => 0,
            Promise::AtMost { bound, .. } => *bound,
        }
    }

    fn short(&self) -> String {
        match self {
            Promise::NoFailures => "0 failed".to_owned(),
            Promise::AtMost { bound, .. } => format!("<= {bound} failed"),
        }
    }
}

/// One finished step.
#[derive(Debug, Clone)]
pub(crate) struct StepResult {
    pub(crate) title: String,
    pub(crate) promise: Promise,
    pub(crate) tally: Tally,
    /// What each server counted during the step, by instance id.
    pub(crate) served: BTreeMap<String, u64>,
    pub(crate) duration: Duration,
    /// Other promises of the design the step saw broken (a server that never came back
    /// into rotation, say), in words.
    pub(crate) broken: Vec<String>,
    /// The gRPC code the step's failed calls must carry, if the design says which (a call
    /// lost with its connection is `Unavailable`, so retry policies keyed on it apply).
    pub(crate) failures_as: Option<tonic::Code>,
}

/// How a step compares with its promise and with the servers' counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) promise_kept: bool,
    /// Every success was counted by the server that answered it, and every call a server
    /// counted beyond those failed at the caller (answered too late, or lost with its
    /// server).
    pub(crate) counts_match: bool,
    /// What did not hold, in words.
    pub(crate) problems: Vec<String>,
}

impl StepResult {
    /// Calls the servers counted in the step.
    pub(crate) fn served_total(&self) -> u64 {
        self.served.values().sum()
    }

    /// The step against its promise and the servers' counts.
    pub(crate) fn verdict(&self) -> Verdict {
        let mut problems = self.broken.clone();
        if let Some(code) = self.failures_as {
            let want = format!("{code:?}: ");
            let other: u64 = self
                .tally
                .errors
                .iter()
                .filter(|(error, _)| !error.starts_with(&want))
                .map(|(_, n)| n)
                .sum();
            if other > 0 {
                problems.push(format!(
                    "{other} failed calls carried another code than {code:?}"
                ));
            }
        }
        let failed = self.tally.failed;
        let promise_kept = failed <= self.promise.bound() && problems.is_empty();
        if failed > self.promise.bound() {
            problems.push(match &self.promise {
                Promise::NoFailures => format!("{failed} calls failed; the design promises none"),
                Promise::AtMost { bound, which } => {
                    format!("{failed} calls failed; the design promises at most {bound}: {which}")
                }
            });
        }
        let ids: BTreeSet<&String> = self.tally.ok.keys().chain(self.served.keys()).collect();
        let mut unanswered = 0u64;
        let mut counts_match = true;
        for id in ids {
            let ok = self.tally.ok.get(id).copied().unwrap_or(0);
            let served = self.served.get(id).copied().unwrap_or(0);
            if ok > served {
                counts_match = false;
                problems.push(format!(
                    "{id}: the callers got {ok} answers from it, it counted {served}"
                ));
            }
            unanswered += served.saturating_sub(ok);
        }
        if unanswered > failed {
            counts_match = false;
            problems.push(format!(
                "the servers counted {unanswered} calls the callers never got, \
                 but only {failed} failed"
            ));
        }
        Verdict {
            promise_kept,
            counts_match,
            problems,
        }
    }
}

/// The final table, the errors seen, and a last line saying whether every promise held
/// (`result: ok`) or which did not.
pub(crate) fn render(steps: &[StepResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<46} {:>6} {:>8} {:>7} {:>8} {:>8}  {:<12} verdict",
        "step", "took", "ok", "failed", "served", "max gap", "promise"
    );
    let mut broken = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let verdict = step.verdict();
        let word = match (verdict.promise_kept, verdict.counts_match) {
            (true, true) => "kept".to_owned(),
            (false, true) => "BROKEN".to_owned(),
            (true, false) => "kept, COUNTS DIFFER".to_owned(),
            (false, false) => "BROKEN, COUNTS DIFFER".to_owned(),
        };
        let title: String = format!("{} {}", i + 1, step.title)
            .chars()
            .take(46)
            .collect();
        let _ = writeln!(
            out,
            "{:<46} {:>4.1} s {:>8} {:>7} {:>8} {:>6.2} s  {:<12} {}",
            title,
            step.duration.as_secs_f64(),
            step.tally.ok_total(),
            step.tally.failed,
            step.served_total(),
            step.tally.max_gap.as_secs_f64(),
            step.promise.short(),
            word
        );
        for problem in &verdict.problems {
            broken.push(format!("step {} ({}): {problem}", i + 1, step.title));
        }
    }
    let _ = writeln!(
        out,
        "(ok, failed: what the callers saw; served: what the servers counted; max gap: the \
         longest time without a success)"
    );
    for (i, step) in steps.iter().enumerate() {
        if let Promise::AtMost { bound, which } = &step.promise {
            let text = format!("promise {}: <= {bound} failed: {which}", i + 1);
            out.push_str(&wrap(&text, WIDTH, "    "));
        }
        for (error, n) in &step.tally.errors {
            let _ = writeln!(out, "step {} error x{n}: {error}", i + 1);
        }
    }
    if broken.is_empty() {
        let _ = writeln!(
            out,
            "result: ok (every promise kept; every step's calls match the servers' counts)"
        );
    } else {
        for line in &broken {
            out.push_str(&wrap(&format!("not kept: {line}"), WIDTH, "    "));
        }
        let _ = writeln!(out, "result: {} problem(s)", broken.len());
    }
    out
}

/// The width the report is written for (a 120-column terminal).
const WIDTH: usize = 118;

/// `text` as lines of at most `width` characters, broken at spaces, the lines after the
/// first indented by `indent`; each line ends with a newline.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.trim().is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.to_owned();
        } else if !line.is_empty() && !line.ends_with(' ') {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// Whether every step kept its promise and matched the servers' counts.
pub(crate) fn all_kept(steps: &[StepResult]) -> bool {
    steps.iter().all(|s| {
        let v = s.verdict();
        v.promise_kept && v.counts_match
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn step(
        ok: &[(&str, u64)],
        failed: u64,
        served: &[(&str, u64)],
        promise: Promise,
    ) -> StepResult {
        let mut tally = Tally::new(Instant::now());
        for (id, n) in ok {
            tally.ok.insert((*id).to_owned(), *n);
        }
        tally.failed = failed;
        StepResult {
            title: "a step".into(),
            promise,
            tally,
            served: served
                .iter()
                .map(|(id, n)| ((*id).to_owned(), *n))
                .collect(),
            duration: Duration::from_secs(1),
            broken: Vec::new(),
            failures_as: None,
        }
    }

    #[test]
    fn equal_counts_and_no_failure_keep_a_no_failure_promise() {
        let s = step(
            &[("a", 10), ("b", 5)],
            0,
            &[("a", 10), ("b", 5)],
            Promise::NoFailures,
        );
        assert_eq!(
            s.verdict(),
            Verdict {
                promise_kept: true,
                counts_match: true,
                problems: vec![]
            },
            "expected all well"
        );
        assert!(render(&[s]).ends_with(
            "result: ok (every promise kept; every step's calls match the servers' counts)\n"
        ));
    }

    #[test]
    fn long_lines_wrap_at_spaces_with_an_indent() {
        assert_eq!(
            wrap("aaa bbb ccc ddd", 9, "  "),
            "aaa bbb\n  ccc ddd\n",
            "expected two lines"
        );
        assert_eq!(wrap("short", 80, "  "), "short\n", "expected one line");
    }

    #[test]
    fn one_failure_breaks_a_no_failure_promise() {
        let s = step(&[("a", 10)], 1, &[("a", 10)], Promise::NoFailures);
        let v = s.verdict();
        assert!(!v.promise_kept, "expected the promise broken");
        assert!(v.counts_match, "expected the counts to match");
        assert!(
            render(&[s]).contains("result: 1 problem(s)"),
            "expected the problem named"
        );
    }

    #[test]
    fn failures_within_the_bound_keep_it_and_calls_served_but_lost_match_failures() {
        let promise = Promise::AtMost {
            bound: 3,
            which: "in flight".into(),
        };
        // b answered 2 calls whose replies were lost (it was killed): they failed.
        let s = step(&[("a", 10), ("b", 4)], 3, &[("a", 10), ("b", 6)], promise);
        let v = s.verdict();
        assert!(
            v.promise_kept && v.counts_match,
            "expected kept and matching: {v:?}"
        );
    }

    #[test]
    fn another_broken_promise_breaks_the_step_even_without_failures() {
        let mut s = step(&[("a", 10)], 0, &[("a", 10)], Promise::NoFailures);
        s.broken.push("n5 never entered rotation".into());
        let v = s.verdict();
        assert!(!v.promise_kept, "expected the step broken");
        assert_eq!(
            v.problems,
            ["n5 never entered rotation"],
            "expected the problem named"
        );
    }

    #[test]
    fn a_failure_with_another_code_than_promised_breaks_the_step() {
        let promise = Promise::AtMost {
            bound: 2,
            which: "in flight".into(),
        };
        let mut s = step(&[("a", 10)], 2, &[("a", 10)], promise);
        s.failures_as = Some(tonic::Code::Unavailable);
        s.tally.errors.insert("Unavailable: reset".into(), 1);
        s.tally.errors.insert("Unknown: call failed".into(), 1);
        let v = s.verdict();
        assert!(!v.promise_kept, "expected the step broken: {v:?}");
        assert_eq!(
            v.problems,
            ["1 failed calls carried another code than Unavailable"],
            "expected the other code counted"
        );
        s.tally.errors.remove("Unknown: call failed");
        s.tally.errors.insert("Unavailable: reset".into(), 2);
        assert!(
            s.verdict().promise_kept,
            "expected Unavailable alone to keep it"
        );
    }

    #[test]
    fn an_answer_the_server_did_not_count_is_a_mismatch() {
        let s = step(&[("a", 11)], 0, &[("a", 10)], Promise::NoFailures);
        assert!(!s.verdict().counts_match, "expected a mismatch");
    }

    #[test]
    fn counted_calls_beyond_the_failures_are_a_mismatch() {
        let s = step(&[("a", 10)], 1, &[("a", 13)], Promise::NoFailures);
        assert!(!s.verdict().counts_match, "expected a mismatch");
    }
}
