//! The health state over HTTP/1.1 on a side port, for registries that check over HTTP
//! ([`CheckKind::HttpHealth`](crate::CheckKind::HttpHealth)): a tonic server speaks
//! HTTP/2 only, and Consul's HTTP checks speak HTTP/1.1. Uses only the health handle; the
//! builder starts it and the running server owns it.
//!
//! `GET /health` answers for the whole server, `GET /health/<service>` for one gRPC
//! service, in the words Consul's HTTP checks read: 200 passing, 429 warning, 503
//! critical, with the health state's output as the body (Consul shows it as the check's
//! output); 404 for a service the health state does not know or another path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use discovery_core::HealthStatus;
use health::Health;
use http::{Method, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The route for the whole server; one service's is `/health/<service>`.
pub(crate) const ROUTE: &str = "/health";

/// The path the registry asks for the health of `service` ([`health::SERVER`] for the
/// whole server).
pub(crate) fn path_of(service: &str) -> String {
    if service.is_empty() {
        ROUTE.to_owned()
    } else {
        format!("{ROUTE}/{service}")
    }
}

/// The answer to `method path`, given what the health state says of a service (`None`
/// for one it does not know).
///
/// ```text
/// GET /health            → the whole server
/// GET /health/calc.Adder → calc.Adder
/// ```
pub(crate) fn answer(
    method: &Method,
    path: &str,
    status_of: impl Fn(&str) -> Option<(HealthStatus, String)>,
) -> (StatusCode, String) {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n".to_owned());
    }
    let service = match path.strip_prefix(ROUTE) {
        Some("") => health::SERVER,
        Some(rest) => match rest.strip_prefix('/') {
            Some(service) if !service.is_empty() && !service.contains('/') => service,
            _ => return (StatusCode::NOT_FOUND, "no such route\n".to_owned()),
        },
        None => return (StatusCode::NOT_FOUND, "no such route\n".to_owned()),
    };
    match status_of(service) {
        None => (
            StatusCode::NOT_FOUND,
            format!("{service:?} SERVICE_UNKNOWN\n"),
        ),
        Some((status, output)) => {
            let code = match status {
                HealthStatus::Passing => StatusCode::OK,
                HealthStatus::Warning => StatusCode::TOO_MANY_REQUESTS,
                HealthStatus::Critical => StatusCode::SERVICE_UNAVAILABLE,
            };
            (code, format!("{output}\n"))
        }
    }
}

/// How long a connection may take to send its request head; Consul's checks send at once.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The serving side port; dropping it closes the port and every open connection.
#[derive(Debug)]
pub(crate) struct HttpHealth {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

// === impl HttpHealth ===

impl HttpHealth {
    /// Binds `listen` (port 0 picks a free port) and serves `health` on it.
    pub(crate) fn start(listen: SocketAddr, health: Health) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, health));
        Ok(HttpHealth { local_addr, task })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HttpHealth {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, health: Health) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::debug!(error = %err, "health port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let health = health.clone();
        connections.spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let (code, body) = answer(request.method(), request.uri().path(), |service| {
                    health
                        .status(service)
                        .map(|_| health.registry_status(service))
                });
                let mut response = http::Response::new(body);
                *response.status_mut() = code;
                std::future::ready(Ok::<_, Infallible>(response))
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(error = %err, "health port: connection failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(service: &str) -> Option<(HealthStatus, String)> {
        match service {
            "" => Some((HealthStatus::Passing, "SERVING".into())),
            "calc.Slow" => Some((HealthStatus::Warning, "SERVING; load: high".into())),
            "calc.Down" => Some((HealthStatus::Critical, "NOT_SERVING".into())),
            _ => None,
        }
    }

    #[test]
    fn each_status_answers_in_the_code_consul_reads() {
        let get = |path: &str| answer(&Method::GET, path, state);
        assert_eq!(
            get("/health"),
            (StatusCode::OK, "SERVING\n".into()),
            "the whole server, passing: 200 with the output"
        );
        assert_eq!(
            get("/health/calc.Slow").0,
            StatusCode::TOO_MANY_REQUESTS,
            "warning: 429, which Consul reads as warning"
        );
        assert_eq!(
            get("/health/calc.Down").0,
            StatusCode::SERVICE_UNAVAILABLE,
            "critical: 503"
        );
        assert_eq!(
            get("/health/calc.Unknown").0,
            StatusCode::NOT_FOUND,
            "a service the health state does not know"
        );
        assert_eq!(
            answer(&Method::HEAD, "/health", state).0,
            StatusCode::OK,
            "HEAD as GET"
        );
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        for path in ["/", "/healthz", "/health/", "/health/a/b", "/other/health"] {
            assert_eq!(
                answer(&Method::GET, path, state).0,
                StatusCode::NOT_FOUND,
                "{path} is no route"
            );
        }
        assert_eq!(
            answer(&Method::POST, "/health", state).0,
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD"
        );
    }

    #[test]
    fn each_service_has_its_path() {
        assert_eq!(path_of(health::SERVER), "/health");
        assert_eq!(path_of("calc.Adder"), "/health/calc.Adder");
    }
}
