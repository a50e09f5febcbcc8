//! Starting a check's runner and applying its results: the [`Checks`] handle starts one task
//! per TTL, HTTP, TCP or gRPC check, and every result, the agent's own or a client's TTL
//! update, goes through Consul's thresholds ([`apply_result`]). Uses `state`, `error`,
//! `wire`'s durations and the probes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::probe::{self, Clients};
use super::tls::CheckTls;
use crate::error::Error;
use crate::state::{CheckSpec, Key, Runner, Shared, Status, Store};
use crate::wire::nanos_to_duration;

/// Checks never run more often than this.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Caps output like Consul: the first `max` bytes then ` ... (captured max of N bytes)`.
pub(crate) fn truncate_output(output: String, max: usize) -> String {
    if output.len() <= max {
        return output;
    }
    let total = output.len();
    // Cut on a char boundary so the output stays valid UTF-8 (Go would cut mid-rune).
    let mut cut = max;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} ... (captured {max} of {total} bytes)", &output[..cut])
}

/// Applies one check result through the thresholds (Consul's status handler).
/// `generation` guards against results from a runner that has since been replaced.
pub(crate) fn apply_result(
    store: &mut Store,
    key: &Key,
    generation: Option<u64>,
    status: Status,
    output: String,
) {
    let Some(check) = store.checks.get_mut(key) else {
        return;
    };
    if generation.is_some_and(|g| g != check.generation) {
        return;
    }
    let output = truncate_output(output, check.output_max_size);
    let target = if status == Status::Critical {
        check.successes = 0;
        check.failures = check.failures.saturating_add(1);
        if check.failures >= check.failures_before_critical {
            Some(Status::Critical)
        } else if check.failures >= check.failures_before_warning {
            Some(Status::Warning)
        } else {
            None
        }
    } else {
        check.failures = 0;
        check.successes = check.successes.saturating_add(1);
        (check.successes >= check.success_before_passing).then_some(status)
    };
    match target {
        Some(s) => {
            store.set_check_status(key, s, output);
        }
        None => tracing::debug!(check = %key.1, "check result held back by thresholds"),
    }
}

/// The effective interval of a periodic check.
pub(crate) fn effective_interval(spec: &CheckSpec) -> Duration {
    nanos_to_duration(spec.interval).max(MIN_INTERVAL)
}

// === Checks ===

/// Starts the agent's own check runners: each reports into the store it was given, HTTP
/// checks share its clients and gRPC checks its TLS configurations. Cloning it is cheap
/// (`Arc`s and client handles).
#[derive(Debug, Clone)]
pub(crate) struct Checks {
    shared: Arc<Shared>,
    clients: Clients,
    tls: CheckTls,
}

impl Checks {
    /// A runner reporting into `shared`, whose HTTPS and gRPC-over-TLS checks trust
    /// `ca_pem` instead of the public roots when given; fails if the HTTP clients or the
    /// TLS configurations cannot be built from it.
    pub(crate) fn new(shared: Arc<Shared>, ca_pem: Option<&[u8]>) -> Result<Checks, Error> {
        Ok(Checks {
            shared,
            clients: Clients::new(ca_pem)?,
            tls: CheckTls::new(ca_pem).map_err(Error::CheckTls)?,
        })
    }

    /// Fills a stored check's runtime fields from its definition and starts its runner.
    pub(crate) fn start(&self, store: &mut Store, key: &Key) {
        store.stop_runner(key);
        let generation = store.next_generation();
        let Some(check) = store.checks.get_mut(key) else {
            return;
        };
        check.generation = generation;
        // Counters start at their thresholds so the first result applies at once.
        check.successes = check.success_before_passing;
        check.failures = check.failures_before_critical;
        let Some(spec) = check.spec.clone() else {
            return;
        };
        let handle = match check.runner.clone() {
            Runner::None => return,
            Runner::Ttl(ttl) => {
                let reset = Arc::new(Notify::new());
                check.ttl_reset = Some(Arc::clone(&reset));
                tokio::spawn(run_ttl(
                    Arc::clone(&self.shared),
                    key.clone(),
                    generation,
                    ttl,
                    reset,
                ))
            }
            runner => {
                tokio::spawn(
                    self.clone()
                        .run_periodic(key.clone(), generation, spec, runner),
                )
            }
        };
        store.runners.insert(key.clone(), handle.abort_handle());
    }

    async fn run_periodic(self, key: Key, generation: u64, spec: CheckSpec, runner: Runner) {
        let interval = effective_interval(&spec);
        // A random first offset spreads checks registered together.
        let offset = Duration::from_nanos(fastrand::u64(
            0..u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
        ));
        tokio::time::sleep(offset).await;
        loop {
            let (status, output) = match runner {
                Runner::Http => probe::run_http(&self.clients, &spec).await,
                Runner::Tcp => probe::run_tcp(&spec).await,
                Runner::Grpc => probe::run_grpc(&self.tls, &spec).await,
                Runner::None | Runner::Ttl(_) => return,
            };
            tracing::debug!(check = %key.1, status = status.as_str(), "check ran");
            {
                let mut store = self.shared.lock();
                if !store.checks.contains_key(&key) {
                    return;
                }
                apply_result(&mut store, &key, Some(generation), status, output);
            }
            tokio::time::sleep(interval).await;
        }
    }
}

async fn run_ttl(
    shared: Arc<Shared>,
    key: Key,
    generation: u64,
    ttl: Duration,
    reset: Arc<Notify>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(ttl) => {
                {
                    let mut store = shared.lock();
                    let Some(check) = store.checks.get(&key) else { return };
                    let output = if check.output.is_empty() {
                        "TTL expired".to_owned()
                    } else {
                        format!("TTL expired (last output before timeout follows): {}", check.output)
                    };
                    tracing::info!(check = %key.1, "TTL expired");
                    apply_result(&mut store, &key, Some(generation), Status::Critical, output);
                }
                // Stays critical until the next update restarts the timer.
                reset.notified().await;
            }
            () = reset.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_with_consul_suffix() {
        assert_eq!(truncate_output("short".to_owned(), 4096), "short");
        let out = truncate_output("a".repeat(5000), 4096);
        assert_eq!(
            out,
            format!("{} ... (captured 4096 of 5000 bytes)", "a".repeat(4096))
        );
        // Never splits a UTF-8 character.
        let out = truncate_output("é".repeat(3), 3);
        assert_eq!(out, "é ... (captured 3 of 6 bytes)");
    }
}
