//! Check runners: the agent itself runs TTL, HTTP, TCP and gRPC checks, applies Consul's
//! success/failure thresholds, and reaps services critical for too long.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Config;
use crate::state::{Key, Runner, Status, Store};
use crate::web::AppState;
use crate::wire::{CheckDef, nanos_to_duration};

/// Consul's default (and our maximum) check output size.
pub(crate) const DEFAULT_OUTPUT_MAX_SIZE: usize = 4096;
/// Checks never run more often than this.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default timeout of HTTP, TCP and gRPC checks.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Fills a stored check's runtime fields from its definition and starts its runner.
pub(crate) fn start(state: &AppState, store: &mut Store, key: &Key) {
    store.stop_runner(key);
    let generation = store.next_generation();
    let Some(check) = store.checks.get_mut(key) else {
        return;
    };
    check.generation = generation;
    // Counters start at their thresholds so the first result applies at once.
    check.successes = check.success_before_passing;
    check.failures = check.failures_before_critical;
    let Some(def) = check.def.clone() else {
        return;
    };
    let handle = match check.runner.clone() {
        Runner::None => return,
        Runner::Ttl(ttl) => {
            let reset = Arc::new(Notify::new());
            check.ttl_reset = Some(Arc::clone(&reset));
            tokio::spawn(run_ttl(
                Arc::clone(state),
                key.clone(),
                generation,
                ttl,
                reset,
            ))
        }
        runner => tokio::spawn(run_periodic(
            Arc::clone(state),
            key.clone(),
            generation,
            def,
            runner,
        )),
    };
    store.runners.insert(key.clone(), handle.abort_handle());
}

/// The effective interval of a periodic check.
pub(crate) fn effective_interval(def: &CheckDef) -> Duration {
    nanos_to_duration(def.interval).max(MIN_INTERVAL)
}

fn effective_timeout(def: &CheckDef) -> Duration {
    let t = nanos_to_duration(def.timeout);
    if t.is_zero() { DEFAULT_TIMEOUT } else { t }
}

async fn run_ttl(state: AppState, key: Key, generation: u64, ttl: Duration, reset: Arc<Notify>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(ttl) => {
                {
                    let mut store = state.lock();
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

async fn run_periodic(state: AppState, key: Key, generation: u64, def: CheckDef, runner: Runner) {
    let interval = effective_interval(&def);
    // A random first offset spreads checks registered together.
    let offset = Duration::from_nanos(fastrand::u64(
        0..u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
    ));
    tokio::time::sleep(offset).await;
    loop {
        let (status, output) = match runner {
            Runner::Http => run_http(&state, &def).await,
            Runner::Tcp => run_tcp(&def).await,
            Runner::Grpc => run_grpc(&def).await,
            Runner::None | Runner::Ttl(_) => return,
        };
        tracing::debug!(check = %key.1, status = status.as_str(), "check ran");
        {
            let mut store = state.lock();
            if !store.checks.contains_key(&key) {
                return;
            }
            apply_result(&mut store, &key, Some(generation), status, output);
        }
        tokio::time::sleep(interval).await;
    }
}

async fn run_http(state: &AppState, def: &CheckDef) -> (Status, String) {
    let method = if def.method.is_empty() {
        "GET"
    } else {
        def.method.as_str()
    };
    let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return (Status::Critical, format!("invalid HTTP method {method:?}"));
    };
    let insecure;
    let client = if def.tls_skip_verify {
        // Rare in development; a client per run keeps the shared ones strict.
        insecure = reqwest::Client::builder()
            .user_agent("Consul Health Check")
            .no_proxy()
            .pool_max_idle_per_host(0)
            .danger_accept_invalid_certs(true)
            .redirect(if def.disable_redirects {
                reqwest::redirect::Policy::none()
            } else {
                reqwest::redirect::Policy::default()
            })
            .build();
        match &insecure {
            Ok(c) => c,
            Err(e) => return (Status::Critical, format!("HTTP client: {e}")),
        }
    } else if def.disable_redirects {
        &state.http_no_redirect
    } else {
        &state.http_follow
    };
    let max = usize::try_from(def.output_max_size)
        .ok()
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_OUTPUT_MAX_SIZE);
    let mut req = client
        .request(m, &def.http)
        .timeout(effective_timeout(def))
        .header("Accept", "text/plain, text/*, */*")
        .header("Connection", "close");
    for (name, values) in &def.header {
        for v in values {
            req = req.header(name.as_str(), v.as_str());
        }
    }
    if !def.body.is_empty() {
        req = req.body(def.body.clone());
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (Status::Critical, go_http_error(method, &def.http, &e)),
    };
    let code = resp.status();
    let mut body = Vec::new();
    while body.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(max);
    let status_line = format!(
        "{} {}",
        code.as_u16(),
        code.canonical_reason().unwrap_or("")
    );
    let output = format!(
        "HTTP {method} {}: {} Output: {}",
        def.http,
        status_line.trim_end(),
        String::from_utf8_lossy(&body)
    );
    let status = if code.is_success() {
        Status::Passing
    } else if code.as_u16() == 429 {
        Status::Warning
    } else {
        Status::Critical
    };
    (status, output)
}

/// Go's `net/http` wording for a failed check request:
/// `Get "<url>": dial tcp <addr>: connect: connection refused`.
fn go_http_error(method: &str, url: &str, e: &reqwest::Error) -> String {
    let verb: String = method
        .chars()
        .take(1)
        .chain(method.chars().skip(1).flat_map(char::to_lowercase))
        .collect();
    let mut io = None;
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        if let Some(ioe) = c.downcast_ref::<std::io::Error>() {
            io = Some(ioe);
            break;
        }
        cur = c.source();
    }
    let detail = if e.is_timeout() {
        "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_owned()
    } else if let (true, Some(ioe)) = (e.is_connect(), io) {
        let addr = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| {
                Some(format!(
                    "{}:{}",
                    u.host_str()?.to_owned(),
                    u.port_or_known_default()?
                ))
            })
            .unwrap_or_default();
        format!("dial tcp {addr}: {}", go_dial_error(ioe))
    } else {
        error_chain(e)
    };
    format!("{verb} \"{url}\": {detail}")
}

/// An error and its causes, like Go's wrapped error strings.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn run_tcp(def: &CheckDef) -> (Status, String) {
    match tokio::time::timeout(effective_timeout(def), TcpStream::connect(def.tcp.as_str())).await {
        Ok(Ok(_)) => (Status::Passing, format!("TCP connect {}: Success", def.tcp)),
        Ok(Err(e)) => (
            Status::Critical,
            format!("dial tcp {}: {}", def.tcp, go_dial_error(&e)),
        ),
        Err(_) => (
            Status::Critical,
            format!("dial tcp {}: i/o timeout", def.tcp),
        ),
    }
}

/// Go's wording for common dial failures.
fn go_dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_owned(),
        _ => e.to_string(),
    }
}

async fn run_grpc(def: &CheckDef) -> (Status, String) {
    let (target, service) = def.grpc.split_once('/').unwrap_or((def.grpc.as_str(), ""));
    if def.grpc_use_tls {
        return (
            Status::Critical,
            format!(
                "gRPC check {}: TLS is not supported by consul-dev",
                def.grpc
            ),
        );
    }
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{target}")) {
        Ok(e) => e.connect_timeout(effective_timeout(def)),
        Err(e) => return (Status::Critical, format!("gRPC check {}: {e}", def.grpc)),
    };
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let call = async {
        let channel = endpoint.connect().await.map_err(|e| error_chain(&e))?;
        HealthClient::new(channel)
            .check(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("rpc error: code = {:?} desc = {}", s.code(), s.message()))
    };
    match tokio::time::timeout(effective_timeout(def), call).await {
        Ok(Ok(resp)) if resp.status == ServingStatus::Serving as i32 => {
            (Status::Passing, format!("gRPC check {}: success", def.grpc))
        }
        Ok(Ok(resp)) => {
            let name = ServingStatus::try_from(resp.status)
                .map(|s| s.as_str_name())
                .unwrap_or("UNKNOWN");
            (
                Status::Critical,
                format!("gRPC {} serving status: {name}", def.grpc),
            )
        }
        Ok(Err(e)) => (
            Status::Critical,
            format!("gRPC check {}: failed: {e}", def.grpc),
        ),
        Err(_) => (
            Status::Critical,
            format!("gRPC check {}: failed: context deadline exceeded", def.grpc),
        ),
    }
}

/// The effective `DeregisterCriticalServiceAfter`: none when unset, else at least the floor
/// (Consul: 1m).
pub(crate) fn deregister_after(requested: Duration, config: &Config) -> Option<Duration> {
    (!requested.is_zero()).then(|| requested.max(config.min_deregister_after))
}

/// Removes services whose check has been critical longer than its
/// `DeregisterCriticalServiceAfter`, every `reaper_interval`.
pub(crate) async fn reaper(state: AppState) {
    let period = state.config.reaper_interval.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut store = state.lock();
        let doomed: Vec<(String, String)> = store
            .checks
            .values()
            .filter(|c| !c.service_id.is_empty())
            .filter_map(|c| {
                let after = c.deregister_after?;
                let since = c.critical_since?;
                (c.status == Status::Critical && now.duration_since(since) > after)
                    .then(|| (c.node.clone(), c.service_id.clone()))
            })
            .collect();
        for (node, id) in doomed {
            if store.remove_service(&node, &id) {
                tracing::info!(service = %id, "reaped service critical past DeregisterCriticalServiceAfter");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio::sync::watch;

    use super::*;
    use crate::state::{Check, Service, Shared};
    use crate::wire::Weights;

    #[test]
    fn reaper_defaults_are_consuls() {
        let config = Config::default();
        assert_eq!(config.reaper_interval, Duration::from_secs(30), "reaper");
        assert_eq!(
            config.min_deregister_after,
            Duration::from_secs(60),
            "floor"
        );
        let secs = Duration::from_secs;
        assert_eq!(
            deregister_after(secs(10), &config),
            Some(secs(60)),
            "raised"
        );
        assert_eq!(deregister_after(secs(90), &config), Some(secs(90)), "kept");
        assert_eq!(deregister_after(Duration::ZERO, &config), None, "unset");
    }

    fn add_instance(store: &mut Store, name: &str, status: Status) -> Key {
        let node = "n".to_owned();
        store.insert_service(Service {
            node: node.clone(),
            kind: String::new(),
            id: name.to_owned(),
            name: name.to_owned(),
            tags: Vec::new(),
            address: String::new(),
            tagged_addresses: BTreeMap::new(),
            meta: BTreeMap::new(),
            port: 0,
            socket_path: String::new(),
            weights: Weights::default(),
            enable_tag_override: false,
            locality: None,
            create_index: 1,
            modify_index: 1,
        });
        let check_id = format!("service:{name}");
        let mut check = Check::new(&node, &check_id, "c", status);
        check.service_id = name.to_owned();
        check.service_name = name.to_owned();
        check.deregister_after = deregister_after(Duration::from_secs(10), &Config::default());
        store.insert_check(check);
        (node, check_id)
    }

    /// Case 55 at Consul's real timings, in paused time: 10s is raised to 1m, the clock
    /// starts at the transition to critical, and the service goes at the first 30s reaper
    /// run past the timeout, not before.
    #[tokio::test(start_paused = true)]
    async fn reaped_at_the_first_run_past_the_timeout() {
        let (_stop, stop_rx) = watch::channel(false);
        let state =
            Arc::new(Shared::new(Config::default().node_name("n"), stop_rx).expect("state builds"));
        let start = Instant::now();
        let (web, stuck) = {
            let mut store = state.lock();
            let web = add_instance(&mut store, "web", Status::Passing);
            let stuck = add_instance(&mut store, "stuck", Status::Critical);
            (web, stuck)
        };
        let reaper = tokio::spawn(reaper(Arc::clone(&state)));
        let present = |name: &str| state.lock().instances(name).next().is_some();

        tokio::time::sleep_until(start + Duration::from_secs(10)).await;
        assert!(
            state
                .lock()
                .set_check_status(&web, Status::Critical, "down".to_owned()),
            "web turns critical at 10s"
        );
        // Reaper runs at 30s, 60s, 90s; the 1m timeout passes at 70s.
        tokio::time::sleep_until(start + Duration::from_millis(89_900)).await;
        assert!(present("web"), "not reaped before the first run past 70s");
        tokio::time::sleep_until(start + Duration::from_millis(90_100)).await;
        assert!(!present("web"), "reaped by the 90s run");
        assert!(
            !state.lock().checks.contains_key(&web),
            "its check is gone too"
        );
        assert!(
            present("stuck") && state.lock().checks.contains_key(&stuck),
            "registered-as-critical never starts the clock"
        );
        reaper.abort();
    }

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
