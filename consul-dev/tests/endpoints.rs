//! The rest of the scope beyond the numbered cases: filters, catalog writes, health reads,
//! node maintenance, check registration, restart, the reaper with shortened settings, UI.

mod common;

use std::time::Duration;

use common::Agent;
use consul_dev::{Config, DevAgent};
use serde_json::{Value, json};

fn ids(v: &Value, pointer: &str) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            e.pointer(pointer)
                .and_then(Value::as_str)
                .expect("string at pointer")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn filters_on_agent_health_and_catalog() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "ID": "w1", "Tags": ["blue"], "Meta": {"env": "prod"}}))
        .await;
    a.register(json!({"Name": "web", "ID": "w2", "Tags": ["green"], "Meta": {"env": "dev"}}))
        .await;
    let f = |e: &str| url_encode(e);
    let s = a
        .get_json(&format!(
            "/v1/agent/services?filter={}",
            f("Meta.env == prod")
        ))
        .await;
    assert_eq!(s.as_object().map(|m| m.len()), Some(1));
    assert!(s.get("w1").is_some());
    let h = a
        .get_json(&format!(
            "/v1/health/service/web?filter={}",
            f("green in Service.Tags")
        ))
        .await;
    assert_eq!(ids(&h, "/Service/ID"), ["w2"]);
    let h = a
        .get_json(&format!(
            "/v1/health/service/web?filter={}",
            f("Node.Node == `dev-node` and not (Service.ID == \"w2\")")
        ))
        .await;
    assert_eq!(ids(&h, "/Service/ID"), ["w1"]);
    let c = a
        .get_json(&format!(
            "/v1/catalog/service/web?filter={}",
            f("ServiceTags contains blue or ServiceMeta.env == dev")
        ))
        .await;
    assert_eq!(ids(&c, "/ServiceID"), ["w1", "w2"]);
    let r = a
        .get(&format!(
            "/v1/health/service/web?filter={}",
            f("Service.ID ==")
        ))
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.body
            .starts_with("Failed to create boolean expression evaluator"),
        "body {:?}",
        r.body
    );
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn catalog_register_and_deregister_external_node() {
    let a = Agent::start().await;
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "ext", "Address": "10.9.9.9", "NodeMeta": {"rack": "r1"},
                "Service": {"Service": "redis", "Port": 6379, "Tags": ["primary"]},
                "Check": {"CheckID": "redis-alive", "Name": "alive", "Status": "passing",
                          "ServiceID": "redis"}}),
        )
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "true"));
    let nodes = a.get_json("/v1/catalog/nodes").await;
    assert_eq!(
        ids(&nodes, "/Node"),
        ["dev-node", "ext"],
        "sorted by node name"
    );
    let h = a.get_json("/v1/health/service/redis?passing").await;
    assert_eq!(h[0]["Node"]["Address"], "10.9.9.9");
    assert_eq!(h[0]["Checks"][0]["CheckID"], "redis-alive");
    let h = a
        .get_json("/v1/health/service/redis?node-meta=rack:r1")
        .await;
    assert_eq!(h.as_array().map(Vec::len), Some(1));
    let h = a
        .get_json("/v1/health/service/redis?node-meta=rack:r2")
        .await;
    assert_eq!(h, json!([]));
    let n = a.get_json("/v1/catalog/node/ext").await;
    assert_eq!(n["Services"]["redis"]["Port"], 6379);
    assert_eq!(a.get_json("/v1/catalog/node/missing").await, Value::Null);
    let r = a
        .put_json("/v1/catalog/deregister", &json!({"Node": "ext"}))
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "true"));
    assert_eq!(a.get_json("/v1/health/service/redis").await, json!([]));
    let r = a
        .put_json("/v1/catalog/register", &json!({"Address": "x"}))
        .await;
    // Consul validates in the Catalog.Register RPC, whose errors are 500s.
    assert_eq!((r.status, r.body.as_str()), (500, "Must provide node"));
}

#[tokio::test]
async fn health_checks_state_node_and_connect() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "30s", "Status": "warning"}}))
        .await;
    let c = a.get_json("/v1/health/checks/web").await;
    assert_eq!(ids(&c, "/CheckID"), ["service:web"]);
    let s = a.get_json("/v1/health/state/warning").await;
    assert_eq!(ids(&s, "/CheckID"), ["service:web"]);
    let s = a.get_json("/v1/health/state/any").await;
    assert_eq!(ids(&s, "/CheckID"), ["serfHealth", "service:web"]);
    // Consul does not validate the state: an unknown one matches no check.
    let r = a.get("/v1/health/state/bogus").await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    let n = a.get_json("/v1/health/node/dev-node").await;
    assert_eq!(ids(&n, "/CheckID"), ["serfHealth", "service:web"]);
    assert_eq!(a.get_json("/v1/health/connect/web").await, json!([]));
    assert_eq!(a.get_json("/v1/catalog/connect/web").await, json!([]));
    assert_eq!(a.get_json("/v1/catalog/datacenters").await, json!(["dc1"]));
    assert_eq!(
        a.get_json("/v1/status/peers").await,
        json!(["127.0.0.1:8300"])
    );
    let m = a.get_json("/v1/agent/members").await;
    assert_eq!(m[0]["Name"], "dev-node");
    let r = a.get("/v1/catalog/services?dc=elsewhere").await;
    assert_eq!((r.status, r.body.as_str()), (500, "No path to datacenter"));
}

#[tokio::test]
async fn node_maintenance_marks_every_instance() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let h = a.get("/v1/health/service/web").await.index();
    let r = a
        .put("/v1/agent/maintenance?enable=true&reason=patching")
        .await;
    assert_eq!(r.status, 200);
    let r = a.get("/v1/health/service/web").await;
    assert!(r.index() > h, "node maintenance moves the service index");
    let c = common::check_in(&r.json(), "_node_maintenance").expect("maintenance check");
    assert_eq!(c["Status"], "critical");
    assert_eq!(c["Notes"], "patching");
    assert_eq!(
        a.get_json("/v1/health/service/web?passing").await,
        json!([])
    );
    let r = a.get("/v1/agent/health/service/name/web").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        a.put("/v1/agent/maintenance?enable=false").await.status,
        200
    );
    assert_eq!(
        a.get_json("/v1/health/service/web?passing")
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn check_register_and_deregister() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web"})).await;
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "extra", "ServiceID": "web", "TTL": "30s"}),
        )
        .await;
    assert_eq!(r.status, 200, "body {:?}", r.body);
    let c = a.agent_check("extra").await;
    assert_eq!(c["ServiceName"], "web");
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "orphan", "ServiceID": "nope", "TTL": "30s"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "ServiceID \"nope\" does not exist"),
        "a missing ServiceID is Consul's 404"
    );
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "node-ttl", "TTL": "30s"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(a.put("/v1/agent/check/pass/node-ttl").await.status, 200);
    assert_eq!(a.put("/v1/agent/check/deregister/extra").await.status, 200);
    assert!(a.agent_checks().await.get("extra").is_none());
    let r = a.put("/v1/agent/check/deregister/extra").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn agent_health_by_id() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "ID": "w1", "Check": {"TTL": "30s"}}))
        .await;
    let r = a.get("/v1/agent/health/service/id/w1").await;
    assert_eq!(r.status, 503, "a new check is critical");
    assert_eq!(r.json()["AggregatedStatus"], "critical");
    let r = a.get("/v1/agent/health/service/id/w1?format=text").await;
    assert_eq!(r.body, "critical");
    let r = a.get("/v1/agent/health/service/id/nope").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn agent_health_not_found_and_reason() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "ID": "w1", "Check": {"TTL": "30s", "Status": "warning"}}))
        .await;
    let r = a.get("/v1/agent/health/service/id/w1?format=text").await;
    assert_eq!(
        (
            r.status,
            r.body.as_str(),
            r.header("x-consul-reason").as_deref()
        ),
        (429, "warning", Some("warning")),
        "a warning instance by ID, as text"
    );
    // Consul answers its zero AgentServiceChecksInfo, critical, and the reason header.
    let r = a.get("/v1/agent/health/service/id/nope").await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"AggregatedStatus": "critical", "Service": null, "Checks": null})
        ),
        "unknown ID as JSON"
    );
    assert_eq!(
        r.header("x-consul-reason").as_deref(),
        Some("ServiceId nope not found")
    );
    let r = a.get("/v1/agent/health/service/id/nope?format=text").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "ServiceId nope not found"),
        "unknown ID as text"
    );
    let r = a
        .get("/v1/agent/health/service/name/nope?format=text")
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "ServiceName nope Not Found"),
        "unknown name as text"
    );
    assert_eq!(
        r.header("x-consul-reason").as_deref(),
        Some("ServiceName nope Not Found")
    );
}

#[tokio::test]
async fn restart_on_the_same_port_has_fresh_state() {
    let first = DevAgent::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("starts");
    let addr = first.addr();
    let http = common::client();
    let url = format!("http://{addr}/v1/agent/service/register");
    let r = http
        .put(&url)
        .body(r#"{"Name":"web"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    // Keep a pooled keep-alive connection open across the restart on purpose.
    first.shutdown().await;
    let second = DevAgent::start(addr)
        .await
        .expect("restarts on the same port");
    let services: Value = http
        .get(format!("http://{addr}/v1/agent/services"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(services, json!({}), "a restarted agent starts empty");
    drop(second);
    // Dropping also frees the port.
    let third = DevAgent::start(addr).await.expect("starts after drop");
    third.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_blocking_queries() {
    let a = Agent::start().await;
    let h = a.get("/v1/health/service/web").await.index();
    let url = a.url(&format!("/v1/health/service/web?index={h}&wait=5m"));
    let http = a.http.clone();
    let waiter = tokio::spawn(async move { http.get(url).send().await });
    a.agent.wait_for_blocked_queries(1).await;
    tokio::time::timeout(Duration::from_secs(20), a.agent.shutdown())
        .await
        .expect("shutdown does not wait for the 5m query");
    // Unanswered: it ends with its connection, as a stopping Consul agent's do, so the
    // client sees an error and does not carry this agent's index to the next one.
    let r = waiter.await.expect("join");
    assert!(r.is_err(), "the blocked query was not answered: {r:?}");
}

#[tokio::test]
async fn reaper_with_shortened_settings() {
    let a = Agent::start_with(
        Config::default()
            .node_name("dev-node")
            .reaper_interval(Duration::from_millis(200))
            .min_deregister_after(Duration::from_millis(500)),
    )
    .await;
    a.register(
        json!({"Name": "web", "Check": {"TTL": "1s", "Status": "passing",
        "DeregisterCriticalServiceAfter": "100ms"}}),
    )
    .await;
    // Registered-as-critical does not start the clock; this one starts passing.
    a.wait_check("web", "service:web", "critical", Duration::from_secs(30))
        .await;
    a.wait_health("web", Duration::from_secs(30), |v| v == &json!([]))
        .await;
    assert_eq!(a.get_json("/v1/agent/services").await, json!({}));
}

#[tokio::test]
async fn ui_redirect_and_page() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web<script>"})).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = http.get(a.url("/")).send().await.expect("send");
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/ui/");
    let page = a.get("/ui/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("web&lt;script&gt;"), "names are escaped");
    assert!(page.body.contains("consul"), "lists the consul service");
}

#[tokio::test]
async fn pretty_and_index_headers_on_catalog() {
    let a = Agent::start().await;
    let r = a.get("/v1/catalog/services?pretty").await;
    assert!(r.body.contains("\n    "), "pretty output is indented");
    assert!(r.index() >= 1);
    let before = r.index();
    a.register(json!({"Name": "web"})).await;
    let r = a
        .get(&format!("/v1/catalog/services?index={before}&wait=10s"))
        .await;
    assert!(r.index() > before);
    assert!(r.json().get("web").is_some());
}

#[tokio::test]
async fn service_mesh_registrations_are_refused_clearly() {
    let a = Agent::start().await;
    for body in [
        json!({"Name": "web-proxy", "Kind": "connect-proxy", "Proxy": {"DestinationServiceName": "web"}}),
        json!({"Name": "web", "Connect": {"SidecarService": {}}}),
    ] {
        let r = a.put_json("/v1/agent/service/register", &body).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(
            r.body.contains("does not support service mesh"),
            "body {:?}",
            r.body
        );
    }
    // Empty Proxy/Connect objects, as some clients send them, are fine.
    a.register(json!({"Name": "web", "Proxy": null, "Connect": {}}))
        .await;
}

#[tokio::test]
async fn failures_before_warning_gives_warning_with_the_failure_output() {
    let a = Agent::start().await;
    a.register(
        json!({"Name": "web", "Check": {"TTL": "60s", "Status": "passing",
        "FailuresBeforeWarning": 1, "FailuresBeforeCritical": 3}}),
    )
    .await;
    // The first-ever result applies at once; a pass resets the counters.
    assert_eq!(a.put("/v1/agent/check/pass/service:web").await.status, 200);
    assert_eq!(
        a.put("/v1/agent/check/fail/service:web?note=f1")
            .await
            .status,
        200
    );
    let c = a.agent_check("service:web").await;
    assert_eq!(
        (c["Status"].clone(), c["Output"].clone()),
        (json!("warning"), json!("f1"))
    );
    assert_eq!(
        a.put("/v1/agent/check/fail/service:web?note=f2")
            .await
            .status,
        200
    );
    assert_eq!(a.agent_check("service:web").await["Status"], "warning");
    assert_eq!(
        a.put("/v1/agent/check/fail/service:web?note=f3")
            .await
            .status,
        200
    );
    let c = a.agent_check("service:web").await;
    assert_eq!(
        (c["Status"].clone(), c["Output"].clone()),
        (json!("critical"), json!("f3"))
    );
}

#[tokio::test]
async fn failed_http_and_tcp_checks_explain_like_go() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Checks": [
        {"CheckID": "h", "HTTP": format!("http://{closed}/health"), "Interval": "1s", "Status": "passing"},
        {"CheckID": "t", "TCP": closed.to_string(), "Interval": "1s", "Status": "passing"}]}))
        .await;
    let h = a
        .wait_check("web", "h", "critical", Duration::from_secs(30))
        .await;
    assert_eq!(
        h["Output"],
        format!("Get \"http://{closed}/health\": dial tcp {closed}: connect: connection refused")
    );
    let t = a
        .wait_check("web", "t", "critical", Duration::from_secs(30))
        .await;
    assert_eq!(
        t["Output"],
        format!("dial tcp {closed}: connect: connection refused")
    );
}

#[tokio::test]
async fn ipv6_and_hostname_addresses() {
    let a = Agent::start().await;
    a.register(json!({"Name": "v6", "Address": "2001:db8::1", "Port": 7}))
        .await;
    a.register(json!({"Name": "named", "Address": "db.internal", "Port": 7}))
        .await;
    let s = a.get_json("/v1/agent/services").await;
    let want = json!({"Address": "2001:db8::1", "Port": 7});
    assert_eq!(s["v6"]["TaggedAddresses"]["lan_ipv6"], want);
    assert_eq!(s["v6"]["TaggedAddresses"]["wan_ipv6"], want);
    assert!(
        s["named"].get("TaggedAddresses").is_none(),
        "a host name adds none: {}",
        s["named"]
    );
    let r = a
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "x", "Address": "::"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid service address")
    );
}
