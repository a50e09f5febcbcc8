//! Shared helpers: an in-process agent on 127.0.0.1:0 and a small HTTP client around it.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::Duration;

use consul_dev::{Config, DevAgent};
use serde_json::Value;

/// How long a test waits for something the agent does on its own (a check run, a TTL
/// expiry, a reaping) before it fails.
pub const LONG: Duration = Duration::from_secs(30);

/// An agent and a client pointed at it.
#[derive(Debug)]
pub struct Agent {
    pub agent: DevAgent,
    pub base: String,
    pub http: reqwest::Client,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("expected JSON body, got {:?}: {e}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    }

    pub fn index(&self) -> u64 {
        self.header("x-consul-index")
            .expect("X-Consul-Index header")
            .parse()
            .expect("numeric index")
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client builds")
}

impl Agent {
    pub async fn start() -> Agent {
        Agent::start_with(Config::default().node_name("dev-node")).await
    }

    pub async fn start_with(config: Config) -> Agent {
        let agent = DevAgent::start_with(config, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("agent starts");
        let base = format!("http://{}", agent.http_addr());
        Agent {
            agent,
            base,
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("request succeeds");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body reads");
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn put(&self, path: &str) -> Resp {
        self.send(self.http.put(self.url(path))).await
    }

    pub async fn put_body(&self, path: &str, body: &str) -> Resp {
        self.send(self.http.put(self.url(path)).body(body.to_owned()))
            .await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Resp {
        self.put_body(path, &body.to_string()).await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(
            r.status, 200,
            "GET {path} should succeed, body {:?}",
            r.body
        );
        r.json()
    }

    /// Registers a service, asserting success.
    pub async fn register(&self, body: Value) {
        let r = self.put_json("/v1/agent/service/register", &body).await;
        assert_eq!(
            r.status, 200,
            "register {body} should succeed: {:?}",
            r.body
        );
        assert_eq!(r.body, "", "a successful write has an empty body");
    }

    pub async fn agent_checks(&self) -> Value {
        self.get_json("/v1/agent/checks").await
    }

    pub async fn agent_check(&self, id: &str) -> Value {
        let checks = self.agent_checks().await;
        checks
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("expected check {id} in {checks}"))
    }

    /// Waits (with blocking queries, no polling sleeps) until `pred` holds for the health
    /// entries of `service`, or panics after `limit`.
    pub async fn wait_health(
        &self,
        service: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        let mut index = 0;
        loop {
            let r = tokio::time::timeout_at(
                deadline,
                self.get(&format!(
                    "/v1/health/service/{service}?index={index}&wait=5s"
                )),
            )
            .await
            .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting on {service}"));
            assert_eq!(r.status, 200, "health query should succeed: {:?}", r.body);
            let v = r.json();
            if pred(&v) {
                return v;
            }
            index = r.index();
        }
    }

    /// Waits until check `id` of `service` has `status`; returns the check.
    pub async fn wait_check(
        &self,
        service: &str,
        id: &str,
        status: &str,
        limit: Duration,
    ) -> Value {
        let v = self
            .wait_health(service, limit, |v| {
                check_in(v, id).is_some_and(|c| c["Status"] == status)
            })
            .await;
        check_in(&v, id).expect("check present")
    }
}

/// Finds check `id` in health entries.
pub fn check_in(entries: &Value, id: &str) -> Option<Value> {
    entries
        .as_array()?
        .iter()
        .flat_map(|e| e["Checks"].as_array().cloned().unwrap_or_default())
        .find(|c| c["CheckID"] == id)
}

/// Registers a service that is expected to be refused: the status and body.
pub async fn register_err(a: &Agent, body: Value) -> (u16, String) {
    let r = a.put_json("/v1/agent/service/register", &body).await;
    (r.status, r.body)
}
