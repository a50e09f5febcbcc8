//! Transport settings that change how requests travel: unix sockets, basic auth, tokens.

use axum::http::HeaderMap;
use axum::routing::get;
use consul_api::{Client, Config};

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_addresses_reach_the_agent() {
    let dir = std::env::temp_dir().join(format!("consul-api-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let app = axum::Router::new().route("/v1/status/leader", get(|| async { "\"10.0.0.1:8300\"" }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = Config::from_lookup(|name| {
        (name == "CONSUL_HTTP_ADDR").then(|| format!("unix://{}", path.display()))
    })
    .unwrap();
    let leader = Client::new(config)
        .unwrap()
        .status()
        .leader()
        .await
        .unwrap();
    assert_eq!(leader, "10.0.0.1:8300");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn token_basic_auth_and_enterprise_scope_are_sent() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/status/leader",
        get(move |headers: HeaderMap, uri: axum::http::Uri| {
            let tx = tx.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let _ = tx.send((
                    h("x-consul-token"),
                    h("authorization"),
                    uri.query().map(str::to_owned),
                ));
                "\"\""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = Config::new(&addr.to_string())
        .unwrap()
        .token("t0k3n")
        .basic_auth("alice", Some("pw"))
        .namespace("team-a");
    let leader = Client::new(config)
        .unwrap()
        .status()
        .leader()
        .await
        .unwrap();
    assert_eq!(leader, "", "no leader reads as an empty string");
    let (token, auth, query) = rx.recv().await.unwrap();
    assert_eq!(token.as_deref(), Some("t0k3n"), "token as X-Consul-Token");
    assert_eq!(
        auth.as_deref(),
        Some("Basic YWxpY2U6cHc="),
        "basic auth alice:pw"
    );
    assert_eq!(
        query.as_deref(),
        Some("ns=team-a"),
        "namespace sent when configured"
    );

    let plain = Client::new(Config::new(&addr.to_string()).unwrap()).unwrap();
    plain.status().leader().await.unwrap();
    let (token, auth, query) = rx.recv().await.unwrap();
    assert_eq!(
        (token, auth, query),
        (None, None, None),
        "nothing unconfigured is sent"
    );
}

#[tokio::test]
async fn a_check_registration_reaches_the_agent_with_its_id_as_id() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = axum::Router::new().route(
        "/v1/agent/check/register",
        axum::routing::put(move |body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut check = consul_api::agent::CheckDefinition::ttl(std::time::Duration::from_secs(30));
    check.check_id = Some("web-1-extra".into());
    check.name = Some("extra".into());
    let client = Client::new(Config::new(&addr.to_string()).unwrap()).unwrap();
    client
        .agent()
        .register_check(&consul_api::agent::CheckRegistration::for_service(
            "web-1", check,
        ))
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
    assert_eq!(
        body.get("ID").and_then(|v| v.as_str()),
        Some("web-1-extra"),
        "the check's ID goes as ID: {body}"
    );
    assert!(
        body.get("CheckID").is_none(),
        "no CheckID, which Consul's CheckDefinition refuses: {body}"
    );
    assert_eq!(
        body.get("ServiceID").and_then(|v| v.as_str()),
        Some("web-1")
    );
}
