//! One test per case of `consul-conformance-cases.md`, against an in-process agent.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, check_in};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

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

#[tokio::test]
async fn case_03_ttl_check_defaults() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "10s"}}))
        .await;
    let c = a.agent_check("service:web").await;
    assert_eq!(c["Name"], "Service 'web' check");
    assert_eq!(c["Status"], "critical", "new checks start critical");
    assert_eq!(c["Output"], "");
    assert_eq!(c["Type"], "ttl");
    assert_eq!(c["ServiceID"], "web");
    assert_eq!(c["ServiceTags"], json!([]), "ServiceTags is never null");
}

#[tokio::test]
async fn case_04_check_numbering() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Checks": [{"TTL": "10s"}, {"TTL": "20s"}]}))
        .await;
    let checks = a.agent_checks().await;
    assert!(
        checks.get("service:web:1").is_some(),
        "first check is :1 in {checks}"
    );
    assert!(
        checks.get("service:web:2").is_some(),
        "second check is :2 in {checks}"
    );

    let b = Agent::start().await;
    b.register(
        json!({"Name": "db", "Check": {"TTL": "10s", "Notes": "single"},
                      "Checks": [{"TTL": "20s", "Notes": "list"}]}),
    )
    .await;
    let checks = b.agent_checks().await;
    assert_eq!(
        checks["service:db:1"]["Notes"], "single",
        "Check comes first"
    );
    assert_eq!(checks["service:db:2"]["Notes"], "list", "then Checks");
}

#[tokio::test]
async fn case_05_initial_status() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "10s", "Status": "passing"}}))
        .await;
    assert_eq!(a.agent_check("service:web").await["Status"], "passing");
}

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

#[tokio::test]
async fn case_08_lowercase_keys() {
    let a = Agent::start().await;
    a.register(json!({"name": "web", "port": 80, "enable_tag_override": true}))
        .await;
    let web = &a.get_json("/v1/agent/services").await["web"];
    assert_eq!(web["EnableTagOverride"], true);
    assert_eq!(web["Port"], 80);
}

async fn register_err(a: &Agent, body: Value) -> (u16, String) {
    let r = a.put_json("/v1/agent/service/register", &body).await;
    (r.status, r.body)
}

#[tokio::test]
async fn case_09_ttl_and_interval() {
    let a = Agent::start().await;
    let (s, b) = register_err(
        &a,
        json!({"Name": "web", "Check": {"TTL": "10s", "Interval": "10s"}}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        b,
        "Invalid check: Interval and TTL cannot both be specified"
    );
}

#[tokio::test]
async fn case_10_interval_and_ttl_required() {
    let a = Agent::start().await;
    let (s, b) = register_err(
        &a,
        json!({"Name": "web", "Check": {"HTTP": "http://127.0.0.1:1/"}}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        b.starts_with("Invalid check: Interval must be > 0"),
        "body {b:?}"
    );
    let (s, b) = register_err(&a, json!({"Name": "web", "Check": {"Name": "only"}})).await;
    assert_eq!(s, 400);
    assert_eq!(b, "Invalid check: TTL must be > 0 for TTL checks");
}

#[tokio::test]
async fn case_11_bad_status_and_duration() {
    let a = Agent::start().await;
    let (s, b) = register_err(
        &a,
        json!({"Name": "web", "Check": {"TTL": "10s", "Status": "ok"}}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b, "Status for checks must 'passing', 'warning', 'critical'");
    let (s, b) = register_err(&a, json!({"Name": "web", "Check": {"TTL": "10x"}})).await;
    assert_eq!(s, 400);
    assert!(b.starts_with("Request decode failed"), "body {b:?}");
}

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

#[tokio::test]
async fn case_13_null_checks_and_numeric_ttl() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": null, "Checks": null}))
        .await;
    assert_eq!(a.agent_checks().await, json!({}), "no checks registered");
    a.register(json!({"Name": "db", "Check": {"TTL": 10_000_000_000_i64}}))
        .await;
    let c = a.agent_check("service:db").await;
    assert_eq!(
        c["Definition"]["TTL"], "10s",
        "nanoseconds print as a Go duration"
    );
}

#[tokio::test]
async fn case_14_reregister_keeps_status() {
    let a = Agent::start().await;
    let def = json!({"Name": "web", "Check": {"TTL": "30s"}});
    a.register(def.clone()).await;
    assert_eq!(a.put("/v1/agent/check/pass/service:web").await.status, 200);
    a.register(def).await;
    assert_eq!(a.agent_check("service:web").await["Status"], "passing");
}

#[tokio::test]
async fn case_15_replace_existing_checks() {
    let two = json!({"Name": "web", "Checks": [
        {"CheckID": "c1", "TTL": "30s"}, {"CheckID": "c2", "TTL": "30s"}]});
    let one = json!({"Name": "web", "Checks": [{"CheckID": "c1", "TTL": "30s"}]});
    for (query, kept) in [
        ("", true),
        ("?replace-existing-checks=true", false),
        ("?replace-existing-checks", false),
        ("?replace-existing-checks=1", true),
    ] {
        let a = Agent::start().await;
        a.register(two.clone()).await;
        let r = a
            .put_json(&format!("/v1/agent/service/register{query}"), &one)
            .await;
        assert_eq!(r.status, 200);
        let checks = a.agent_checks().await;
        assert_eq!(
            checks.get("c2").is_some(),
            kept,
            "with {query:?} check c2 kept={kept}: {checks}"
        );
        assert!(checks.get("c1").is_some());
    }
}

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

#[tokio::test]
async fn case_19_pass_with_note() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "30s"}}))
        .await;
    let r = a.put("/v1/agent/check/pass/service:web?note=ok").await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    let c = a.agent_check("service:web").await;
    assert_eq!(
        (c["Status"].clone(), c["Output"].clone()),
        (json!("passing"), json!("ok"))
    );
    // Visible in the health view as soon as the write returned.
    let h = a.get_json("/v1/health/service/web").await;
    let c = check_in(&h, "service:web").expect("check in health view");
    assert_eq!(c["Status"], "passing");
    assert_eq!(c["Output"], "ok");
}

#[tokio::test]
async fn case_20_update() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "30s"}}))
        .await;
    let r = a
        .put_json(
            "/v1/agent/check/update/service:web",
            &json!({"Status": "warning", "Output": "slow"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let c = a.agent_check("service:web").await;
    assert_eq!(c["Status"], "warning");
    assert_eq!(c["Output"], "slow");
    let r = a
        .put_json(
            "/v1/agent/check/update/service:web",
            &json!({"Status": "bad"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid check status: 'bad'")
    );
    let r = a.put("/v1/agent/check/update/service:web").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Request decode failed: EOF")
    );
}

#[tokio::test]
async fn case_21_update_unknown_and_non_ttl() {
    let a = Agent::start().await;
    let r = a
        .put_json("/v1/agent/check/update/nope", &json!({"Status": "passing"}))
        .await;
    assert_eq!(r.status, 404);
    assert!(r.body.starts_with("Unknown check ID"), "body {:?}", r.body);
    a.register(json!({"Name": "web",
        "Check": {"CheckID": "h", "HTTP": "http://127.0.0.1:1/", "Interval": "30s"}}))
        .await;
    let r = a
        .put_json("/v1/agent/check/update/h", &json!({"Status": "passing"}))
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.body.ends_with("does not have associated TTL"),
        "body {:?}",
        r.body
    );
}

#[tokio::test]
async fn case_22_ttl_expiry() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "1s"}}))
        .await;
    a.register(json!({"Name": "db", "Check": {"TTL": "1s", "Status": "passing"}}))
        .await;
    assert_eq!(
        a.put("/v1/agent/check/pass/service:web?note=x")
            .await
            .status,
        200
    );
    let c = a.wait_check("web", "service:web", "critical", LONG).await;
    assert_eq!(
        c["Output"],
        "TTL expired (last output before timeout follows): x"
    );
    let c = a.wait_check("db", "service:db", "critical", LONG).await;
    assert_eq!(c["Output"], "TTL expired");
}

#[tokio::test]
async fn case_23_output_truncation() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "30s"}}))
        .await;
    let big = "a".repeat(5000);
    let r = a
        .put_json(
            "/v1/agent/check/update/service:web",
            &json!({"Status": "passing", "Output": big}),
        )
        .await;
    assert_eq!(r.status, 200);
    let out = a.agent_check("service:web").await["Output"]
        .as_str()
        .expect("string output")
        .to_owned();
    assert_eq!(
        out,
        format!("{} ... (captured 4096 of 5000 bytes)", "a".repeat(4096))
    );
}

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

#[tokio::test]
async fn case_32_unknown_service_empty() {
    let a = Agent::start().await;
    let r = a.get("/v1/health/service/nope").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "[]");
    assert!(r.index() >= 1);
}

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

#[tokio::test]
async fn case_36_bad_index_and_wait() {
    let a = Agent::start().await;
    let r = a.get("/v1/health/service/web?index=abc").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid index"));
    let r = a.get("/v1/health/service/web?index=1&wait=10").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid wait time"));
}

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

#[tokio::test]
async fn case_38_catalog_services() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "ID": "w1", "Tags": ["a", "b"]}))
        .await;
    a.register(json!({"Name": "web", "ID": "w2", "Tags": ["b", "c"]}))
        .await;
    let s = a.get_json("/v1/catalog/services").await;
    assert_eq!(s["consul"], json!([]));
    let mut tags: Vec<String> = serde_json::from_value(s["web"].clone()).expect("tags");
    tags.sort();
    assert_eq!(tags, ["a", "b", "c"], "merged unique tags");
}

#[tokio::test]
async fn case_39_catalog_service() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Address": "10.1.1.1", "Port": 81}))
        .await;
    let s = a.get_json("/v1/catalog/service/web").await;
    let e = &s[0];
    assert_eq!(e["ServiceID"], "web");
    assert_eq!(e["ServiceAddress"], "10.1.1.1");
    assert_eq!(e["ServicePort"], 81);
    assert_eq!(e["ServiceTags"], json!([]));
    assert_eq!(e["Node"], "dev-node");
}

#[tokio::test]
async fn case_40_status_leader() {
    let a = Agent::start().await;
    let r = a.get("/v1/status/leader").await;
    assert_eq!(r.status, 200);
    let leader = r.json();
    let s = leader.as_str().expect("a JSON string");
    assert!(
        s.parse::<std::net::SocketAddr>().is_ok(),
        "host:port, got {s}"
    );
}

#[tokio::test]
async fn case_41_agent_self() {
    let a = Agent::start().await;
    let s = a.get_json("/v1/agent/self").await;
    assert_eq!(s["Config"]["NodeName"], "dev-node");
    assert_eq!(s["Config"]["Datacenter"], "dc1");
    for (k, v) in s.as_object().expect("object") {
        assert!(
            v.is_object() || v.is_null(),
            "{k} is an object or null: {v}"
        );
    }
}

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

// === Checks the agent runs (real listeners) ===

async fn http_target() -> std::net::SocketAddr {
    use axum::http::StatusCode;
    let app = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "all good" }))
        .route(
            "/busy",
            axum::routing::get(|| async { (StatusCode::TOO_MANY_REQUESTS, "busy") }),
        )
        .route(
            "/bad",
            axum::routing::get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An address nothing listens on.
async fn closed_port() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

#[tokio::test]
async fn case_50_http_check() {
    let a = Agent::start().await;
    let t = http_target().await;
    let closed = closed_port().await;
    for (id, path, want) in [
        ("ok", format!("http://{t}/ok"), "passing"),
        ("busy", format!("http://{t}/busy"), "warning"),
        ("bad", format!("http://{t}/bad"), "critical"),
        ("down", format!("http://{closed}/"), "critical"),
    ] {
        a.register(
            json!({"Name": id, "Check": {"CheckID": id, "HTTP": path, "Interval": "1s",
            "Status": if want == "critical" { "passing" } else { "critical" }}}),
        )
        .await;
        let c = a.wait_check(id, id, want, LONG).await;
        if id == "ok" {
            assert_eq!(
                c["Output"],
                format!("HTTP GET http://{t}/ok: 200 OK Output: all good")
            );
        }
    }
}

async fn next_hit(hits: &mut tokio::sync::mpsc::UnboundedReceiver<Instant>) -> Instant {
    tokio::time::timeout(LONG, hits.recv())
        .await
        .expect("the check keeps running")
        .expect("channel open")
}

#[tokio::test]
async fn case_51_interval_floor() {
    use std::sync::Arc;
    use tokio::sync::mpsc;
    // A target that reports each hit, so the test awaits runs instead of sleeping.
    let (tx, mut hits) = mpsc::unbounded_channel::<Instant>();
    let tx = Arc::new(tx);
    let app = axum::Router::new().route(
        "/ok",
        axum::routing::get(move || {
            let tx = Arc::clone(&tx);
            async move {
                let _ = tx.send(Instant::now());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let t = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let a = Agent::start().await;
    a.register(
        json!({"Name": "web", "Check": {"CheckID": "h", "HTTP": format!("http://{t}/ok"),
        "Interval": "100ms"}}),
    )
    .await;
    assert_eq!(
        a.agent_check("h").await["Interval"],
        "1s",
        "raised to the 1s floor"
    );
    let first = next_hit(&mut hits).await;
    let mut last = first;
    for _ in 0..3 {
        last = next_hit(&mut hits).await;
    }
    let span = last - first;
    // Three intervals at 100ms would take ~0.3s; at the 1s floor they take >= 3s.
    assert!(
        span >= Duration::from_millis(2700),
        "3 runs took {span:?}, expected about 3s"
    );
}

#[tokio::test]
async fn case_52_grpc_check() {
    use tonic_health::ServingStatus;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("pkg.Svc", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // A gRPC server without the health service: Unimplemented.
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bare_addr = bare.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(bare)),
    );

    let a = Agent::start().await;
    let target = format!("{addr}/pkg.Svc");
    a.register(json!({"Name": "svc", "Check": {"CheckID": "g", "GRPC": target, "Interval": "1s"}}))
        .await;
    let c = a.wait_check("svc", "g", "passing", LONG).await;
    assert_eq!(c["Output"], format!("gRPC check {target}: success"));
    reporter
        .set_service_status("pkg.Svc", ServingStatus::NotServing)
        .await;
    a.wait_check("svc", "g", "critical", LONG).await;

    a.register(
        json!({"Name": "bare", "Check": {"CheckID": "u", "GRPC": bare_addr.to_string(),
        "Interval": "1s", "Status": "passing"}}),
    )
    .await;
    a.wait_check("bare", "u", "critical", LONG).await;
}

#[tokio::test]
async fn case_53_tcp_check() {
    let a = Agent::start().await;
    let open = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let open_addr = open.local_addr().expect("addr");
    let closed = closed_port().await;
    a.register(
        json!({"Name": "up", "Check": {"CheckID": "t1", "TCP": open_addr.to_string(),
        "Interval": "1s"}}),
    )
    .await;
    a.register(
        json!({"Name": "down", "Check": {"CheckID": "t2", "TCP": closed.to_string(),
        "Interval": "1s", "Status": "passing"}}),
    )
    .await;
    let c = a.wait_check("up", "t1", "passing", LONG).await;
    assert_eq!(c["Output"], format!("TCP connect {open_addr}: Success"));
    a.wait_check("down", "t2", "critical", LONG).await;
    drop(open);
}

async fn web_status(a: &Agent) -> Value {
    a.agent_check("service:web").await["Status"].clone()
}

#[tokio::test]
async fn case_54_thresholds() {
    let a = Agent::start().await;
    a.register(
        json!({"Name": "web", "Check": {"TTL": "60s", "Status": "passing",
        "FailuresBeforeCritical": 2}}),
    )
    .await;
    assert_eq!(a.put("/v1/agent/check/fail/service:web").await.status, 200);
    assert_eq!(
        web_status(&a).await,
        "critical",
        "first-ever failure applies at once"
    );
    assert_eq!(a.put("/v1/agent/check/pass/service:web").await.status, 200);
    assert_eq!(web_status(&a).await, "passing");
    assert_eq!(a.put("/v1/agent/check/fail/service:web").await.status, 200);
    assert_eq!(web_status(&a).await, "passing", "one failure is held back");
    assert_eq!(a.put("/v1/agent/check/fail/service:web").await.status, 200);
    assert_eq!(
        web_status(&a).await,
        "critical",
        "the second failure applies"
    );

    a.register(json!({"Name": "db", "Check": {"TTL": "60s", "SuccessBeforePassing": 2}}))
        .await;
    assert_eq!(a.put("/v1/agent/check/pass/service:db").await.status, 200);
    assert_eq!(
        a.agent_check("service:db").await["Status"],
        "passing",
        "first-ever success applies at once"
    );
}

#[tokio::test]
async fn case_55_deregister_critical_service_after() {
    // Consul's 1m floor and 30s reaper, scaled down with the agent's test-only flags
    // (checked to default to Consul's values in unit tests). Only lower bounds that hold by
    // construction are asserted; "gone at the first reaper run past the timeout" is checked
    // exactly with paused time in the unit tests.
    let floor = Duration::from_secs(2);
    let a = Agent::start_with(
        consul_dev::Config::default()
            .node_name("dev-node")
            .reaper_interval(Duration::from_millis(200))
            .min_deregister_after(floor),
    )
    .await;
    // Registered critical: its clock never starts, so it outlives everything below.
    a.register(json!({"Name": "stuck", "Check": {"TTL": "10m",
        "DeregisterCriticalServiceAfter": "100ms"}}))
        .await;
    // Taken before registering, so it is no later than the TTL expiry it precedes.
    let registered = Instant::now();
    a.register(
        json!({"Name": "web", "Check": {"TTL": "1s", "Status": "passing",
        "DeregisterCriticalServiceAfter": "100ms"}}),
    )
    .await;
    let c = a.wait_check("web", "service:web", "critical", LONG).await;
    assert_eq!(
        c["Output"], "TTL expired",
        "the TTL expiry is the transition"
    );
    a.wait_health("web", LONG, |v| v == &json!([])).await;
    let took = registered.elapsed();
    assert!(
        took >= Duration::from_secs(1) + floor,
        "100ms is raised to the {floor:?} floor, counted from the TTL expiry (1s after \
         registering); reaped after {took:?}"
    );
    let services = a.get_json("/v1/agent/services").await;
    assert!(
        services.get("web").is_none(),
        "web is deregistered: {services}"
    );
    let checks = a.agent_checks().await;
    assert!(
        checks.get("service:web").is_none(),
        "its check went too: {checks}"
    );
    // `stuck` has been critical since before web registered and is past any timeout, but
    // registered-as-critical does not start the clock.
    assert!(
        services.get("stuck").is_some(),
        "stuck is still there: {services}"
    );
    assert_eq!(checks["service:stuck"]["Status"], "critical");

    // A transition does start it: pass, then fail at a known time.
    assert_eq!(
        a.put("/v1/agent/check/pass/service:stuck").await.status,
        200
    );
    let before_fail = Instant::now();
    assert_eq!(
        a.put("/v1/agent/check/fail/service:stuck").await.status,
        200
    );
    a.wait_health("stuck", LONG, |v| v == &json!([])).await;
    let took = before_fail.elapsed();
    assert!(
        took >= floor,
        "reaped no sooner than the floor after turning critical; took {took:?}"
    );
    assert_eq!(a.get_json("/v1/agent/services").await, json!({}));
    assert_eq!(
        a.agent_checks().await,
        json!({}),
        "no service checks are left behind"
    );
}

#[tokio::test]
async fn case_56_acls() {
    let a = Agent::start_with(consul_dev::Config::default().acl_token("root")).await;
    let body = json!({"Name": "web"}).to_string();
    let reg = "/v1/agent/service/register";
    let r = a.put_body(reg, &body).await;
    assert_eq!(r.status, 403);
    assert!(r.body.starts_with("Permission denied"), "body {:?}", r.body);
    assert_eq!(
        r.header("x-consul-default-acl-policy").as_deref(),
        Some("deny")
    );
    let ok = a
        .send(
            a.http
                .put(a.url(reg))
                .header("X-Consul-Token", "root")
                .body(body.clone()),
        )
        .await;
    assert_eq!(ok.status, 200);
    let ok = a
        .send(
            a.http
                .put(a.url(reg))
                .bearer_auth("root")
                .body(body.clone()),
        )
        .await;
    assert_eq!(ok.status, 200);
    let ok = a.put_body(&format!("{reg}?token=root"), &body).await;
    assert_eq!(ok.status, 200);
    let r = a
        .send(
            a.http
                .put(a.url(reg))
                .header("X-Consul-Token", "bogus")
                .body(body.clone()),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    let r = a.get("/v1/agent/services").await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({})),
        "anonymous reads are filtered"
    );
    let r = a.get("/v1/agent/services?token=root").await;
    assert!(
        r.json().get("web").is_some(),
        "the management token sees web"
    );
    for path in [
        "/v1/status/leader",
        "/v1/health/service/web",
        "/v1/nonsense",
        // A 405: answered by the router itself, not by a handler.
        "/v1/agent/service/register",
    ] {
        let r = a.get(path).await;
        assert_eq!(
            r.header("x-consul-default-acl-policy").as_deref(),
            Some("deny"),
            "{path} carries the policy header"
        );
    }
    let open = Agent::start().await;
    let r = open.get("/v1/status/leader").await;
    assert_eq!(
        r.header("x-consul-default-acl-policy").as_deref(),
        Some("allow")
    );
}
