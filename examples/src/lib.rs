//! The Adder example: a gRPC service that registers in Consul, and a client that finds it
//! there. The binaries (`add-server`, `add-client`, `demo`) are thin shells over this
//! library, so the demo can run servers and a client in one process.

#![forbid(unsafe_code)]

/// The workspace README's code blocks, compiled and run as this crate's doctests: this is
/// the one crate that depends on every crate they use (and has the Adder service they show).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use consul_api::{Client, Config, ConsulRegistry};
use grpc_register::{Registered, Running};
use tonic::{Request, Response, Status};

/// The generated Adder client and server.
#[allow(missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("add");
}

use pb::adder_client::AdderClient;
use pb::adder_server::{Adder, AdderServer};
use pb::{AddReply, AddRequest, Number};

/// The replies of a `RunningSum` call, one per number received.
pub type RunningSumStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<AddReply, Status>> + Send>>;

pub mod demo;
mod served;
mod server_process;

pub use served::Served;
pub use server_process::run_add_server;

/// The Adder service: adds, and says which instance answered.
#[derive(Debug, Clone, Default)]
pub struct AdderService {
    /// Filled in once the server knows its registered id (after binding).
    instance_id: Arc<OnceLock<String>>,
    /// The `Add` calls answered.
    served: Arc<Served>,
}

#[tonic::async_trait]
impl Adder for AdderService {
    async fn add(&self, request: Request<AddRequest>) -> Result<Response<AddReply>, Status> {
        let AddRequest { a, b } = request.into_inner();
        let sum = checked_add(a, b)?;
        // Before the reply exists: whatever a client receives was counted.
        self.served.record();
        Ok(Response::new(AddReply {
            sum,
            instance_id: self.instance_id(),
        }))
    }

    async fn sum(
        &self,
        request: Request<tonic::Streaming<Number>>,
    ) -> Result<Response<AddReply>, Status> {
        let mut numbers = request.into_inner();
        let mut sum = 0i64;
        while let Some(Number { value }) = numbers.message().await? {
            sum = checked_add(sum, value)?;
        }
        Ok(Response::new(AddReply {
            sum,
            instance_id: self.instance_id(),
        }))
    }

    type RunningSumStream = RunningSumStream;

    async fn running_sum(
        &self,
        request: Request<tonic::Streaming<Number>>,
    ) -> Result<Response<RunningSumStream>, Status> {
        let instance_id = self.instance_id();
        let replies = futures_util::stream::try_unfold(
            (request.into_inner(), 0i64),
            move |(mut numbers, sum)| {
                let instance_id = instance_id.clone();
                async move {
                    let Some(Number { value }) = numbers.message().await? else {
                        return Ok(None);
                    };
                    let sum = checked_add(sum, value)?;
                    Ok(Some((AddReply { sum, instance_id }, (numbers, sum))))
                }
            },
        );
        Ok(Response::new(Box::pin(replies)))
    }
}

impl AdderService {
    /// An Adder that counts the `Add` calls it answers in `served`.
    pub fn counting(served: Arc<Served>) -> Self {
        AdderService {
            instance_id: Arc::default(),
            served,
        }
    }

    /// The `Add` calls answered so far.
    pub fn served(&self) -> u64 {
        self.served.count()
    }

    /// A service whose replies name `instance_id` (servers started with [`start_server`] name
    /// their registered id).
    pub fn new(instance_id: impl Into<String>) -> Self {
        let service = AdderService::default();
        let _ = service.instance_id.set(instance_id.into());
        service
    }

    fn instance_id(&self) -> String {
        self.instance_id.get().cloned().unwrap_or_default()
    }
}

fn checked_add(a: i64, b: i64) -> Result<i64, Status> {
    a.checked_add(b)
        .ok_or_else(|| Status::out_of_range(format!("{a} + {b} overflows a 64-bit integer")))
}

/// The Consul registry for the agent `CONSUL_HTTP_ADDR` names (default `127.0.0.1:8500`).
pub fn registry_from_env() -> anyhow::Result<ConsulRegistry> {
    Ok(ConsulRegistry::new(Client::new(Config::from_env()?)?))
}

/// The agent's address as a socket address, when it is one (for choosing the interface to
/// advertise when listening on a wildcard address).
pub fn registry_socket_addr(registry: &ConsulRegistry) -> Option<SocketAddr> {
    let url = &registry.client().config().address;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    format!("{host}:{port}").parse().ok()
}

/// Settings of one Adder server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The service name to register.
    pub service: String,
    /// Where to listen; port 0 picks one.
    pub listen: SocketAddr,
    /// How often Consul checks the server.
    pub check_interval: Duration,
    /// Time between deregistering and closing the listener.
    pub drain: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            service: "adder".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            check_interval: Duration::from_secs(1),
            drain: Duration::from_secs(1),
        }
    }
}

/// The deadline of each call the example client makes, unless told otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// Starts an Adder server registered in `registry`.
pub async fn start_server(
    registry: ConsulRegistry,
    opts: &ServerOptions,
) -> anyhow::Result<Running> {
    start_adder(registry, opts, AdderService::default()).await
}

/// The health service name of the Adder service in `grpc.health.v1` (`add.Adder`).
pub const ADDER_HEALTH_NAME: &str =
    <AdderServer<AdderService> as tonic::server::NamedService>::NAME;

/// [`start_server`] with a given `service` (for example one made with
/// [`AdderService::counting`]). Besides the whole server (`""`), `add.Adder` is marked
/// SERVING in `grpc.health.v1`, so a client that asks about the service it calls gets an
/// answer too.
pub async fn start_adder(
    registry: ConsulRegistry,
    opts: &ServerOptions,
    service: AdderService,
) -> anyhow::Result<Running> {
    let ids = service.instance_id.clone();
    let mut builder = Registered::builder(registry.clone(), opts.service.clone())
        .check_interval(opts.check_interval)
        .deregister_after(Duration::from_secs(60))
        .drain(opts.drain);
    if let Some(addr) = registry_socket_addr(&registry) {
        builder = builder.registry_addr(addr);
    }
    builder.health().set_serving(ADDER_HEALTH_NAME).await;
    let router = tonic::transport::Server::builder().add_service(AdderServer::new(service));
    let running = builder.start(router, opts.listen).await?;
    let _ = ids.set(running.id().to_owned());
    Ok(running)
}

/// Counts of a client's calls.
#[derive(Debug, Default)]
pub struct CallStats {
    ok: AtomicU64,
    failed: AtomicU64,
    per_backend: Mutex<BTreeMap<String, u64>>,
    last_error: Mutex<Option<String>>,
}

impl CallStats {
    /// Calls that succeeded.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Calls that failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Successful calls by the instance that answered.
    pub fn per_backend(&self) -> BTreeMap<String, u64> {
        self.per_backend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last failure's text.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, result: Result<AddReply, Status>) {
        match result {
            Ok(reply) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                *self
                    .per_backend
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(reply.instance_id)
                    .or_default() += 1;
            }
            Err(status) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("{:?}: {}", status.code(), status.message()));
            }
        }
    }

    /// Prints calls per backend, then `calls: N ok, M failed`.
    pub fn print(&self) {
        for (backend, n) in self.per_backend() {
            println!("  {backend}: {n} calls");
        }
        if let Some(err) = self.last_error() {
            println!("  last error: {err}");
        }
        println!("calls: {} ok, {} failed", self.ok(), self.failed());
    }
}

/// Makes calls from `concurrency` tasks until `calls` calls were made (`None`: until `stop`
/// resolves), each with `deadline` as its gRPC deadline, recording each in `stats`.
pub async fn call_loop<T>(
    client: AdderClient<T>,
    calls: Option<u64>,
    concurrency: usize,
    deadline: Duration,
    stats: Arc<CallStats>,
    stop: tokio::sync::watch::Receiver<bool>,
) where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
    T::Future: Send,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..concurrency.max(1) {
        let mut client = client.clone();
        let stats = stats.clone();
        let issued = issued.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = worker as i64;
            loop {
                if *stop.borrow() {
                    return;
                }
                if let Some(limit) = calls
                    && issued.fetch_add(1, Ordering::Relaxed) >= limit
                {
                    return;
                }
                let mut request = Request::new(AddRequest { a: i, b: 1 });
                request.set_timeout(deadline);
                let result = client.add(request).await.map(Response::into_inner);
                let result = result.and_then(|reply| {
                    if reply.sum == i + 1 {
                        Ok(reply)
                    } else {
                        Err(Status::internal(format!(
                            "{i} + 1 answered as {}",
                            reply.sum
                        )))
                    }
                });
                stats.record(result);
                i += 1;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// With `Some(addr)`, serves the process's metrics in the Prometheus text format at
/// `http://{addr}/` (any path; Prometheus scrapes `/metrics`) and describes every metric of
/// the crates (help text and units). With `None`, nothing: no recorder is installed, so the
/// libraries' metrics cost nothing. Durations (`*_seconds`) are histograms with buckets
/// from 100 µs to 10 s. Must be called inside the tokio runtime, at most once.
pub fn serve_metrics(addr: Option<SocketAddr>) -> anyhow::Result<()> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let Some(addr) = addr else {
        return Ok(());
    };
    const SECONDS: [f64; 12] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0, 10.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS)?
        .install()
        .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))?;
    grpc_resolve::metrics::describe();
    consul_api::metrics::describe();
    grpc_register::metrics::describe();
    consul_dev::metrics::describe();
    Ok(())
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
