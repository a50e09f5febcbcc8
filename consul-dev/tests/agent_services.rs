//! Agent services: registering, listing, reading (with its content hash) and deregistering the
//! local agent's services. Conformance cases 01, 02, 06, 07, 08, 12, 17, 18, 28, 74, 83;
//! `tests/README.md` lists every case and where it is tested.

mod common;

use common::{Agent, register_err};
use serde_json::json;

/// Case 01: Register `{"Name":"web","Port":8080}` → 200 empty body; `/v1/agent/services` has `web`:
/// ID `web`, Tags `[]`, Meta `{}`, Weights {1,1}, Datacenter `dc1`.
#[tokio::test]
async fn case_01_register_defaults() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Port": 8080})).await;
    let services = a.get_json("/v1/agent/services").await;
    let web = &services["web"];
    assert_eq!(web["ID"], "web", "ID defaults to Name");
    assert_eq!(web["Service"], "web");
    assert_eq!(web["Tags"], json!([]), "empty Tags are []");
    assert_eq!(web["Meta"], json!({}), "empty Meta is {{}}");
    assert_eq!(web["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(web["Datacenter"], "dc1");
    assert_eq!(web["Port"], 8080);
}

/// Case 02: Address `10.0.0.5`, Port 9000 → TaggedAddresses `lan_ipv4` and `wan_ipv4` = {10.0.0.5,
/// 9000}.
#[tokio::test]
async fn case_02_ipv4_tagged_addresses() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Address": "10.0.0.5", "Port": 9000}))
        .await;
    let web = &a.get_json("/v1/agent/services").await["web"];
    let want = json!({"Address": "10.0.0.5", "Port": 9000});
    assert_eq!(web["TaggedAddresses"]["lan_ipv4"], want);
    assert_eq!(web["TaggedAddresses"]["wan_ipv4"], want);
}

/// Case 06: No Name → 400 `Missing service name`; Address `0.0.0.0` → 400 `Invalid service
/// address`.
#[tokio::test]
async fn case_06_missing_name_and_bad_address() {
    let a = Agent::start().await;
    let r = a
        .put_json("/v1/agent/service/register", &json!({"Port": 1}))
        .await;
    assert_eq!((r.status, r.body.as_str()), (400, "Missing service name"));
    let r = a
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "web", "Address": "0.0.0.0"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid service address")
    );
}

/// Case 07: `{"Name":"a","Bogus":1}` → 400 starting `Request decode failed: json: unknown field
/// "Bogus"`.
#[tokio::test]
async fn case_07_unknown_field() {
    let a = Agent::start().await;
    let r = a
        .put_body("/v1/agent/service/register", r#"{"Name":"a","Bogus":1}"#)
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .starts_with("Request decode failed: json: unknown field \"Bogus\""),
        "body was {:?}",
        r.body
    );
}

/// Case 08: Lowercase keys and `enable_tag_override:true` → 200, EnableTagOverride true.
#[tokio::test]
async fn case_08_lowercase_keys() {
    let a = Agent::start().await;
    a.register(json!({"name": "web", "port": 80, "enable_tag_override": true}))
        .await;
    let web = &a.get_json("/v1/agent/services").await["web"];
    assert_eq!(web["EnableTagOverride"], true);
    assert_eq!(web["Port"], 80);
}

/// Case 12: Weights Passing 0 → 400 `Invalid Weights: Passing must be greater than 0`; Meta key
/// `consul-x` → 400 starting `Invalid Service Meta:`.
#[tokio::test]
async fn case_12_weights_and_meta() {
    let a = Agent::start().await;
    let (s, b) = register_err(
        &a,
        json!({"Name": "web", "Weights": {"Passing": 0, "Warning": 1}}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b, "Invalid Weights: Passing must be greater than 0");
    let (s, b) = register_err(&a, json!({"Name": "web", "Meta": {"consul-x": "1"}})).await;
    assert_eq!(s, 400);
    assert!(b.starts_with("Invalid Service Meta:"), "body {b:?}");
}

/// Case 17: Deregister `nope` → 404 starting `Unknown service ID "nope"`.
#[tokio::test]
async fn case_17_deregister_unknown() {
    let a = Agent::start().await;
    let r = a.put("/v1/agent/service/deregister/nope").await;
    assert_eq!(r.status, 404);
    assert!(
        r.body.starts_with("Unknown service ID \"nope\""),
        "body {:?}",
        r.body
    );
}

/// Case 18: Deregister existing → 200; service and checks gone from agent and health views.
#[tokio::test]
async fn case_18_deregister_existing() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "10s"}}))
        .await;
    let r = a.put("/v1/agent/service/deregister/web").await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(a.get_json("/v1/agent/services").await, json!({}));
    assert_eq!(a.agent_checks().await, json!({}));
    assert_eq!(a.get_json("/v1/health/service/web").await, json!([]));
}

/// Case 28: `GET /v1/agent/service/web` → `X-Consul-ContentHash` equals body `ContentHash`; unknown
/// → 404 `unknown service ID: nope`.
#[tokio::test]
async fn case_28_agent_service_content_hash() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Port": 1})).await;
    let r = a.get("/v1/agent/service/web").await;
    assert_eq!(r.status, 200);
    let hash = r.header("x-consul-contenthash").expect("hash header");
    assert_eq!(r.json()["ContentHash"], json!(hash));
    let r = a.get("/v1/agent/service/nope").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "unknown service ID: nope")
    );
}

/// Case 74: service registration refusals in Consul's words: a meta pair is named with its
/// value (`Couldn't load metadata pair ('k', 'v'): …`), a weight over 65535 is `DNS Weight
/// must be between 0 and 65535`, an IPv4 tagged address that is not IPv4 is a 500 from
/// `validateService`; `replace-existing-checks` also removes the maintenance check.
#[tokio::test]
async fn case_74_registration_refusals_and_replacement() {
    let a = Agent::start().await;
    let (s, b) = register_err(&a, json!({"Name": "web", "Meta": {"consul-x": "1"}})).await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "Invalid Service Meta: Couldn't load metadata pair ('consul-x', '1'): Key prefix \
             'consul-' is reserved for internal use"
        )
    );
    let (s, b) = register_err(
        &a,
        json!({"Name": "web", "Weights": {"Passing": 70000, "Warning": 1}}),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "Invalid Weights: DNS Weight must be between 0 and 65535"
        )
    );
    let (s, b) = register_err(
        &a,
        json!({"Name": "web", "TaggedAddresses": {"lan_ipv4": {"Address": "::1", "Port": 1}}}),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (
            500,
            "Service tagged address \"lan_ipv4\" must be a valid ipv4 address"
        )
    );
    a.register(json!({"Name": "web", "Check": {"TTL": "30s"}}))
        .await;
    let r = a.put("/v1/agent/service/maintenance/web?enable=true").await;
    assert_eq!(r.status, 200);
    let r = a
        .put_json(
            "/v1/agent/service/register?replace-existing-checks",
            &json!({"Name": "web"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let checks = a.agent_checks().await;
    assert_eq!(
        checks,
        json!({}),
        "replacing removes every check of the service, maintenance included"
    );
}

/// Case 83: the `consul` service and the `serfHealth` check are the servers', not in the
/// agent's local state, so the agent answers them as unknown (404, Consul's sentences):
/// deregistering either, maintenance on `consul`, a TTL update of `serfHealth`. The catalog
/// still lists both.
#[tokio::test]
async fn case_83_the_servers_service_and_check_are_not_the_agents() {
    let a = Agent::start().await;
    let service_404 = "Unknown service ID \"consul\". Ensure that the service ID is passed, not \
                       the service name.";
    let check_404 = "Unknown check ID \"serfHealth\". Ensure that the check ID is passed, not \
                     the check name.";
    for (path, want) in [
        ("/v1/agent/service/deregister/consul", service_404),
        (
            "/v1/agent/service/maintenance/consul?enable=true",
            service_404,
        ),
        ("/v1/agent/check/deregister/serfHealth", check_404),
        ("/v1/agent/check/pass/serfHealth", check_404),
    ] {
        let r = a.put(path).await;
        assert_eq!((r.status, r.body.as_str()), (404, want), "{path}");
    }
    let services = a.get_json("/v1/catalog/services").await;
    assert_eq!(services["consul"], json!([]), "still in the catalog");
    let checks = a.get_json("/v1/health/node/dev-node").await;
    assert_eq!(checks[0]["CheckID"], "serfHealth", "{checks}");
}
