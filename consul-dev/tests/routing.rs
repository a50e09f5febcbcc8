//! Routing rules every endpoint shares: methods (405, `Allow`, OPTIONS), unknown paths,
//! Enterprise-only parameters, where `?dc=` is read, the `Index` handler, consistency
//! parameters, the Enterprise headers, empty trailing segments. Conformance cases 16, 37, 67,
//! 73, 79, 84, 85; `tests/README.md` lists every case and where it is tested.

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

/// Case 73: what Consul's `Index` handler answers: an unknown path outside `/v1/` → 404
/// `Invalid URL path: if attempting to use the HTTP API, ensure the path starts with
/// '/v1/'`; `/` and `/ui` → 301 to `/ui/`; neither carries the ACL-policy header. The query
/// is read as `parseConsistency` and `parseWait` read it: `max_stale` (400 when not a
/// duration, stale when above zero), `cached` with `consistent` (400), `wait` before `index`.
#[tokio::test]
async fn case_73_index_answers_and_consistency_parameters() {
    let a = Agent::start().await;
    let r = a.get("/nonsense").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            404,
            "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with \
             '/v1/'\n"
        )
    );
    assert_eq!(r.header("x-consul-default-acl-policy"), None);
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for path in ["/", "/ui"] {
        let r = a.send(no_redirects.get(a.url(path))).await;
        assert_eq!(
            (r.status, r.header("location").as_deref()),
            (301, Some("/ui/")),
            "{path}"
        );
        assert_eq!(r.header("x-consul-default-acl-policy"), None, "{path}");
    }
    for (path, want) in [
        (
            "/v1/catalog/nodes?max_stale=soon",
            (400, "Invalid max_stale value \"soon\""),
        ),
        (
            "/v1/catalog/nodes?max_stale=5s&consistent",
            (
                400,
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ),
        ),
        (
            "/v1/health/service/web?cached&consistent",
            (
                400,
                "Cannot specify ?cached with ?consistent, conflicting semantics.",
            ),
        ),
        (
            "/v1/health/service/web?index=x&wait=10",
            (400, "Invalid wait time"),
        ),
    ] {
        let r = a.get(path).await;
        assert_eq!((r.status, r.body.as_str()), want, "{path}");
    }
    let r = a.get("/v1/catalog/nodes?max_stale=5s").await;
    assert_eq!(
        r.header("x-consul-effective-consistency").as_deref(),
        Some("stale"),
        "a max_stale above zero allows stale reads"
    );
}

/// Case 79: the Enterprise headers are refused in their own words (`Invalid header:
/// "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature`, likewise
/// `X-Consul-Partition`), in CE's `parseEntMeta` order: the namespace header, `ns`, the
/// partition header, `partition`.
#[tokio::test]
async fn case_79_enterprise_headers_in_their_own_words() {
    let a = Agent::start().await;
    for (header, want) in [
        (
            "X-Consul-Namespace",
            "Invalid header: \"X-Consul-Namespace\" - Namespaces are a Consul Enterprise feature",
        ),
        (
            "X-Consul-Partition",
            "Invalid header: \"X-Consul-Partition\" - Partitions are a Consul Enterprise feature",
        ),
    ] {
        let r = a
            .send(
                a.http
                    .get(a.url("/v1/health/service/web?ns=q&partition=q"))
                    .header(header, "h"),
            )
            .await;
        let want = if header == "X-Consul-Partition" {
            "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature"
        } else {
            want
        };
        assert_eq!((r.status, r.body.as_str()), (400, want), "{header}");
    }
    let r = a
        .send(
            a.http
                .get(a.url("/v1/health/service/web?partition=q"))
                .header("X-Consul-Partition", "h"),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "Invalid header: \"X-Consul-Partition\" - Partitions are a Consul Enterprise feature"
        ),
        "the header before its query parameter"
    );
}

/// Case 84: a path whose last segment is empty reaches the handler, which answers as
/// Consul's handler does for an empty ID, name or state.
#[tokio::test]
async fn case_84_empty_trailing_segments_reach_the_handler() {
    let a = Agent::start().await;
    let unknown_service =
        "Unknown service ID \"\". Ensure that the service ID is passed, not the service name.";
    let unknown_check =
        "Unknown check ID \"\". Ensure that the check ID is passed, not the check name.";
    for (put, path, want) in [
        (false, "/v1/health/state/", (400, "Missing check state")),
        (false, "/v1/health/connect/", (400, "Missing service name")),
        (false, "/v1/health/ingress/", (400, "Missing service name")),
        (false, "/v1/catalog/connect/", (400, "Missing service name")),
        (
            false,
            "/v1/agent/health/service/name/",
            (400, "Missing service Name"),
        ),
        (
            false,
            "/v1/agent/health/service/id/",
            (400, "Missing serviceID"),
        ),
        (false, "/v1/agent/service/", (404, "unknown service ID: ")),
        (
            true,
            "/v1/agent/service/maintenance/",
            (400, "Missing service ID"),
        ),
        (
            true,
            "/v1/agent/service/deregister/",
            (404, unknown_service),
        ),
        (true, "/v1/agent/check/deregister/", (404, unknown_check)),
        (true, "/v1/agent/check/pass/", (404, unknown_check)),
        (true, "/v1/agent/check/warn/", (404, unknown_check)),
        (true, "/v1/agent/check/fail/", (404, unknown_check)),
    ] {
        let r = if put {
            a.put(path).await
        } else {
            a.get(path).await
        };
        assert_eq!((r.status, r.body.as_str()), want, "{path}");
    }
    let r = a
        .put_body("/v1/agent/check/update/", r#"{"Status":"passing"}"#)
        .await;
    assert_eq!((r.status, r.body.as_str()), (404, unknown_check));
}

/// Case 85: `ns`/`partition` are refused only where Consul's handler parses them: the
/// status endpoints, `catalog/datacenters`, `agent/self` and `agent/maintenance` read
/// neither (200); `catalog/nodes` and `agent/members` read only the partition.
#[tokio::test]
async fn case_85_enterprise_parameters_where_consul_reads_them() {
    let a = Agent::start().await;
    for path in [
        "/v1/status/leader?ns=x&partition=y",
        "/v1/status/peers?ns=x",
        "/v1/catalog/datacenters?ns=x&partition=y",
        "/v1/agent/self?partition=y",
        "/v1/catalog/nodes?ns=x",
        "/v1/agent/members?ns=x",
    ] {
        assert_eq!(a.get(path).await.status, 200, "{path} does not read it");
    }
    let r = a.put("/v1/agent/maintenance?enable=false&ns=x").await;
    assert_eq!(r.status, 200, "{}", r.body);
    for path in [
        "/v1/catalog/nodes?partition=y",
        "/v1/agent/members?partition=y",
    ] {
        let r = a.get(path).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (
                400,
                "Invalid query parameter: \"partition\" - Partitions are a Consul Enterprise \
                 feature"
            ),
            "{path}"
        );
    }
}
