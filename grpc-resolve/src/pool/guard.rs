//! The shrink guard: a panic threshold for discovery answers.
//!
//! A registry's answer is the truth about membership, but not always about health: an agent
//! restarted empty answers `[]` (or "no such service") while every server is up and
//! connected, until they register again. Applying it at once fails every call. So when an
//! answer would leave fewer than `min_ready_percent` (default 50 %) of the endpoints that
//! could serve, the endpoints it drops that are still fit to serve
//! ([`Endpoint::is_fallback_worthy`]: connected, not ejected) stay as a *fallback*: they
//! keep taking calls, as every other endpoint does, until they fail on their own (their
//! connection ends, they are ejected), until the set recovers (an answer, or endpoints of
//! it connecting, bring the ready share back to the threshold), or for `max_hold` (default
//! 60 s) at most, after which the registry's answer stands.
//!
//! This is Envoy's panic threshold (default 50 %) applied to membership: below it, Envoy
//! routes to every host, healthy or not, since the healthy few would be overwhelmed or the
//! health data is likely wrong. The same default keeps one graceful stop of three (two of
//! three left ready, 67 %) and one of two (50 %, not below) applying at once.
//!
//! [`Endpoint::is_fallback_worthy`]: super::endpoint::Endpoint::is_fallback_worthy
//!
//! May use: `settings` (the threshold).

use super::settings::ShrinkGuard;

/// Whether dropped endpoints are kept as a fallback: `listed_ready` endpoints of the
/// registry's answer are ready, and `worthy` dropped ones could still serve.
///
/// ```text
/// 3 ready, answer drops 1:   2 of 3 = 67 %  -> applied
/// 3 ready, answer drops 2:   1 of 3 = 33 %  -> held
/// 3 ready, answer is []:     0 of 3         -> held
/// 2 ready, answer drops 1:   1 of 2 = 50 %  -> applied
/// ```
pub(crate) fn holds(listed_ready: usize, worthy: usize, rule: &ShrinkGuard) -> bool {
    let all = listed_ready + worthy;
    worthy > 0 && listed_ready * 100 < rule.min_ready_percent as usize * all
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rule(percent: u32) -> ShrinkGuard {
        ShrinkGuard {
            min_ready_percent: percent,
            max_hold: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_large_drop_is_held_and_a_small_one_applied() {
        assert!(
            !holds(2, 1, &rule(50)),
            "one of three leaving applies at once"
        );
        assert!(
            !holds(1, 1, &rule(50)),
            "one of two: 50 % is not below 50 %"
        );
        assert!(
            holds(1, 2, &rule(50)),
            "two of three leaving at once is held"
        );
        assert!(holds(0, 3, &rule(50)), "an empty answer is held");
        assert!(!holds(0, 0, &rule(50)), "nothing to keep: nothing held");
        assert!(!holds(0, 3, &rule(0)), "0 % turns the guard off");
        assert!(holds(3, 1, &rule(100)), "100 % holds any drop");
    }
}
