//! Routing rules every endpoint shares: methods (405, `Allow`, OPTIONS), unknown paths,
//! Enterprise-only parameters, where `?dc=` is read. Conformance cases 16, 37, 67;
//! `tests/README.md` lists every case and where it is tested.

mod common;

use common::Agent;

/// Case 16: POST register → 405, `Allow: OPTIONS,PUT`, body `method POST not allowed`; OPTIONS →
/// 200 with `Allow`; GET `check/pass/x` → 405.
#[tokio::test]
async fn case_16_method_not_allowed() {
    let a = Agent::start().await;
    let r = a
        .send(a.http.post(a.url("/v1/agent/service/register")).body("{}"))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("OPTIONS,PUT"));
    assert_eq!(r.body, "method POST not allowed");
    let r = a
        .send(a.http.request(
            reqwest::Method::OPTIONS,
            a.url("/v1/agent/service/register"),
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("allow").as_deref(), Some("OPTIONS,PUT"));
    assert_eq!(r.body, "");
    let r = a.get("/v1/agent/check/pass/x").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body, "method GET not allowed");
    let r = a.get("/v1/nonsense").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    );
}

/// Case 37: `?ns=foo` or `X-Consul-Namespace` → 400 mentioning a Consul Enterprise feature.
#[tokio::test]
async fn case_37_enterprise_namespace() {
    let a = Agent::start().await;
    let r = a.get("/v1/health/service/web?ns=foo").await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("Consul Enterprise feature"),
        "body {:?}",
        r.body
    );
    let r = a
        .send(
            a.http
                .get(a.url("/v1/health/service/web"))
                .header("X-Consul-Namespace", "foo"),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("Consul Enterprise feature"),
        "body {:?}",
        r.body
    );
}

/// Case 67: `?dc=` is read only where Consul's handler parses it and forwards an RPC: the
/// catalog and health reads and the status endpoints (500 `No path to datacenter` for an
/// unknown one, after every 400 of the query); agent endpoints, catalog writes and
/// `catalog/datacenters` ignore it. The status endpoints validate the query as every read
/// does.
#[tokio::test]
async fn case_67_dc_is_read_where_consul_forwards() {
    let a = Agent::start().await;
    for path in [
        "/v1/agent/services?dc=elsewhere",
        "/v1/agent/self?dc=elsewhere",
        "/v1/agent/members?dc=elsewhere",
        "/v1/catalog/datacenters?dc=elsewhere",
    ] {
        assert_eq!(a.get(path).await.status, 200, "{path} ignores dc");
    }
    for (path, want) in [
        (
            "/v1/status/leader?dc=elsewhere",
            (500, "No path to datacenter"),
        ),
        (
            "/v1/status/peers?dc=elsewhere",
            (500, "No path to datacenter"),
        ),
        (
            "/v1/catalog/nodes?dc=elsewhere",
            (500, "No path to datacenter"),
        ),
        (
            "/v1/status/leader?dc=elsewhere&stale&consistent",
            (
                400,
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ),
        ),
        ("/v1/status/peers?index=x", (400, "Invalid index")),
        ("/v1/status/leader?wait=10", (400, "Invalid wait time")),
    ] {
        let r = a.get(path).await;
        assert_eq!((r.status, r.body.as_str()), want, "{path}");
    }
}
