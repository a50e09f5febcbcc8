//! Agent local health and maintenance: `/v1/agent/health/service/*` codes and texts, and service
//! maintenance mode. Conformance cases 24, 25, 26, 27, 72, 80; `tests/README.md` lists every case and where
//! it is tested.

mod common;

use common::Agent;
use serde_json::json;

/// Case 24: Maintenance `enable=true` → check `_service_maintenance:web` (critical, Type
/// `maintenance`); repeat → still one; `enable=false` → removed.
#[tokio::test]
async fn case_24_service_maintenance() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    for _ in 0..2 {
        let r = a
            .put("/v1/agent/service/maintenance/web?enable=true&reason=deploy")
            .await;
        assert_eq!(r.status, 200);
    }
    let checks = a.agent_checks().await;
    let maint: Vec<_> = checks
        .as_object()
        .expect("map")
        .keys()
        .filter(|k| k.starts_with("_service_maintenance"))
        .collect();
    assert_eq!(
        maint,
        vec!["_service_maintenance:web"],
        "exactly one maintenance check"
    );
    let c = &checks["_service_maintenance:web"];
    assert_eq!(c["Status"], "critical");
    assert_eq!(c["Type"], "maintenance");
    assert_eq!(c["Notes"], "deploy");
    let r = a
        .put("/v1/agent/service/maintenance/web?enable=false")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(a.agent_checks().await, json!({}));
}

/// Case 25: Maintenance without `enable` / `enable=maybe` / unknown ID → 400 / 400 / 404.
#[tokio::test]
async fn case_25_maintenance_errors() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let r = a.put("/v1/agent/service/maintenance/web").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Missing value for enable")
    );
    let r = a
        .put("/v1/agent/service/maintenance/web?enable=maybe")
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid value for enable: \"maybe\"")
    );
    let r = a
        .put("/v1/agent/service/maintenance/nope?enable=true")
        .await;
    assert_eq!(r.status, 404);
}

/// Case 26: `agent/health/service/name/web`: passing → 200 + `X-Consul-Reason: passing`; warning →
/// 429; critical → 503; maintenance → 503 with AggregatedStatus `maintenance`.
#[tokio::test]
async fn case_26_agent_health_codes() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await;
    let path = "/v1/agent/health/service/name/web";
    let r = a.get(path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-consul-reason").as_deref(), Some("passing"));
    assert_eq!(r.json()[0]["AggregatedStatus"], "passing");
    assert_eq!(a.put("/v1/agent/check/warn/service:web").await.status, 200);
    assert_eq!(a.get(path).await.status, 429);
    assert_eq!(a.put("/v1/agent/check/fail/service:web").await.status, 200);
    assert_eq!(a.get(path).await.status, 503);
    assert_eq!(a.put("/v1/agent/check/pass/service:web").await.status, 200);
    assert_eq!(
        a.put("/v1/agent/service/maintenance/web?enable=true")
            .await
            .status,
        200
    );
    let r = a.get(path).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()[0]["AggregatedStatus"], "maintenance");
}

/// Case 27: Same with `?format=text` → body `passing`; unknown name → 404 body `[]`.
#[tokio::test]
async fn case_27_agent_health_text() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let r = a.get("/v1/agent/health/service/name/web?format=text").await;
    assert_eq!((r.status, r.body.as_str()), (200, "passing"));
    let r = a.get("/v1/agent/health/service/name/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!([]));
}

/// Case 72: the agent's local health counts the node's own checks (those registered
/// without a `ServiceID`; not `serfHealth`, which is the servers'), as Consul's
/// `ChecksForService(id, true)`: a critical node check makes every service 503 and is
/// listed in `Checks`. An unknown service for maintenance is Consul's whole 404 sentence.
#[tokio::test]
async fn case_72_node_checks_count_in_local_health() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await;
    let r = a.get("/v1/agent/health/service/id/web").await;
    assert_eq!(r.status, 200, "passing: {}", r.body);
    let ids: Vec<String> = r.json()["Checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["CheckID"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, ["service:web"], "serfHealth is not the agent's check");
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "disk", "TTL": "30s", "Status": "critical"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a.get("/v1/agent/health/service/name/web").await;
    assert_eq!(
        (r.status, r.header("x-consul-reason").as_deref()),
        (503, Some("critical")),
        "a critical node check makes the service critical"
    );
    let checks = r.json()[0]["Checks"].clone();
    assert!(
        checks
            .as_array()
            .expect("checks")
            .iter()
            .any(|c| c["CheckID"] == "disk"),
        "the node check is listed: {checks}"
    );
    let r = a
        .put("/v1/agent/service/maintenance/nope?enable=true")
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            404,
            "Unknown service ID \"nope\". Ensure that the service ID is passed, not the \
             service name."
        )
    );
}

/// Case 80: agent health answers as text for `Accept: text/plain`, unless a non-empty
/// `format` says otherwise, as Consul's `returnTextPlain`.
#[tokio::test]
async fn case_80_accept_text_plain_selects_text() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await;
    let url = a.url("/v1/agent/health/service/id/web");
    let r = a
        .send(a.http.get(&url).header("Accept", "text/plain"))
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "passing"));
    let r = a
        .send(
            a.http
                .get(format!("{url}?format=json"))
                .header("Accept", "text/plain"),
        )
        .await;
    assert_eq!(r.json()["AggregatedStatus"], "passing", "format decides");
}
