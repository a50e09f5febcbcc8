//! Picking an endpoint: weighted power of two choices.
//!
//! Plain p2c samples two endpoints uniformly and sends the call to the less loaded one.
//! With weights, "less loaded" becomes in-flight calls per unit of weight, but that alone
//! is wrong for light traffic: when calls go one at a time every endpoint has zero in
//! flight, so either the heavier one always wins (all traffic to it) or ties go to chance
//! (weights ignored). So the two choices are sampled in proportion to weight, and ties go to
//! the first sample: idle traffic splits exactly by weight, and under concurrency the load
//! comparison keeps in-flight calls proportional to weight, which with equal latencies is
//! the same split.
//!
//! Slow start scales a weight before the pick ([`Candidate::at_percent`]): the pool keeps
//! each endpoint's ramp percentage current, so the pick reads a number, never a clock.
//!
//! Weight 0 (an instance whose status gives it no weight, such as critical) is used only
//! when nothing else is ready, each such endpoint then counting as weight 1.
//!
//! May use: nothing else of the crate.

/// The balancer's view of one ready endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Calls in flight.
    pub(crate) load: u64,
    /// Relative share of traffic.
    pub(crate) weight: u32,
}

// === impl Candidate ===

impl Candidate {
    /// This candidate with its weight taken at `percent` of itself, for slow start. Every
    /// candidate of a pick goes through it (most at 100), so weights stay comparable and a
    /// ramping weight of 1 does not round down to 0.
    pub(crate) fn at_percent(self, percent: u32) -> Candidate {
        Candidate {
            weight: self.weight.saturating_mul(percent),
            ..self
        }
    }
}

/// Picks the index of the candidate to call, or `None` when there is none.
pub(crate) fn pick(candidates: &[Candidate], rng: &mut fastrand::Rng) -> Option<usize> {
    match candidates.len() {
        0 => return None,
        1 => return Some(0),
        _ => {}
    }
    let total: u64 = candidates.iter().map(|c| u64::from(c.weight)).sum();
    let weight = |c: &Candidate| -> u64 { if total == 0 { 1 } else { u64::from(c.weight) } };
    let total = if total == 0 {
        candidates.len() as u64
    } else {
        total
    };

    let first = sample(candidates, total, None, &weight, rng);
    let rest = total - weight(&candidates[first]);
    if rest == 0 {
        return Some(first);
    }
    let second = sample(candidates, rest, Some(first), &weight, rng);

    let (a, b) = (&candidates[first], &candidates[second]);
    // b.load / b.weight < a.load / a.weight, without division.
    let b_lighter =
        u128::from(b.load) * u128::from(weight(a)) < u128::from(a.load) * u128::from(weight(b));
    Some(if b_lighter { second } else { first })
}

/// Draws one index with probability proportional to weight, skipping `except`; `total` is
/// the sum of the weights that may be drawn.
fn sample(
    candidates: &[Candidate],
    total: u64,
    except: Option<usize>,
    weight: &impl Fn(&Candidate) -> u64,
    rng: &mut fastrand::Rng,
) -> usize {
    let mut point = rng.u64(0..total);
    let mut last = 0;
    for (i, c) in candidates.iter().enumerate() {
        if Some(i) == except {
            continue;
        }
        let w = weight(c);
        if point < w {
            return i;
        }
        point -= w;
        if w > 0 {
            last = i;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .map(|&weight| Candidate { load: 0, weight })
            .collect()
    }

    fn histogram(candidates: &[Candidate], picks: usize) -> Vec<usize> {
        let mut rng = fastrand::Rng::with_seed(42);
        let mut counts = vec![0; candidates.len()];
        for _ in 0..picks {
            counts[pick(candidates, &mut rng).expect("a candidate")] += 1;
        }
        counts
    }

    #[test]
    fn none_and_one() {
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(pick(&[], &mut rng), None, "nothing to pick from");
        assert_eq!(pick(&idle(&[5]), &mut rng), Some(0), "the only one");
    }

    #[test]
    fn idle_traffic_splits_by_weight() {
        let counts = histogram(&idle(&[3, 1]), 40_000);
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!(
            (2.8..3.2).contains(&ratio),
            "expected about 3x for weight 3 over weight 1, got {counts:?} ({ratio:.2})"
        );
        let counts = histogram(&idle(&[1, 1, 1]), 30_000);
        for c in &counts {
            assert!(
                (9_000..11_000).contains(c),
                "expected an even split, got {counts:?}"
            );
        }
    }

    #[test]
    fn the_less_loaded_per_weight_wins() {
        let candidates = [
            Candidate { load: 4, weight: 1 },
            Candidate { load: 1, weight: 1 },
        ];
        let counts = histogram(&candidates, 1_000);
        assert_eq!(
            counts,
            [0, 1_000],
            "both are always compared; the idle one wins"
        );

        // 6 in flight on weight 3 is 2 per unit; 1 on weight 1 is 1 per unit.
        let candidates = [
            Candidate { load: 6, weight: 3 },
            Candidate { load: 1, weight: 1 },
        ];
        assert_eq!(
            histogram(&candidates, 1_000),
            [0, 1_000],
            "load is scaled by weight"
        );
    }

    #[test]
    fn zero_weight_only_as_a_last_resort() {
        let counts = histogram(&idle(&[0, 2, 0]), 1_000);
        assert_eq!(
            counts,
            [0, 1_000, 0],
            "weight 0 is never picked beside weight 2"
        );
        let counts = histogram(&idle(&[0, 0]), 1_000);
        assert!(
            counts.iter().all(|&c| c > 300),
            "all weight 0: expected an even split, got {counts:?}"
        );
    }
}
