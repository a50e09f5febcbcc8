//! Health: `/v1/health/service/:name` entries, their shape, and `tag`/`passing` selection.
//! Conformance cases 29, 30, 31, 32, 33, 34; `tests/README.md` lists every case and where it is
//! tested.

mod common;

use common::Agent;
use serde_json::{Value, json};

/// Case 29: `/v1/health/service/web` → [{Node, Service, Checks}], Checks include `serfHealth`
/// passing, Output `Agent alive and reachable`.
#[tokio::test]
async fn case_29_health_service_shape() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Port": 80, "Check": {"TTL": "30s"}}))
        .await;
    let h = a.get_json("/v1/health/service/web").await;
    let e = &h[0];
    assert_eq!(e["Node"]["Node"], "dev-node");
    assert_eq!(e["Node"]["Address"], "127.0.0.1");
    assert_eq!(e["Service"]["ID"], "web");
    let checks = e["Checks"].as_array().expect("checks array");
    assert_eq!(checks[0]["CheckID"], "serfHealth", "node checks first");
    assert_eq!(checks[0]["Status"], "passing");
    assert_eq!(checks[0]["Output"], "Agent alive and reachable");
    assert_eq!(checks[0]["ServiceID"], "");
    assert_eq!(checks[1]["CheckID"], "service:web");
}

/// Case 30: Port 0 → `Service.Port` absent; the client reads 0.
#[tokio::test]
async fn case_30_port_zero_omitted() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let h = a.get_json("/v1/health/service/web").await;
    assert!(
        h[0]["Service"].get("Port").is_none(),
        "Port 0 omitted: {}",
        h[0]["Service"]
    );
}

/// Case 31: No Address → `Service.Address` `""`; the client dials Node.Address.
#[tokio::test]
async fn case_31_empty_service_address() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Port": 80})).await;
    let h = a.get_json("/v1/health/service/web").await;
    assert_eq!(h[0]["Service"]["Address"], "");
    assert_eq!(
        h[0]["Node"]["Address"], "127.0.0.1",
        "the client dials the node address"
    );
}

/// Case 32: Unknown service → 200 `[]`, `X-Consul-Index` ≥ 1.
#[tokio::test]
async fn case_32_unknown_service_empty() {
    let a = Agent::start().await;
    let r = a.get("/v1/health/service/nope").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "[]");
    assert!(r.index() >= 1);
}

/// Case 33: A (tags a,b), B (tag a): `?tag=a` → both; `?tag=a&tag=b` → A; `?tag=A` → both.
#[tokio::test]
async fn case_33_tag_filter() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "ID": "A", "Tags": ["a", "b"]}))
        .await;
    a.register(json!({"Name": "web", "ID": "B", "Tags": ["a"]}))
        .await;
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|e| e["Service"]["ID"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(
        ids(a.get_json("/v1/health/service/web?tag=a").await),
        ["A", "B"]
    );
    assert_eq!(
        ids(a.get_json("/v1/health/service/web?tag=a&tag=b").await),
        ["A"]
    );
    assert_eq!(
        ids(a.get_json("/v1/health/service/web?tag=A").await),
        ["A", "B"]
    );
}

/// Case 34: Warning instance dropped by `?passing`, kept by `?passing=false`; `?passing=xyz` → 400
/// `Invalid value for ?passing`.
#[tokio::test]
async fn case_34_passing_filter() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "ID": "ok", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await;
    a.register(json!({"Name": "web", "ID": "warn", "Check": {"TTL": "30s", "Status": "warning"}}))
        .await;
    let n = |v: Value| v.as_array().expect("array").len();
    assert_eq!(n(a.get_json("/v1/health/service/web?passing").await), 1);
    assert_eq!(
        n(a.get_json("/v1/health/service/web?passing=true").await),
        1
    );
    assert_eq!(
        n(a.get_json("/v1/health/service/web?passing=false").await),
        2
    );
    let r = a.get("/v1/health/service/web?passing=xyz").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid value for ?passing")
    );
}
