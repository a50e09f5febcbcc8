//! Blocking queries: read headers and consistency modes, `index`/`wait` parsing, waking on changes
//! (and only on the watched service), index rules, hash blocking, the query-backend header.
//! Conformance cases 35, 36, 42, 43, 44, 45, 46, 47, 48, 49, 81; `tests/README.md` lists every
//! case and where it is tested.

mod common;

use std::time::{Duration, Instant};

use common::Agent;
use serde_json::{Value, json};

/// Case 35: Headers: `X-Consul-Index` > 0, `X-Consul-KnownLeader: true`, `X-Consul-LastContact: 0`,
/// consistency `leader`; `?stale` → `stale`; `?consistent` → `consistent`; both → 400.
#[tokio::test]
async fn case_35_read_headers() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let r = a.get("/v1/health/service/web").await;
    assert!(r.index() > 0);
    assert_eq!(r.header("x-consul-knownleader").as_deref(), Some("true"));
    assert_eq!(r.header("x-consul-lastcontact").as_deref(), Some("0"));
    assert_eq!(
        r.header("x-consul-effective-consistency").as_deref(),
        Some("leader")
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let r = a.get("/v1/health/service/web?stale").await;
    assert_eq!(
        r.header("x-consul-effective-consistency").as_deref(),
        Some("stale")
    );
    let r = a.get("/v1/health/service/web?consistent").await;
    assert_eq!(
        r.header("x-consul-effective-consistency").as_deref(),
        Some("consistent")
    );
    let r = a.get("/v1/health/service/web?stale&consistent").await;
    assert_eq!(r.status, 400);
}

/// Case 36: `?index=abc` → 400 `Invalid index`; `?wait=10` → 400 `Invalid wait time`.
#[tokio::test]
async fn case_36_bad_index_and_wait() {
    let a = Agent::start().await;
    let r = a.get("/v1/health/service/web?index=abc").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid index"));
    let r = a.get("/v1/health/service/web?index=1&wait=10").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid wait time"));
}

/// Case 42: `index=0&wait=5s` → returns at once.
#[tokio::test]
async fn case_42_index_zero_returns_at_once() {
    let a = Agent::start().await;
    let start = Instant::now();
    let r = a.get("/v1/health/service/web?index=0&wait=5s").await;
    assert_eq!(r.status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "index=0 must not block"
    );
}

/// Case 43: `?index=H&wait=2s`, nothing changes → returns after 2s–2.125s (+slack) with the same
/// index.
#[tokio::test]
async fn case_43_blocking_timeout_same_index() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let h = a.get("/v1/health/service/web").await.index();
    let start = Instant::now();
    let r = a
        .get(&format!("/v1/health/service/web?index={h}&wait=2s"))
        .await;
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.index(), h, "nothing changed: same index");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "should wait about 2s-2.125s, took {took:?}"
    );
}

/// Case 44: Blocked query on `web` returns promptly with a higher index when an instance registers
/// or a check changes status.
#[tokio::test]
async fn case_44_blocking_wakes_on_change() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "ID": "w1", "Check": {"TTL": "30s"}}))
        .await;
    let h = a.get("/v1/health/service/web").await.index();
    let url = a.url(&format!("/v1/health/service/web?index={h}&wait=60s"));
    let http = a.http.clone();
    let waiter = tokio::spawn(async move { http.get(url).send().await });
    a.agent.wait_for_blocked_queries(1).await;
    let start = Instant::now();
    a.register(json!({"Name": "web", "ID": "w2"})).await;
    let r = waiter.await.expect("join").expect("response");
    assert!(start.elapsed() < Duration::from_secs(10), "woke promptly");
    let h2: u64 = r.headers()["x-consul-index"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("n");
    assert!(h2 > h, "index moved: {h} -> {h2}");

    // A check status change also wakes it.
    let url = a.url(&format!("/v1/health/service/web?index={h2}&wait=60s"));
    let http = a.http.clone();
    let waiter = tokio::spawn(async move { http.get(url).send().await });
    a.agent.wait_for_blocked_queries(1).await;
    let start = Instant::now();
    assert_eq!(a.put("/v1/agent/check/pass/service:w1").await.status, 200);
    let r = waiter.await.expect("join").expect("response");
    assert!(start.elapsed() < Duration::from_secs(10), "woke promptly");
    let h3: u64 = r.headers()["x-consul-index"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("n");
    assert!(h3 > h2, "index moved: {h2} -> {h3}");
}

/// Case 45: A change to `db` does not wake a blocked `web` query.
#[tokio::test]
async fn case_45_unrelated_change_does_not_wake() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let h = a.get("/v1/health/service/web").await.index();
    let url = a.url(&format!("/v1/health/service/web?index={h}&wait=2s"));
    let http = a.http.clone();
    let start = Instant::now();
    let waiter = tokio::spawn(async move { http.get(url).send().await });
    a.agent.wait_for_blocked_queries(1).await;
    a.register(json!({"Name": "db", "Check": {"TTL": "30s"}}))
        .await;
    assert_eq!(a.put("/v1/agent/check/pass/service:db").await.status, 200);
    let r = waiter.await.expect("join").expect("response");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "db must not wake web; took {took:?}"
    );
    let h2: u64 = r.headers()["x-consul-index"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("n");
    assert_eq!(h2, h, "web's index unchanged");
}

/// Case 46: Index 1000 above current, `wait=1s` → returns after ~1s with a smaller index; the
/// client restarts from 0.
#[tokio::test]
async fn case_46_index_above_current() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let h = a.get("/v1/health/service/web").await.index();
    let start = Instant::now();
    let r = a
        .get(&format!(
            "/v1/health/service/web?index={}&wait=1s",
            h + 1000
        ))
        .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(r.index() < h + 1000, "returns the smaller current index");
    // The client restarts from 0, which answers at once.
    let start = Instant::now();
    let r = a.get("/v1/health/service/web?index=0").await;
    assert_eq!(r.status, 200);
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// Case 47: Blocked query on a not-yet-existing service returns when it registers.
#[tokio::test]
async fn case_47_not_yet_existing_service() {
    let a = Agent::start().await;
    let h = a.get("/v1/health/service/later").await.index();
    let url = a.url(&format!("/v1/health/service/later?index={h}&wait=60s"));
    let http = a.http.clone();
    let waiter = tokio::spawn(async move { http.get(url).send().await });
    a.agent.wait_for_blocked_queries(1).await;
    let start = Instant::now();
    a.register(json!({"Name": "later"})).await;
    let r = waiter.await.expect("join").expect("response");
    assert!(start.elapsed() < Duration::from_secs(10), "woke promptly");
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(1),
        "the new instance is returned"
    );
}

/// Case 48: A client receiving `X-Consul-Index: 0` sends `index=1` next.
#[tokio::test]
async fn case_48_index_never_zero() {
    let a = Agent::start().await;
    for path in [
        "/v1/health/service/x",
        "/v1/health/checks/x",
        "/v1/catalog/service/x",
        "/v1/catalog/services",
        "/v1/health/state/any",
    ] {
        let r = a.get(path).await;
        assert!(r.index() >= 1, "{path} index >= 1");
    }
    // What a client sends after seeing 0 (index=1) is accepted and answers.
    let r = a.get("/v1/health/service/x?index=1&wait=1s").await;
    assert_eq!(r.status, 200);
}

/// Case 49: `hash=H&wait=2s`, no change → ~2s, same hash; tags change during the wait → returns
/// early, new hash.
#[tokio::test]
async fn case_49_hash_blocking() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Tags": ["v1"]})).await;
    let r = a.get("/v1/agent/service/web").await;
    let hash = r.header("x-consul-contenthash").expect("hash");
    let start = Instant::now();
    let r = a
        .get(&format!("/v1/agent/service/web?hash={hash}&wait=2s"))
        .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(r.header("x-consul-contenthash"), Some(hash.clone()));
    assert!(
        r.header("x-consul-index").is_none(),
        "hash blocking has no index"
    );

    let url = a.url(&format!("/v1/agent/service/web?hash={hash}&wait=60s"));
    let http = a.http.clone();
    let waiter = tokio::spawn(async move { http.get(url).send().await });
    a.agent.wait_for_blocked_queries(1).await;
    let start = Instant::now();
    a.register(json!({"Name": "web", "Tags": ["v2"]})).await;
    let r = waiter.await.expect("join").expect("response");
    assert!(start.elapsed() < Duration::from_secs(10), "returned early");
    let new = r.headers()["x-consul-contenthash"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_ne!(new, hash, "a new hash after the tag change");
}

/// Case 81: every read names its query backend: `X-Consul-Query-Backend: blocking-query`,
/// except a blocking `health/service` read (index > 0, no `cached`, no `near`), which
/// Consul's default streaming backend answers: `streaming`. An anonymous caller whose list
/// is filtered by ACLs gets no `X-Consul-Results-Filtered-By-ACLs` (Consul sets it only for
/// a real token, and the one real token here sees everything).
#[tokio::test]
async fn case_81_query_backend_header() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let backend = |r: &common::Resp| r.header("x-consul-query-backend");
    let r = a.get("/v1/health/service/web").await;
    assert_eq!(backend(&r).as_deref(), Some("blocking-query"));
    let index = r.index();
    let r = a
        .get(&format!("/v1/health/service/web?index={index}&wait=10ms"))
        .await;
    assert_eq!(backend(&r).as_deref(), Some("streaming"));
    let r = a
        .get(&format!(
            "/v1/health/service/web?index={index}&wait=10ms&near=_agent"
        ))
        .await;
    assert_eq!(
        backend(&r).as_deref(),
        Some("blocking-query"),
        "near is not streamed"
    );
    let r = a
        .get(&format!("/v1/catalog/service/web?index={index}&wait=10ms"))
        .await;
    assert_eq!(backend(&r).as_deref(), Some("blocking-query"));
    let acl = Agent::start_with(
        consul_dev::Config::default()
            .node_name("dev-node")
            .acl_token("root"),
    )
    .await;
    let r = acl.get("/v1/catalog/services").await;
    assert_eq!(r.json(), json!({}), "anonymous sees nothing");
    assert_eq!(r.header("x-consul-results-filtered-by-acls"), None);
}
