//! The pool's maintenance task: what runs on a timer rather than per call. Every
//! failure-rate interval it ends the interval ([`Pool::sweep_failure_rates`]); while a
//! slow-start ramp runs it refreshes ramps in steps ([`Pool::refresh_ramps`]); while the
//! shrink guard keeps fallbacks it ends their hold in time ([`Pool::review_fallbacks`]).
//! It sleeps in between, and is woken early when a ramp or a hold starts.
//!
//! May use: `set` (the pool it maintains).

use std::sync::Arc;

use tokio::time::Instant;

use super::set::Pool;

/// Maintains `pool` until aborted (the channel is gone).
pub(crate) async fn run(pool: Arc<Pool>) {
    let rule = pool.config.failure_rate;
    let mut next_sweep = (rule.threshold_percent > 0).then(|| Instant::now() + rule.interval);
    loop {
        // Registered before looking, so a ramp that starts while we look is not missed.
        let woken = pool.maintenance.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = Instant::now();
        if let Some(at) = next_sweep
            && at <= now
        {
            pool.sweep_failure_rates(now);
            next_sweep = Some(now + rule.interval);
        }
        let next = [
            next_sweep,
            pool.refresh_ramps(now),
            pool.review_fallbacks(now),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = &mut woken => {}
                }
            }
            None => woken.await,
        }
    }
}
