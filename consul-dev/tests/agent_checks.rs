//! Agent checks: the checks registered with a service, their IDs, names, validation and first
//! status, TTL updates (`pass`, `warn`, `fail`, `update`), and `check/register`'s refusals.
//! Conformance cases 03, 04, 05, 09, 10, 11, 13, 14, 15, 19, 20, 21, 22, 23, 65, 71, 82;
//! `tests/README.md` lists every case and where it is tested.

mod common;

use common::{Agent, LONG, check_in, register_err};
use serde_json::json;

/// Case 03: One TTL check without ID/Name → check `service:web`, Name `Service 'web' check`,
/// critical, Output `""`, Type `ttl`.
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

/// Case 04: Two `Checks` → `service:web:1`, `service:web:2`; `Check` + one `Checks` → `Check` gets
/// `:1`.
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

/// Case 05: Check with `"Status":"passing"` → starts passing.
#[tokio::test]
async fn case_05_initial_status() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Check": {"TTL": "10s", "Status": "passing"}}))
        .await;
    assert_eq!(a.agent_check("service:web").await["Status"], "passing");
}

/// Case 09: Check with TTL and Interval → 400 `Invalid check: Interval and TTL cannot both be
/// specified`.
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

/// Case 10: HTTP check without Interval → 400 starting `Invalid check: Interval must be > 0`; a
/// check with only a Name → `Invalid check: TTL must be > 0 for TTL checks`.
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

/// Case 11: Check Status `ok` → 400 `Status for checks must 'passing', 'warning', 'critical'`; TTL
/// `10x` → 400 starting `Request decode failed`.
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

/// Case 13: `"Check":null,"Checks":null` → 200, no checks; TTL as number 10000000000 → `10s`.
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

/// Case 14: Register, pass TTL, re-register same definition → still passing.
#[tokio::test]
async fn case_14_reregister_keeps_status() {
    let a = Agent::start().await;
    let def = json!({"Name": "web", "Check": {"TTL": "30s"}});
    a.register(def.clone()).await;
    assert_eq!(a.put("/v1/agent/check/pass/service:web").await.status, 200);
    a.register(def).await;
    assert_eq!(a.agent_check("service:web").await["Status"], "passing");
}

/// Case 15: Re-register without check 2: no flag → stays; `?replace-existing-checks=true` or empty
/// → removed; `=1` → stays.
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

/// Case 19: `pass?note=ok` → passing, Output `ok` in `/v1/agent/checks`; visible in
/// `/v1/health/service` before the response returns.
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

/// Case 20: `update` `{"Status":"warning","Output":"slow"}` → warning; `{"Status":"bad"}` → 400
/// `Invalid check status: 'bad'`; empty body → 400 `Request decode failed: EOF`.
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

/// Case 21: `update` unknown check → 404 starting `Unknown check ID`; on an HTTP check → 500 ending
/// `does not have associated TTL`.
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

/// Case 22: TTL 1s, pass note `x`, wait 1.5s → critical, Output `TTL expired (last output before
/// timeout follows): x`; with no earlier output → exactly `TTL expired`.
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

/// Case 23: `update` with 5000 bytes of output → 4096 bytes + ` ... (captured 4096 of 5000 bytes)`.
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

/// Case 65: `PUT /v1/agent/check/register` refuses in Consul's `AgentRegisterCheck` order: no
/// name (400), a bad status (400 `Bad check status`, before the check type is looked at),
/// an invalid check type (400 `Invalid check: …`), a `ServiceID` the agent does not have
/// (404 `ServiceID "<id>" does not exist`), then a script (500, the remote-calls text).
#[tokio::test]
async fn case_65_check_register_refusals() {
    let a = Agent::start().await;
    for (body, want) in [
        (json!({"TTL": "10s"}), (400, "Missing check name")),
        (
            json!({"Name": "c", "Status": "bogus", "Interval": "10s", "TTL": "10s"}),
            (400, "Bad check status"),
        ),
        (
            json!({"Name": "c", "Interval": "10s", "TTL": "10s", "ServiceID": "nope"}),
            (
                400,
                "Invalid check: Interval and TTL cannot both be specified",
            ),
        ),
        (
            json!({"Name": "c", "TTL": "10s", "ServiceID": "nope"}),
            (404, "ServiceID \"nope\" does not exist"),
        ),
        (
            json!({"Name": "c", "Args": ["true"], "Interval": "10s", "ServiceID": "nope"}),
            (404, "ServiceID \"nope\" does not exist"),
        ),
        (
            json!({"Name": "c", "Args": ["true"], "Interval": "10s"}),
            (
                500,
                "Scripts are disabled on this agent from remote calls; to enable, configure \
                 'enable_script_checks' to true",
            ),
        ),
    ] {
        let r = a.put_json("/v1/agent/check/register", &body).await;
        assert_eq!((r.status, r.body.as_str()), want, "{body}");
    }
}

/// Case 71: only the keys of the Go struct Consul decodes are accepted (400 `json: unknown
/// field "…"` otherwise): a service's check (`CheckType`) is identified by `CheckID`, not
/// `ID`; `check/register`'s body (`CheckDefinition`) by `ID`, not `CheckID`; snake_case
/// aliases only where Consul's decoder translates them.
#[tokio::test]
async fn case_71_accepted_keys_are_the_go_structs() {
    let a = Agent::start().await;
    for (path, body, field) in [
        (
            "/v1/agent/service/register",
            json!({"Name": "web", "Check": {"ID": "c", "TTL": "10s"}}),
            "ID",
        ),
        (
            "/v1/agent/service/register",
            json!({"Name": "web", "Check": {"TTL": "10s", "success_before_passing": 1}}),
            "success_before_passing",
        ),
        (
            "/v1/agent/service/register",
            json!({"Name": "web", "socket_path": "/tmp/s"}),
            "socket_path",
        ),
        (
            "/v1/agent/check/register",
            json!({"Name": "c", "CheckID": "c1", "TTL": "10s"}),
            "CheckID",
        ),
        (
            "/v1/agent/check/register",
            json!({"Name": "c", "TTL": "10s", "ProxyHTTP": "x"}),
            "ProxyHTTP",
        ),
        (
            "/v1/catalog/register",
            json!({"Node": "n", "Address": "a", "node_meta": {"k": "v"}}),
            "node_meta",
        ),
        (
            "/v1/catalog/register",
            json!({"Node": "n", "Address": "a", "Check": {"ID": "c"}}),
            "ID",
        ),
    ] {
        let r = a.put_json(path, &body).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (
                400,
                format!("Request decode failed: json: unknown field \"{field}\"").as_str()
            ),
            "{path} {body}"
        );
    }
    let r = a
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "c", "ID": "c1", "TTL": "10s", "disable_redirects": true}),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "ID and disable_redirects are CheckDefinition's: {}",
        r.body
    );
    assert_eq!(a.agent_check("c1").await["Name"], "c");
    a.register(
        json!({"Name": "web", "Check": {"CheckID": "w", "TTL": "10s",
        "DisableRedirects": true, "deregister_critical_service_after": "2m"}}),
    )
    .await;
    assert_eq!(a.agent_check("w").await["ServiceID"], "web");
}

/// Case 82: Consul's `CheckType.Validate` in full: an alias check that is also an interval
/// check, an alias check with a TTL and a negative `OutputMaxSize` are refused; negative
/// `Interval` and `TTL` do not count as set.
#[tokio::test]
async fn case_82_check_type_validation() {
    let a = Agent::start().await;
    for (check, want) in [
        (
            json!({"AliasService": "db", "HTTP": "http://127.0.0.1:1/", "Interval": "10s"}),
            "Invalid check: Interval cannot be set for Alias checks",
        ),
        (
            json!({"AliasService": "db", "TTL": "10s"}),
            "Invalid check: TTL must be not be set for Alias checks",
        ),
        (
            json!({"TTL": "10s", "OutputMaxSize": -1}),
            "Invalid check: MaxOutputMaxSize must be positive",
        ),
        (
            json!({"TTL": "-1s", "Interval": "-1s"}),
            "Invalid check: TTL must be > 0 for TTL checks",
        ),
    ] {
        let (s, b) = register_err(&a, json!({"Name": "web", "Check": check})).await;
        assert_eq!((s, b.as_str()), (400, want), "{check}");
    }
    a.register(json!({"Name": "web", "Check": {"AliasService": "db"}}))
        .await;
}
