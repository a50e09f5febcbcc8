//! The pace of polls: across all the watches of a transport that hold no blocking slot, at
//! most one poll per spacing reaches the agent, whatever their number. Uses only tokio.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Hands out poll turns `spacing` apart, first come first served.
#[derive(Debug)]
pub(crate) struct Pacer {
    spacing: Duration,
    /// The earliest time the next turn may start.
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    pub(crate) fn new(spacing: Duration) -> Self {
        Pacer {
            spacing,
            next: Mutex::new(None),
        }
    }

    /// Waits for the next turn. tokio's mutex queues waiters in order, so with more watches
    /// due than turns, each gets one in turn: a round robin at the budget's rate.
    pub(crate) async fn turn(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.spacing);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_whatever_the_number_of_takers() {
        let pacer = std::sync::Arc::new(Pacer::new(Duration::from_millis(100)));
        let start = Instant::now();
        let takers: Vec<_> = (0..20)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.turn().await;
                    Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for t in takers {
            times.push(t.await.unwrap() - start);
        }
        times.sort();
        for (i, t) in times.iter().enumerate() {
            assert_eq!(
                *t,
                Duration::from_millis(100) * i as u32,
                "turn {i} starts at {t:?}"
            );
        }
    }
}
