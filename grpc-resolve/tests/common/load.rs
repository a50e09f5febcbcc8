//! Steady load on a channel: callers each making one health check after another, every
//! outcome recorded with the time it came, so tests measure stretches by events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use grpc_resolve::DiscoveredChannel;

/// One call's outcome and when it came.
#[derive(Debug)]
pub struct Outcome {
    pub at: Instant,
    pub result: Result<(), tonic::Status>,
}

/// Callers running until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    successes: Arc<watch::Sender<usize>>,
    callers: Vec<JoinHandle<()>>,
}

impl Load {
    /// `callers` callers on `channel`, each call with `deadline`.
    pub fn start(channel: &DiscoveredChannel, callers: usize, deadline: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let successes = Arc::new(watch::Sender::new(0usize));
        let callers = (0..callers)
            .map(|_| {
                let (stop, outcomes) = (stop.clone(), outcomes.clone());
                let successes = successes.clone();
                let mut client = HealthClient::new(channel.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let mut request = tonic::Request::new(HealthCheckRequest {
                            service: String::new(),
                        });
                        request.set_timeout(deadline);
                        let result = client.check(request).await.map(drop);
                        if result.is_ok() {
                            successes.send_modify(|n| *n += 1);
                        }
                        outcomes.lock().expect("unpoisoned").push(Outcome {
                            at: Instant::now(),
                            result,
                        });
                    }
                })
            })
            .collect();
        Load {
            stop,
            outcomes,
            successes,
            callers,
        }
    }

    /// Successful calls so far.
    pub fn successes(&self) -> usize {
        *self.successes.borrow()
    }

    /// Waits until `n` more calls have succeeded than now.
    pub async fn wait_successes(&self, n: usize) {
        let mut successes = self.successes.subscribe();
        let target = *successes.borrow_and_update() + n;
        super::settle(successes.wait_for(|done| *done >= target))
            .await
            .expect("the load runs");
    }

    /// Stops the callers, waits for their last calls, and returns every outcome in order.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for caller in self.callers {
            caller.await.expect("a caller ends cleanly");
        }
        let mut outcomes = std::mem::take(&mut *self.outcomes.lock().expect("unpoisoned"));
        outcomes.sort_by_key(|o| o.at);
        outcomes
    }
}

/// The longest time between two successes (or from `from` to the first) among `outcomes`
/// after `from`.
pub fn longest_gap(outcomes: &[Outcome], from: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for outcome in outcomes.iter().filter(|o| o.at >= from && o.result.is_ok()) {
        longest = longest.max(outcome.at - last);
        last = outcome.at;
    }
    longest
}
