//! Rows of `FIDELITY.md` that no conformance case pinned: small facts of Consul's handlers,
//! a test each, grouped by endpoint family. Conformance cases 75, 76, 77; `tests/README.md`
//! lists every case and where it is tested.

mod common;

use common::{Agent, register_err};
use consul_dev::Config;
use serde_json::json;

/// Case 75: agent registration details: `Token` and `Locality` are accepted keys; a body
/// `Namespace` is an unknown field in CE; a warning threshold above the critical one is
/// refused; `check/register` keeps a re-registered check's status; the `checks` list
/// filters; `self` carries the node meta.
#[tokio::test]
async fn case_75_agent_registration_details() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Token": "t", "Locality": {"Region": "r1", "Zone": "z1"}}))
        .await;
    let (s, b) = register_err(&a, json!({"Name": "web", "Namespace": "ns1"})).await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "Request decode failed: json: unknown field \"Namespace\""
        )
    );
    let (s, b) = register_err(
        &a,
        json!({"Name": "web", "Check": {"TTL": "10s", "FailuresBeforeWarning": 3,
            "FailuresBeforeCritical": 2}}),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "Invalid check: FailuresBeforeWarning can't be higher than FailuresBeforeCritical"
        )
    );
    let check = json!({"Name": "disk", "TTL": "30s", "Status": "warning"});
    assert_eq!(
        a.put_json("/v1/agent/check/register", &check).await.status,
        200
    );
    assert_eq!(a.put("/v1/agent/check/pass/disk").await.status, 200);
    assert_eq!(
        a.put_json("/v1/agent/check/register", &check).await.status,
        200
    );
    assert_eq!(
        a.agent_check("disk").await["Status"],
        "passing",
        "re-registering keeps the current status, not the definition's"
    );
    let filtered = a
        .get_json("/v1/agent/checks?filter=Status%20%3D%3D%20passing")
        .await;
    assert!(filtered.get("disk").is_some(), "{filtered}");
    let none = a
        .get_json("/v1/agent/checks?filter=Status%20%3D%3D%20critical")
        .await;
    assert_eq!(none, json!({}));
    let me = a.get_json("/v1/agent/self").await;
    assert_eq!(me["Meta"]["consul-network-segment"], "");
    assert!(me["Meta"]["consul-version"].is_string(), "{}", me["Meta"]);
}

/// Case 76: with ACLs on, an anonymous node-check registration is refused (`node:write`)
/// and the members list is filtered to nothing (`node:read`), as Consul's `filterMembers`.
#[tokio::test]
async fn case_76_acl_rows() {
    let a = Agent::start_with(Config::default().node_name("dev-node").acl_token("root")).await;
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "disk", "TTL": "30s"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.starts_with("Permission denied"), "{}", r.body);
    assert_eq!(a.get_json("/v1/agent/members").await, json!([]));
    let members = a.get_json("/v1/agent/members?token=root").await;
    assert_eq!(members.as_array().map(Vec::len), Some(1));
}

/// Case 77: catalog details: `ns` on a catalog write is refused as in CE; a `WriteRequest`
/// key is unknown (the embedded struct is no key); the body `Token` is not what decides
/// (the request's token is); a check naming an unknown service is the state store's 500;
/// `tag` is repeatable and case-insensitive; `merge-central-config` is accepted; deregister
/// takes the obsolete `Address` and `PeerName`.
#[tokio::test]
async fn case_77_catalog_rows() {
    let a = Agent::start().await;
    let r = a
        .put_json(
            "/v1/catalog/register?ns=x",
            &json!({"Node": "n", "Address": "a"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature"
        )
    );
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "n", "Address": "a", "WriteRequest": {"Token": "t"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "Request decode failed: json: unknown field \"WriteRequest\""
        )
    );
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "n", "Address": "a", "Token": "not-a-token",
                "Service": {"Service": "db", "Tags": ["Primary", "v1"]}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "true"),
        "ACLs off: the body token is moot"
    );
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "n", "Address": "a", "Check": {"CheckID": "c", "ServiceID": "nope"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "Unknown service ID 'nope' for check ID 'c'")
    );
    let tagged = a
        .get_json("/v1/catalog/service/db?tag=primary&tag=V1&merge-central-config")
        .await;
    assert_eq!(tagged.as_array().map(Vec::len), Some(1), "{tagged}");
    let none = a
        .get_json("/v1/catalog/service/db?tag=primary&tag=v2")
        .await;
    assert_eq!(none, json!([]), "every tag must match");
    let r = a
        .put_json(
            "/v1/catalog/deregister",
            &json!({"Node": "n", "Address": "a", "PeerName": ""}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "true"),
        "DeregisterRequest's decoder accepts Address and PeerName"
    );
}
