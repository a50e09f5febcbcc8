//! The probes of HTTP, TCP and gRPC checks, with the HTTP clients they share ([`Clients`]):
//! each run answers a status and an output in Go's words. Uses `state`'s model, `error`,
//! `wire`'s durations and the TLS of gRPC checks.

use std::time::Duration;

use tokio::net::TcpStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::tls::{CheckTls, HandshakeError};
use crate::error::{Error, causes, chain};
use crate::state::{CheckSpec, DEFAULT_OUTPUT_MAX_SIZE, Status};
use crate::wire::nanos_to_duration;

/// Default timeout of HTTP, TCP and gRPC checks.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP clients all HTTP checks share, one per redirect policy. Cloning one is cheap.
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    follow: reqwest::Client,
    no_redirect: reqwest::Client,
}

impl Clients {
    /// Builds both clients; with `ca_pem` (the agent's CA for checks) they trust its
    /// certificates instead of the public roots.
    pub(crate) fn new(ca_pem: Option<&[u8]>) -> Result<Clients, Error> {
        let client_error = |e| Error::Client(Box::new(e));
        let roots = match ca_pem {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem).map_err(client_error)?,
            None => Vec::new(),
        };
        let client = || {
            let builder = check_client().tls_built_in_root_certs(ca_pem.is_none());
            roots
                .iter()
                .fold(builder, |b, cert| b.add_root_certificate(cert.clone()))
        };
        let build = |b: reqwest::ClientBuilder| b.build().map_err(client_error);
        Ok(Clients {
            follow: build(client())?,
            no_redirect: build(client().redirect(reqwest::redirect::Policy::none()))?,
        })
    }
}

/// What every check client is: Consul's user agent, no proxy, no kept-alive connections.
fn check_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent("Consul Health Check")
        .no_proxy()
        .pool_max_idle_per_host(0)
}

fn effective_timeout(spec: &CheckSpec) -> Duration {
    let t = nanos_to_duration(spec.timeout);
    if t.is_zero() { DEFAULT_TIMEOUT } else { t }
}

/// Runs an HTTP check: 2xx passes, 429 warns, anything else (or no answer) is critical.
pub(crate) async fn run_http(clients: &Clients, spec: &CheckSpec) -> (Status, String) {
    let method = if spec.method.is_empty() {
        "GET"
    } else {
        spec.method.as_str()
    };
    let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return (Status::Critical, format!("invalid HTTP method {method:?}"));
    };
    let insecure;
    let client = if spec.tls_skip_verify {
        // Rare in development; a client per run keeps the shared ones strict.
        insecure = check_client()
            .danger_accept_invalid_certs(true)
            .redirect(if spec.disable_redirects {
                reqwest::redirect::Policy::none()
            } else {
                reqwest::redirect::Policy::default()
            })
            .build();
        match &insecure {
            Ok(c) => c,
            Err(e) => return (Status::Critical, format!("HTTP client: {e}")),
        }
    } else if spec.disable_redirects {
        &clients.no_redirect
    } else {
        &clients.follow
    };
    let max = usize::try_from(spec.output_max_size)
        .ok()
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_OUTPUT_MAX_SIZE);
    let mut req = client
        .request(m, &spec.http)
        .timeout(effective_timeout(spec))
        .header("Accept", "text/plain, text/*, */*")
        .header("Connection", "close");
    for (name, values) in &spec.header {
        for v in values {
            req = req.header(name.as_str(), v.as_str());
        }
    }
    if !spec.body.is_empty() {
        req = req.body(spec.body.clone());
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (Status::Critical, go_http_error(method, &spec.http, &e)),
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
        spec.http,
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
    let io = causes(e).find_map(|c| c.downcast_ref::<std::io::Error>());
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
        chain(e)
    };
    format!("{verb} \"{url}\": {detail}")
}

/// Runs a TCP check: connecting passes.
pub(crate) async fn run_tcp(spec: &CheckSpec) -> (Status, String) {
    match tokio::time::timeout(
        effective_timeout(spec),
        TcpStream::connect(spec.tcp.as_str()),
    )
    .await
    {
        Ok(Ok(_)) => (
            Status::Passing,
            format!("TCP connect {}: Success", spec.tcp),
        ),
        Ok(Err(e)) => (
            Status::Critical,
            format!("dial tcp {}: {}", spec.tcp, go_dial_error(&e)),
        ),
        Err(_) => (
            Status::Critical,
            format!("dial tcp {}: i/o timeout", spec.tcp),
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

/// Runs a gRPC check (`grpc.health.v1.Health/Check`), over TLS with `GRPCUseTLS`: only
/// `SERVING` passes.
pub(crate) async fn run_grpc(tls: &CheckTls, spec: &CheckSpec) -> (Status, String) {
    let (target, service) = spec
        .grpc
        .split_once('/')
        .unwrap_or((spec.grpc.as_str(), ""));
    let connector = if spec.grpc_use_tls {
        match tls.connector(target, &spec.tls_server_name, spec.tls_skip_verify) {
            Ok(c) => Some(c),
            Err(e) => {
                return (
                    Status::Critical,
                    format!("gRPC check {}: failed: {e}", spec.grpc),
                );
            }
        }
    } else {
        None
    };
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{target}")) {
        Ok(e) => e.connect_timeout(effective_timeout(spec)),
        Err(e) => return (Status::Critical, format!("gRPC check {}: {e}", spec.grpc)),
    };
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let call = async {
        let channel = match connector {
            Some(tls) => endpoint.connect_with_connector(tls).await,
            None => endpoint.connect().await,
        }
        .map_err(|e| {
            match causes(&e).find_map(|c| c.downcast_ref::<HandshakeError>()) {
                // grpc-go's words for a connection its credentials refused.
                Some(h) => {
                    format!("rpc error: code = Unavailable desc = connection error: desc = \"{h}\"")
                }
                None => chain(&e),
            }
        })?;
        HealthClient::new(channel)
            .check(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("rpc error: code = {:?} desc = {}", s.code(), s.message()))
    };
    match tokio::time::timeout(effective_timeout(spec), call).await {
        Ok(Ok(resp)) if resp.status == ServingStatus::Serving as i32 => (
            Status::Passing,
            format!("gRPC check {}: success", spec.grpc),
        ),
        Ok(Ok(resp)) => {
            let name = ServingStatus::try_from(resp.status)
                .map(|s| s.as_str_name())
                .unwrap_or("UNKNOWN");
            (
                Status::Critical,
                format!("gRPC {} serving status: {name}", spec.grpc),
            )
        }
        Ok(Err(e)) => (
            Status::Critical,
            format!("gRPC check {}: failed: {e}", spec.grpc),
        ),
        Err(_) => (
            Status::Critical,
            format!(
                "gRPC check {}: failed: context deadline exceeded",
                spec.grpc
            ),
        ),
    }
}
