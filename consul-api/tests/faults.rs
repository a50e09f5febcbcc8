//! The client and its watches against an in-process HTTP server that misbehaves on purpose.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query as Params, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use consul_api::{Client, Config, ConsulRegistry, Error, QueryOptions, WatchConfig};
use discovery_core::{Backoff, Query, Resolver, Update, UpdateStream};
use futures_util::StreamExt;
use tokio::sync::Notify;

/// What the fake answers to one request.
#[derive(Debug, Clone)]
enum Answer {
    /// The current data at `index` (blocking like Consul when asked to).
    Normal,
    /// This status and text.
    Status(u16, &'static str),
    /// 200 with this body and index.
    Body(&'static str, u64),
    /// The current data but with this index in the header.
    Index(u64),
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// 200 with a body of this many bytes.
    Huge(usize),
}

#[derive(Debug, Default)]
struct Fake {
    index: Mutex<u64>,
    instances: Mutex<Vec<(String, u16)>>,
    script: Mutex<VecDeque<Answer>>,
    changed: Notify,
    /// The query string of every request, in order.
    seen: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Fake {
    fn set(&self, instances: &[(&str, u16)]) {
        *self.instances.lock().unwrap() =
            instances.iter().map(|(i, p)| (i.to_string(), *p)).collect();
        *self.index.lock().unwrap() += 1;
        self.changed.notify_waiters();
    }

    fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().extend(answers);
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn body(&self) -> String {
        let entries: Vec<serde_json::Value> = self
            .instances
            .lock()
            .unwrap()
            .iter()
            .map(|(id, port)| {
                serde_json::json!({
                    "Node": {"Node": "n1", "Address": "127.0.0.1"},
                    "Service": {"ID": id, "Service": "web", "Port": port},
                    "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]
                })
            })
            .collect();
        serde_json::Value::Array(entries).to_string()
    }
}

struct InFlight<'a>(&'a Fake);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn health(
    State(fake): State<Arc<Fake>>,
    Params(params): Params<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let _ = headers;
    let n = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.max_in_flight.fetch_max(n, Ordering::SeqCst);
    let _guard = InFlight(&fake);
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    fake.seen.lock().unwrap().push(query.join("&"));
    let answer = fake
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Normal);
    let index_param: Option<u64> = params
        .iter()
        .find(|(k, _)| k == "index")
        .and_then(|(_, v)| v.parse().ok());
    let wait: Duration = params
        .iter()
        .find(|(k, _)| k == "wait")
        .and_then(|(_, v)| v.strip_suffix("ms")?.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(300));
    let mut header_index = None;
    match answer {
        Answer::Status(code, text) => {
            return (StatusCode::from_u16(code).unwrap(), text).into_response();
        }
        Answer::Body(body, index) => {
            return ([("X-Consul-Index", index.to_string())], body).into_response();
        }
        Answer::Huge(n) => return ([("X-Consul-Index", "1")], vec![b' '; n]).into_response(),
        Answer::Slow(d) => tokio::time::sleep(d).await,
        Answer::Index(i) => header_index = Some(i),
        Answer::Normal => {}
    }
    if let Some(asked) = index_param {
        let changed = fake.changed.notified();
        if asked >= *fake.index.lock().unwrap() {
            let _ = tokio::time::timeout(wait, changed).await;
        }
    }
    let index = header_index.unwrap_or(*fake.index.lock().unwrap());
    (
        [
            ("X-Consul-Index", index.to_string()),
            ("Content-Type", "application/json".into()),
        ],
        fake.body(),
    )
        .into_response()
}

async fn serve() -> (Arc<Fake>, SocketAddr) {
    let fake = Arc::new(Fake::default());
    fake.set(&[("web-1", 1001)]);
    let app = axum::Router::new()
        .route("/v1/health/service/{name}", get(health))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, addr)
}

fn client(addr: SocketAddr) -> Client {
    Client::new(
        Config::new(&addr.to_string())
            .unwrap()
            .request_timeout(Duration::from_millis(500)),
    )
    .unwrap()
}

fn fast_watches(client: Client) -> ConsulRegistry {
    ConsulRegistry::new(client).watch_config(
        WatchConfig::default()
            .wait(Duration::from_secs(5))
            .backoff(Backoff::new(
                Duration::from_millis(20),
                Duration::from_millis(200),
            ))
            .min_interval(Duration::from_millis(1)),
    )
}

async fn next(updates: &mut UpdateStream) -> Update {
    tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .expect("an update within 10s")
        .expect("watch streams never end")
}

fn ids(update: &Update) -> Vec<String> {
    match update {
        Update::Snapshot(instances) => instances.iter().map(|i| i.id.clone()).collect(),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn server_errors_become_items_and_the_watch_recovers() {
    let (fake, addr) = serve().await;
    let registry = fast_watches(client(addr));
    let mut updates = registry.watch(&Query::new("web"));
    assert_eq!(ids(&next(&mut updates).await), ["web-1"]);

    fake.script([
        Answer::Status(500, "rpc error: No cluster leader"),
        Answer::Body("{not json", 9),
    ]);
    fake.set(&[("web-1", 1001), ("web-2", 1002)]);
    match next(&mut updates).await {
        Update::Error(err) => assert!(err.is_retryable(), "a 500 is retryable: {err:?}"),
        other => panic!("expected an error item, got {other:?}"),
    }
    match next(&mut updates).await {
        Update::Error(discovery_core::Error::Invalid(cause)) => {
            let decode = cause.downcast_ref::<Error>();
            assert!(
                matches!(decode, Some(Error::Decode { .. })),
                "garbage JSON is a decode error: {cause:?}"
            );
        }
        other => panic!("expected a decode error item, got {other:?}"),
    }
    assert_eq!(
        ids(&next(&mut updates).await),
        ["web-1", "web-2"],
        "recovers with the current set"
    );
}

#[tokio::test]
async fn decode_errors_name_the_bad_field() {
    let (fake, addr) = serve().await;
    fake.script([Answer::Body(r#"[{"Node": {"Node": "n", "Address": "a"}, "Service": {"ID": "x", "Service": "web", "Port": "eighty"}}]"#, 3)]);
    let err = client(addr)
        .health()
        .service("web", &QueryOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::Decode { path, .. } => assert_eq!(path, "[0].Service.Port"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_zero_index_is_sent_back_as_one() {
    let (fake, addr) = serve().await;
    // The first read answers normally; the first blocking read answers with index 0.
    fake.script([Answer::Normal, Answer::Index(0)]);
    let registry = fast_watches(client(addr));
    let mut updates = registry.watch(&Query::new("web"));
    assert_eq!(ids(&next(&mut updates).await), ["web-1"]);
    fake.set(&[("web-2", 1002)]);
    assert_eq!(ids(&next(&mut updates).await), ["web-2"]);
    fake.set(&[("web-3", 1003)]);
    assert_eq!(ids(&next(&mut updates).await), ["web-3"]);
    let seen = fake.requests();
    assert!(
        !seen[0].contains("index="),
        "the first read does not block: {seen:?}"
    );
    assert!(
        seen[1].contains("index=1&"),
        "then blocks on the index: {seen:?}"
    );
    assert!(
        seen[2].contains("index=1&"),
        "a returned 0 is sent back as 1: {seen:?}"
    );
    assert!(
        seen.iter().all(|q| !q.contains("index=0")),
        "never index=0: {seen:?}"
    );
}

#[tokio::test]
async fn a_smaller_index_means_start_over() {
    let (fake, addr) = serve().await;
    *fake.index.lock().unwrap() = 100;
    // The first blocking read (on 100) comes back with index 7: the data was reset.
    fake.script([Answer::Normal, Answer::Index(7)]);
    let registry = fast_watches(client(addr));
    let mut updates = registry.watch(&Query::new("web"));
    assert_eq!(ids(&next(&mut updates).await), ["web-1"]);
    fake.set(&[("web-2", 1002)]);
    assert_eq!(ids(&next(&mut updates).await), ["web-2"]);
    fake.set(&[("web-3", 1003)]);
    assert_eq!(ids(&next(&mut updates).await), ["web-3"]);
    let seen = fake.requests();
    assert!(seen[1].contains("index=100&"), "blocked on 100: {seen:?}");
    assert!(
        !seen[2].contains("index="),
        "after the index went backwards the next read does not block: {seen:?}"
    );
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retryable() {
    let (fake, addr) = serve().await;
    fake.script([Answer::Slow(Duration::from_secs(3))]);
    let err = client(addr)
        .health()
        .service("web", &QueryOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(_)),
        "expected a timeout, got {err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn connection_refused_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client(addr)
        .health()
        .service("web", &QueryOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Transport(_)),
        "expected a transport error, got {err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_100_mb_body_is_refused_not_buffered() {
    let (fake, addr) = serve().await;
    fake.script([Answer::Huge(100 * 1024 * 1024)]);
    let err = Client::new(Config::new(&addr.to_string()).unwrap())
        .unwrap()
        .health()
        .service("web", &QueryOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { .. }),
        "expected TooLarge, got {err:?}"
    );
}

#[tokio::test]
async fn a_hundred_subscribers_share_one_blocking_query() {
    let (fake, addr) = serve().await;
    let registry = fast_watches(client(addr));
    let mut streams: Vec<UpdateStream> = (0..100)
        .map(|_| registry.watch(&Query::new("web")))
        .collect();
    for s in &mut streams {
        assert_eq!(ids(&next(s).await), ["web-1"]);
    }
    fake.set(&[("web-2", 1002)]);
    for s in &mut streams {
        assert_eq!(ids(&next(s).await), ["web-2"]);
    }
    assert_eq!(
        registry.watch_hub().active_loops(),
        1,
        "one loop for one query"
    );
    assert_eq!(
        fake.max_in_flight.load(Ordering::SeqCst),
        1,
        "one request in flight at a time"
    );
    drop(streams);
    // The loop notices its last subscriber left and stops.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while registry.watch_hub().active_loops() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loop stops when nobody watches"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_idle_watch_makes_one_request_per_wait() {
    let (fake, addr) = serve().await;
    let registry = ConsulRegistry::new(client(addr))
        .watch_config(WatchConfig::default().wait(Duration::from_millis(200)));
    let mut updates = registry.watch(&Query::new("web"));
    assert_eq!(ids(&next(&mut updates).await), ["web-1"]);
    let start = tokio::time::Instant::now();
    let quiet = tokio::time::timeout(Duration::from_millis(1500), updates.next()).await;
    assert!(quiet.is_err(), "nothing changed, so nothing is emitted");
    let elapsed = start.elapsed();
    let requests = fake.requests().len();
    // One read to start, then one blocking read per 200ms wait (a little more with jitter).
    let most = 2 + (elapsed.as_millis() / 200) as usize;
    assert!(
        (4..=most).contains(&requests),
        "{requests} requests in {elapsed:?}: expected one per 200ms wait, at most {most}"
    );
}
