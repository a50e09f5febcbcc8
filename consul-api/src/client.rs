//! The HTTP plumbing every endpoint family shares: one reqwest client, query options, the
//! metadata headers, path escaping, error mapping and bounded body reads.
//! The bottom of the client: uses only the configuration and the error type. Each family
//! adds its accessor (`client.agent()`…) in its own file.

use std::time::Duration;

use http::StatusCode;
use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::config::Config;
use crate::config::Token;
use crate::error::Error;

/// The largest answer body the client reads. A catalog of ten thousand instances is a few
/// megabytes; anything far beyond is a misbehaving server, not data.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// How stale a read may be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consistency {
    /// The agent's default: answered by the leader.
    #[default]
    Default,
    /// Any server may answer, possibly stale: cheaper, scales reads.
    Stale,
    /// The leader confirms its leadership first.
    Consistent,
}

/// Options shared by read endpoints.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct QueryOptions {
    /// Datacenter to ask; `None` is the agent's own.
    pub datacenter: Option<String>,
    /// Only instances carrying every tag (health and catalog service reads).
    pub tags: Vec<String>,
    /// Only instances whose checks all pass (health service reads).
    pub passing: bool,
    /// A filter expression in Consul's language.
    pub filter: Option<String>,
    /// Block until the result's index exceeds this one (a blocking query).
    pub index: Option<u64>,
    /// How long a blocking query may wait; Consul's default is 5 minutes.
    pub wait: Option<Duration>,
    /// Read consistency.
    pub consistency: Consistency,
    /// A token for this request instead of the client's.
    pub token: Option<Token>,
    /// Sort by round-trip time from this node (`_agent` for the local one).
    pub near: Option<String>,
    /// Only nodes with these metadata pairs.
    pub node_meta: Vec<(String, String)>,
    /// Let the agent answer from its cache (`?cached`).
    pub cached: bool,
    /// Block until the content hash differs from this one (hash-based blocking of
    /// `agent/service/:id`).
    pub hash: Option<String>,
    /// Enterprise namespace; never sent when `None` (Consul CE refuses the parameter).
    pub namespace: Option<String>,
    /// Enterprise admin partition; never sent when `None`.
    pub partition: Option<String>,
    /// Cluster peer to read from.
    pub peer: Option<String>,
}

impl QueryOptions {
    /// Options for a blocking read after `index`, waiting up to `wait`.
    pub fn blocking(index: u64, wait: Duration) -> Self {
        QueryOptions {
            index: Some(index),
            wait: Some(wait),
            ..Default::default()
        }
    }

    /// Options for a hash-blocking read: block until the content hash differs from `hash`,
    /// waiting up to `wait`.
    pub fn blocking_hash(hash: impl Into<String>, wait: Duration) -> Self {
        QueryOptions {
            hash: Some(hash.into()),
            wait: Some(wait),
            ..Default::default()
        }
    }

    /// Sets the datacenter.
    #[must_use]
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.datacenter = Some(dc.into());
        self
    }

    /// Adds a required tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Sets passing-only.
    #[must_use]
    pub fn passing(mut self, passing: bool) -> Self {
        self.passing = passing;
        self
    }

    /// Sets the filter expression.
    #[must_use]
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Sets the consistency mode.
    #[must_use]
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// The query-string pairs these options send.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(dc) = &self.datacenter {
            q.push(("dc", dc.clone()));
        }
        for tag in &self.tags {
            q.push(("tag", tag.clone()));
        }
        if self.passing {
            q.push(("passing", "true".to_owned()));
        }
        if let Some(filter) = &self.filter {
            q.push(("filter", filter.clone()));
        }
        if let Some(index) = self.index {
            // Index 0 means "answer at once"; after a first answer a client must never send
            // it (a zero from the server is read as 1 by the caller).
            q.push(("index", index.to_string()));
        }
        if let Some(wait) = self.wait {
            // Consul's Go client sends milliseconds.
            q.push(("wait", format!("{}ms", wait.as_millis())));
        }
        match self.consistency {
            Consistency::Default => {}
            Consistency::Stale => q.push(("stale", String::new())),
            Consistency::Consistent => q.push(("consistent", String::new())),
        }
        if let Some(hash) = &self.hash {
            q.push(("hash", hash.clone()));
        }
        if let Some(near) = &self.near {
            q.push(("near", near.clone()));
        }
        for (k, v) in &self.node_meta {
            q.push(("node-meta", format!("{k}:{v}")));
        }
        if self.cached {
            q.push(("cached", String::new()));
        }
        if let Some(ns) = &self.namespace {
            q.push(("ns", ns.clone()));
        }
        if let Some(partition) = &self.partition {
            q.push(("partition", partition.clone()));
        }
        if let Some(peer) = &self.peer {
            q.push(("peer", peer.clone()));
        }
        q
    }

    /// Whether this read blocks at the server.
    fn blocks(&self) -> bool {
        self.index.is_some_and(|i| i > 0) || self.hash.is_some()
    }
}

/// What Consul says about a read besides its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryMeta {
    /// `X-Consul-Index`: pass it back as [`QueryOptions::index`] to block for a change.
    pub last_index: u64,
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
    /// `X-Consul-LastContact`: how stale the answering server may be.
    pub last_contact: Duration,
    /// `X-Consul-Effective-Consistency`, when sent.
    pub effective_consistency: Option<String>,
    /// `X-Consul-ContentHash`, sent by hash-blocking endpoints.
    pub content_hash: Option<String>,
}

impl QueryMeta {
    fn from_headers(headers: &http::HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        QueryMeta {
            last_index: text("X-Consul-Index")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            known_leader: text("X-Consul-KnownLeader") == Some("true"),
            last_contact: Duration::from_millis(
                text("X-Consul-LastContact")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            effective_consistency: text("X-Consul-Effective-Consistency").map(str::to_owned),
            content_hash: text("X-Consul-ContentHash").map(str::to_owned),
        }
    }
}

/// A Consul HTTP API client. Cheap to clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    config: Config,
    /// Where requests go: the address, or the TLS server name standing for it.
    base: Url,
}

// === impl Client ===

impl Client {
    /// A client with `config`.
    pub fn new(config: Config) -> Result<Self, Error> {
        let http = config.http_client()?;
        let base = config.base_url()?;
        Ok(Client { http, config, base })
    }

    /// A client configured from the process environment ([`Config::from_env`]).
    pub fn from_env() -> Result<Self, Error> {
        Self::new(Config::from_env()?)
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn url(&self, path: &str) -> Result<Url, Error> {
        self.base
            .join(path)
            .map_err(|e| Error::config("path", format!("{path:?}: {e}")))
    }

    /// A request to `path` with the client's settings, and `opts`' where it has them. No I/O.
    fn request(
        &self,
        method: Method,
        path: &str,
        opts: Option<&QueryOptions>,
    ) -> Result<RequestBuilder, Error> {
        let mut req = self.http.request(method, self.url(path)?);
        let token = opts.and_then(|o| o.token.as_ref());
        if let Some(token) = token.or(self.config.token.as_ref()) {
            req = req.header("X-Consul-Token", token.expose());
        }
        if let Some(auth) = &self.config.basic_auth {
            req = req.basic_auth(&auth.username, auth.password.as_ref().map(Token::expose));
        }
        // Enterprise scoping; Consul CE refuses the parameters, so only when configured. A
        // request's own namespace or partition (sent with its other pairs) replaces the
        // client's, as `params.Set` does in Consul's Go client: each is sent at most once.
        let own_namespace = opts.is_some_and(|o| o.namespace.is_some());
        if let Some(ns) = self.config.namespace.as_ref().filter(|_| !own_namespace) {
            req = req.query(&[("ns", ns)]);
        }
        let own_partition = opts.is_some_and(|o| o.partition.is_some());
        if let Some(partition) = self.config.partition.as_ref().filter(|_| !own_partition) {
            req = req.query(&[("partition", partition)]);
        }
        if let Some(opts) = opts {
            req = req.query(&opts.pairs());
        }
        Ok(req)
    }

    /// A read: `GET path` with `opts`, decoded, with its metadata.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        opts: &QueryOptions,
    ) -> Result<(T, QueryMeta), Error> {
        let timeout = if opts.blocks() {
            // The server may hold the request for wait plus up to wait/16 of jitter; give it
            // that and the ordinary deadline on top, so a slow answer is not cut short.
            let wait = opts.wait.unwrap_or(Duration::from_secs(300));
            wait + wait / 16 + self.config.request_timeout
        } else {
            self.config.request_timeout
        };
        let req = self
            .request(Method::GET, path, Some(opts))?
            .timeout(timeout);
        let resp = send(req).await?;
        let meta = QueryMeta::from_headers(resp.headers());
        let body = read_body(resp).await?;
        Ok((decode(&body)?, meta))
    }

    /// A read whose non-200 statuses are answers too (the agent's health endpoints answer
    /// 429 and 503 with a body): the status, metadata and body, unchecked.
    pub(crate) async fn get_any_status(
        &self,
        path: &str,
        opts: &QueryOptions,
    ) -> Result<(StatusCode, QueryMeta, Vec<u8>), Error> {
        let req = self
            .request(Method::GET, path, Some(opts))?
            .timeout(self.config.request_timeout);
        let resp = req.send().await.map_err(Error::from_reqwest)?;
        let status = resp.status();
        let meta = QueryMeta::from_headers(resp.headers());
        let body = read_body(resp).await?;
        Ok((status, meta, body))
    }

    /// A write: `PUT path` with an optional JSON body and query pairs; the answer body is
    /// returned as text (usually empty).
    pub(crate) async fn put<B: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<String, Error> {
        let mut req = self
            .request(Method::PUT, path, None)?
            .query(query)
            .timeout(self.config.request_timeout);
        if let Some(body) = body {
            let json = serde_json::to_vec(body).map_err(|source| Error::Decode {
                path: "request body".into(),
                source,
            })?;
            req = req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        let resp = send(req).await?;
        let body = read_body(resp).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

async fn send(req: RequestBuilder) -> Result<Response, Error> {
    let resp = req.send().await.map_err(Error::from_reqwest)?;
    let status = resp.status();
    if status == StatusCode::OK {
        return Ok(resp);
    }
    let body = read_body(resp).await.unwrap_or_default();
    Err(status_error(status, &body))
}

/// The error for an answer with status `status` and body `body` (Consul's plain-text
/// complaint).
pub(crate) fn status_error(status: StatusCode, body: &[u8]) -> Error {
    Error::Status {
        status,
        message: String::from_utf8_lossy(body).trim().to_owned(),
    }
}

/// Reads the body, refusing more than [`MAX_BODY`] bytes without buffering them.
async fn read_body(mut resp: Response) -> Result<Vec<u8>, Error> {
    if resp
        .content_length()
        .is_some_and(|len| len > MAX_BODY as u64)
    {
        return Err(Error::TooLarge { limit: MAX_BODY });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Error::from_reqwest)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Error::TooLarge { limit: MAX_BODY });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Escapes one path segment, so an ID or name with `/` or spaces stays one segment.
pub(crate) fn escape(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Decodes JSON, naming the path of the field that failed.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| Error::Decode {
        path: err.path().to_string(),
        source: err.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_what_consul_reads() {
        let mut opts = QueryOptions::blocking(42, Duration::from_secs(90))
            .datacenter("dc2")
            .tag("a")
            .tag("b")
            .passing(true)
            .filter("Service.Port > 0")
            .consistency(Consistency::Stale);
        opts.node_meta.push(("rack".into(), "r1".into()));
        let pairs = opts.pairs();
        let want: Vec<(&str, String)> = vec![
            ("dc", "dc2".into()),
            ("tag", "a".into()),
            ("tag", "b".into()),
            ("passing", "true".into()),
            ("filter", "Service.Port > 0".into()),
            ("index", "42".into()),
            ("wait", "90000ms".into()),
            ("stale", String::new()),
            ("node-meta", "rack:r1".into()),
        ];
        assert_eq!(pairs, want);
    }

    #[test]
    fn escape_keeps_ids_in_one_segment() {
        assert_eq!(escape("web 1/x"), "web%201%2Fx");
    }

    #[test]
    fn enterprise_parameters_are_omitted_when_unset() {
        let pairs = QueryOptions::default().pairs();
        assert!(pairs.is_empty(), "nothing set, nothing sent: {pairs:?}");
    }

    #[test]
    fn only_blocking_reads_get_the_long_deadline() {
        assert!(!QueryOptions::default().blocks());
        assert!(
            !QueryOptions::blocking(0, Duration::from_secs(1)).blocks(),
            "index 0 answers at once"
        );
        assert!(QueryOptions::blocking(1, Duration::from_secs(1)).blocks());
        assert!(QueryOptions::blocking_hash("h", Duration::from_secs(1)).blocks());
    }

    /// The values of `key` in the query string of a read built with `config` and `opts`.
    fn sent(config: Config, opts: &QueryOptions, key: &str) -> Vec<String> {
        let client = Client::new(config).expect("client builds");
        let req = client
            .request(Method::GET, "/v1/health/service/web", Some(opts))
            .expect("request builds")
            .build()
            .expect("request is valid");
        req.url()
            .query_pairs()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    #[test]
    fn a_requests_namespace_and_partition_replace_the_clients() {
        let config = || {
            Config::new("127.0.0.1:8500")
                .expect("address parses")
                .namespace("client-ns")
                .partition("client-part")
        };
        let mut own = QueryOptions::default().passing(true);
        own.namespace = Some("request-ns".into());
        own.partition = Some("request-part".into());
        assert_eq!(
            sent(config(), &own, "ns"),
            ["request-ns"],
            "one ns, the request's"
        );
        assert_eq!(
            sent(config(), &own, "partition"),
            ["request-part"],
            "one partition, the request's"
        );
        assert_eq!(
            sent(config(), &own, "passing"),
            ["true"],
            "the request's other pairs are still sent"
        );

        let plain = QueryOptions::default();
        assert_eq!(
            sent(config(), &plain, "ns"),
            ["client-ns"],
            "without its own, a request has the client's ns"
        );
        assert_eq!(
            sent(config(), &plain, "partition"),
            ["client-part"],
            "without its own, a request has the client's partition"
        );

        let only_ns = QueryOptions {
            namespace: Some("request-ns".into()),
            ..QueryOptions::default()
        };
        assert_eq!(
            sent(config(), &only_ns, "partition"),
            ["client-part"],
            "a request's ns leaves the client's partition in place"
        );

        let bare = Config::new("127.0.0.1:8500").expect("address parses");
        assert!(
            sent(bare.clone(), &plain, "ns").is_empty()
                && sent(bare, &plain, "partition").is_empty(),
            "Consul CE refuses ns and partition, so unset means not sent"
        );
    }
}
