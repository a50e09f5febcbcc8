//! Bad input gets Consul's status and text, never a panic; a property test throws random
//! bodies and query strings at the agent and checks it keeps answering sanely.

mod common;

use common::Agent;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use serde_json::{Value, json};

#[tokio::test]
async fn malformed_and_mistyped_bodies() {
    let a = Agent::start().await;
    let reg = "/v1/agent/service/register";
    for (body, prefix) in [
        ("{", "Request decode failed: "),
        ("not json", "Request decode failed: "),
        ("[]", "Request decode failed: json: cannot unmarshal array"),
        (
            "\"web\"",
            "Request decode failed: json: cannot unmarshal string",
        ),
        (
            r#"{"Name":5}"#,
            "Request decode failed: json: cannot unmarshal number into Go struct field ServiceDefinition.Name of type string",
        ),
        (
            r#"{"Name":"a","Port":"80"}"#,
            "Request decode failed: json: cannot unmarshal string",
        ),
        (
            r#"{"Name":"a","Port":1.5}"#,
            "Request decode failed: json: cannot unmarshal number 1.5",
        ),
        (
            r#"{"Name":"a","Tags":"x"}"#,
            "Request decode failed: json: cannot unmarshal string",
        ),
        (
            r#"{"Name":"a","Check":{"TTL":"10"}}"#,
            "Request decode failed: time: missing unit",
        ),
        (
            r#"{"Name":"a","Check":{"TTL":true}}"#,
            "Request decode failed: json: cannot unmarshal bool",
        ),
        (
            r#"{"Name":"a","Check":{"Nope":1}}"#,
            "Request decode failed: json: unknown field \"Nope\"",
        ),
        ("", "Request decode failed: EOF"),
    ] {
        let r = a.put_body(reg, body).await;
        assert_eq!(r.status, 400, "{body:?} is a 400, got {:?}", r.body);
        assert!(
            r.body.starts_with(prefix),
            "{body:?}: {:?} should start with {prefix:?}",
            r.body
        );
    }
}

#[tokio::test]
async fn bad_query_parameters() {
    let a = Agent::start().await;
    for (q, body) in [
        ("index=-1", "Invalid index"),
        ("index=1.5", "Invalid index"),
        ("index=1&wait=abc", "Invalid wait time"),
        ("index=1&wait=5x", "Invalid wait time"),
        ("passing=maybe", "Invalid value for ?passing"),
    ] {
        let r = a.get(&format!("/v1/health/service/web?{q}")).await;
        assert_eq!((r.status, r.body.as_str()), (400, body), "query {q}");
    }
    let r = a.get("/v1/health/service/web?partition=p1").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Enterprise"));
}

/// With several bad parameters the first in order names the error: datacenter,
/// consistency, blocking, then the endpoint's own (check state, `?passing`), then the filter.
#[tokio::test]
async fn first_bad_parameter_wins() {
    let a = Agent::start().await;
    for (path, want) in [
        // The unknown dc is an RPC error: every 400 of parse() and of the handler wins.
        (
            "/v1/health/service/web?dc=elsewhere&stale&consistent",
            (
                400,
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ),
        ),
        (
            "/v1/health/service/web?dc=elsewhere&passing=maybe",
            (400, "Invalid value for ?passing"),
        ),
        (
            "/v1/health/service/web?dc=elsewhere&filter=(",
            (500, "No path to datacenter"),
        ),
        (
            "/v1/catalog/services?stale&consistent&index=x",
            (
                400,
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ),
        ),
        (
            "/v1/health/service/web?index=x&passing=maybe",
            (400, "Invalid index"),
        ),
        ("/v1/health/state/nope?wait=10", (400, "Invalid wait time")),
        (
            "/v1/health/service/web?passing=maybe&filter=(",
            (400, "Invalid value for ?passing"),
        ),
        // Consul does not validate the state, so the filter's error is the first.
        (
            "/v1/health/state/nope?filter=(",
            (500, "Failed to create boolean expression evaluator: "),
        ),
    ] {
        let r = a.get(path).await;
        assert_eq!(r.status, want.0, "{path}: {:?}", r.body);
        // The filter's parse-error detail is a listed deviation; its prefix is Consul's.
        assert!(r.body.starts_with(want.1), "{path}: {:?}", r.body);
    }
}

#[tokio::test]
async fn oversize_body_is_rejected_not_fatal() {
    let a = Agent::start().await;
    let big = format!(
        r#"{{"Name":"web","Meta":{{"k":"{}"}}}}"#,
        "x".repeat(3 * 1024 * 1024)
    );
    let r = a.put_body("/v1/agent/service/register", &big).await;
    assert!(
        r.status == 413 || r.status == 400,
        "an oversize body is a client error, got {}",
        r.status
    );
    assert_eq!(
        a.get("/v1/status/leader").await.status,
        200,
        "agent still answers"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let a = Agent::start().await;
    for path in [
        "/v1/agent/nope",
        "/v1/",
        "/v1/health",
        "/v1/catalog/servicez",
    ] {
        let r = a.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(
            r.body,
            "Invalid URL path: not a recognized HTTP API endpoint\n"
        );
    }
    for path in ["/v1/catalog/service/", "/v1/health/service/"] {
        let r = a.get(path).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, "Missing service name"),
            "{path}"
        );
    }
    let r = a.send(a.http.delete(a.url("/v1/agent/services"))).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (405, "method DELETE not allowed")
    );
    assert_eq!(r.header("allow").as_deref(), Some("OPTIONS,GET"));
    let r = a.put("/v1/health/service/web").await;
    assert_eq!(r.status, 405);
}

/// The 500s Consul itself answers for some inputs; anything else 5xx is a bug.
fn expected_500(body: &str) -> bool {
    body.starts_with("Failed to create boolean expression evaluator")
        || body == "No path to datacenter"
        || body.ends_with("does not have associated TTL")
        || body.starts_with("Scripts are disabled")
        || body.starts_with("Unknown service ID")
        // Consul's Catalog.Register/Deregister RPC validation: plain errors, hence 500s.
        || body == "Must provide node"
        || body.starts_with("Bad node ID: ")
        || body == "Must provide address if SkipNodeUpdate is not set"
        || body == "Must provide service name (Service.Service) when service ID is provided"
        || body == "Invalid service address"
        || body == "cannot register requests with PeerName in them"
        || (body.starts_with("Node '") && body.contains("doesn't match register request node"))
}

fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "Name",
        "name",
        "ID",
        "Port",
        "Address",
        "Tags",
        "Meta",
        "Check",
        "Checks",
        "TTL",
        "Interval",
        "HTTP",
        "TCP",
        "GRPC",
        "Status",
        "Output",
        "Weights",
        "Passing",
        "Warning",
        "DeregisterCriticalServiceAfter",
        "FailuresBeforeCritical",
        "TaggedAddresses",
        "Node",
        "Service",
        "CheckID",
        "ServiceID",
        "Bogus",
        "enable_tag_override",
        "Timeout",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z0-9:./]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "10s", "1m30s", "-5s", "10x", "0", "", "passing", "0.0.0.0"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kvs| {
                Value::Object(kvs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

#[test]
fn random_requests_never_crash_the_agent() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let agent = rt.block_on(Agent::start());
    let paths = [
        ("PUT", "/v1/agent/service/register"),
        ("PUT", "/v1/agent/check/register"),
        ("PUT", "/v1/agent/check/update/service:web"),
        ("PUT", "/v1/catalog/register"),
        ("PUT", "/v1/catalog/deregister"),
        ("PUT", "/v1/agent/service/maintenance/web"),
        ("GET", "/v1/health/service/web"),
        ("GET", "/v1/agent/services"),
        ("GET", "/v1/catalog/services"),
        ("GET", "/v1/agent/service/web"),
    ];
    let query = prop::collection::vec(
        (
            prop::sample::select(vec![
                "index",
                "wait",
                "passing",
                "tag",
                "filter",
                "stale",
                "consistent",
                "dc",
                "node-meta",
                "enable",
                "reason",
                "hash",
                "format",
                "token",
                "ns",
                "pretty",
                "replace-existing-checks",
                "near",
            ]),
            prop_oneof![
                "[ -~]{0,16}",
                prop::sample::select(vec![
                    "1",
                    "0",
                    "true",
                    "1s",
                    "20ms",
                    "Service.ID == web",
                    "a in Tags"
                ])
                .prop_map(str::to_owned),
            ],
        ),
        0..4,
    );
    let body = prop_oneof![json_value().prop_map(|v| v.to_string()), "[ -~]{0,40}",];
    let mut runner = TestRunner::new(PropConfig {
        cases: 256,
        ..PropConfig::default()
    });
    runner
        .run(
            &(prop::sample::select(paths.to_vec()), query, body),
            |((method, path), query, body)| {
                let qs: String = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query.iter().map(|(k, v)| {
                        // Keep blocking waits short so the test stays quick.
                        if *k == "wait" {
                            (*k, "20ms".to_owned())
                        } else {
                            (*k, v.clone())
                        }
                    }))
                    .append_pair("wait", "20ms")
                    .finish();
                let url = agent.url(&format!("{path}?{qs}"));
                let req = match method {
                    "PUT" => agent.http.put(url).body(body.clone()),
                    _ => agent.http.get(url),
                };
                let resp = rt.block_on(agent.send(req));
                prop_assert!(
                    resp.status < 500 || expected_500(&resp.body),
                    "{method} {path}?{qs} body {body:?} -> {} {:?}",
                    resp.status,
                    resp.body
                );
                Ok(())
            },
        )
        .expect("property holds");
    let alive = rt.block_on(agent.get("/v1/status/leader"));
    assert_eq!(alive.status, 200, "the agent survived");
}
