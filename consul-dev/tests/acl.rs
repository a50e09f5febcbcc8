//! ACLs: default deny with one management token, the ways to pass a token, filtered reads and the
//! policy header. Conformance cases 56; `tests/README.md` lists every case and where it is tested.

mod common;

use common::Agent;
use serde_json::json;

/// Case 56: ACLs on, default deny: anonymous register → 403 starting `Permission denied`; valid
/// token works via `X-Consul-Token`, `Authorization: Bearer`, `?token=`; bogus token → 403 `ACL not
/// found`; anonymous `GET /v1/agent/services` → 200 `{}`; `X-Consul-Default-ACL-Policy` on every
/// response.
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
    // Consul's `Index` handler (unknown paths) is not wrapped, so it sets no policy header.
    let r = a.get("/v1/nonsense").await;
    assert_eq!(
        r.header("x-consul-default-acl-policy"),
        None,
        "{:?}",
        r.headers
    );
    let open = Agent::start().await;
    let r = open.get("/v1/status/leader").await;
    assert_eq!(
        r.header("x-consul-default-acl-policy").as_deref(),
        Some("allow")
    );
}
