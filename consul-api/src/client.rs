//! The HTTP plumbing every endpoint family shares: request building (credentials, scoping,
//! query options), sending through the transport with `429` retried, error mapping, path
//! escaping and decoding. Uses the configuration, the options, the transport and the error
//! type. Each family adds its accessor (`client.agent()`…) in its own file.

use std::sync::Arc;
use std::time::Duration;

use discovery_core::Backoff;
use http::StatusCode;
use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::config::{Config, Token};
use crate::error::Error;
// The families take the options from here, beside the client they go with.
pub(crate) use crate::options::{QueryMeta, QueryOptions};
use crate::transport::{self, Answer, ClientStats, Exchange, Leases, Route, Transport};

/// How `429 Too Many Requests` is retried: Consul refuses a connection over its limit, or a
/// request over its rate, before doing anything, so the same request may go again; after
/// [`THROTTLE_RETRIES`] the caller gets the error (a watch backs off and tries again).
const THROTTLE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
const THROTTLE_RETRIES: u32 = 4;

/// A Consul HTTP API client. Cheap to clone: clones share the connections, the budget and
/// the watches; so do clients built from equal settings in one process ([`Config::shared`]).
#[derive(Debug, Clone)]
pub struct Client {
    transport: Arc<Transport>,
    route: Route,
}

// === impl Client ===

impl Client {
    /// A client with `config`: the process's live transport for equal settings, else a new
    /// one (see [`Config::shared`]).
    pub fn new(config: Config) -> Result<Self, Error> {
        Ok(Client {
            transport: transport::shared(config)?,
            route: Route::Auto,
        })
    }

    /// A client configured from the process environment ([`Config::from_env`]).
    pub fn from_env() -> Result<Self, Error> {
        Self::new(Config::from_env()?)
    }

    /// A client whose requests `exchange` answers in process instead of the network, with
    /// `config`'s budget and settings; never shared with other clients. For tests and
    /// models of the agent.
    pub fn with_exchange(config: Config, exchange: impl Exchange) -> Result<Self, Error> {
        Ok(Client {
            transport: Arc::new(Transport::with_exchange(config, Arc::new(exchange))?),
            route: Route::Auto,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        self.transport.config()
    }

    /// What the transport this client shares has done so far.
    pub fn stats(&self) -> ClientStats {
        self.transport.stats()
    }

    /// Whether `other` shares this client's transport (connections, budget and watches).
    pub fn shares_transport_with(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.transport, &other.transport)
    }

    /// This client with its requests sent along `route`.
    pub(crate) fn routed(&self, route: Route) -> Client {
        Client {
            transport: self.transport.clone(),
            route,
        }
    }

    /// A number standing for the transport, equal for clients that share it.
    pub(crate) fn transport_id(&self) -> usize {
        Arc::as_ptr(&self.transport) as usize
    }

    /// The blocking slots of the budget.
    pub(crate) async fn leases(&self) -> Result<Arc<Leases>, Error> {
        self.transport.leases().await
    }

    /// Waits for the next poll turn of this transport's watches.
    pub(crate) async fn poll_turn(&self) -> Result<(), Error> {
        self.transport.poll_turn().await
    }

    fn url(&self, path: &str) -> Result<Url, Error> {
        self.transport
            .base()
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
        let config = self.config();
        let mut req = self.transport.request(method, self.url(path)?);
        let token = opts.and_then(|o| o.token.as_ref());
        if let Some(token) = token.or(config.token.as_ref()) {
            req = req.header("X-Consul-Token", token.expose());
        }
        if let Some(auth) = &config.basic_auth {
            req = req.basic_auth(&auth.username, auth.password.as_ref().map(Token::expose));
        }
        // Enterprise scoping; Consul CE refuses the parameters, so only when configured. A
        // request's own namespace or partition (sent with its other pairs) replaces the
        // client's, as `params.Set` does in Consul's Go client: each is sent at most once.
        let own_namespace = opts.is_some_and(|o| o.namespace.is_some());
        if let Some(ns) = config.namespace.as_ref().filter(|_| !own_namespace) {
            req = req.query(&[("ns", ns)]);
        }
        let own_partition = opts.is_some_and(|o| o.partition.is_some());
        if let Some(partition) = config.partition.as_ref().filter(|_| !own_partition) {
            req = req.query(&[("partition", partition)]);
        }
        if let Some(opts) = opts {
            req = req.query(&opts.pairs());
            if let Some(cache_control) = opts.cache_control() {
                req = req.header(http::header::CACHE_CONTROL, cache_control);
            }
        }
        Ok(req)
    }

    /// A read: `GET path` with `opts`, decoded, with its metadata.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        opts: &QueryOptions,
    ) -> Result<(T, QueryMeta), Error> {
        let deadline = if opts.blocks() {
            // The server may hold the request for wait plus up to wait/16 of jitter; give it
            // that and the ordinary deadline on top, so a slow answer is not cut short.
            let wait = opts.wait.unwrap_or(Duration::from_secs(300));
            wait + wait / 16 + self.config().request_timeout
        } else {
            self.config().request_timeout
        };
        let req = self.request(Method::GET, path, Some(opts))?;
        let answer = self.send(req, deadline, opts.blocks()).await?;
        let meta = QueryMeta::from_headers(&answer.headers);
        Ok((decode(&answer.body)?, meta))
    }

    /// A read whose non-200 statuses are answers too (the agent's health endpoints answer
    /// 429 and 503 with a body): the status, metadata and body, unchecked, never retried.
    pub(crate) async fn get_any_status(
        &self,
        path: &str,
        opts: &QueryOptions,
    ) -> Result<(StatusCode, QueryMeta, Vec<u8>), Error> {
        let req = build(self.request(Method::GET, path, Some(opts))?)?;
        let answer = self
            .transport
            .call(&self.route, req, self.config().request_timeout, false)
            .await?;
        let meta = QueryMeta::from_headers(&answer.headers);
        Ok((answer.status, meta, answer.body.to_vec()))
    }

    /// A write: `PUT path` with an optional JSON body and query pairs; the answer body is
    /// returned as text (usually empty).
    pub(crate) async fn put<B: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<String, Error> {
        let mut req = self.request(Method::PUT, path, None)?.query(query);
        if let Some(body) = body {
            let json = serde_json::to_vec(body).map_err(|source| Error::Decode {
                path: "request body".into(),
                source,
            })?;
            req = req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        let answer = self.send(req, self.config().request_timeout, false).await?;
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    /// Sends along the client's route; a `429` is retried with backoff a few times; any
    /// other status but 200 is an error.
    async fn send(
        &self,
        req: RequestBuilder,
        deadline: Duration,
        blocks: bool,
    ) -> Result<Answer, Error> {
        let req = build(req)?;
        let mut attempt = 0;
        loop {
            let this = req
                .try_clone()
                .ok_or_else(|| Error::config("request", "a body that cannot be sent twice"))?;
            let answer = self
                .transport
                .call(&self.route, this, deadline, blocks)
                .await?;
            if answer.status == StatusCode::OK {
                return Ok(answer);
            }
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                self.transport.count_throttled();
                if attempt < THROTTLE_RETRIES {
                    tracing::debug!(path = %req.url().path(), attempt, "consul answered 429; retrying after backoff");
                    tokio::time::sleep(THROTTLE_BACKOFF.delay(attempt)).await;
                    attempt += 1;
                    continue;
                }
            }
            return Err(status_error(answer.status, &answer.body));
        }
    }
}

fn build(req: RequestBuilder) -> Result<reqwest::Request, Error> {
    req.build()
        .map_err(|e| Error::config("request", crate::error::causes(&e)))
}

/// The error for an answer with status `status` and body `body` (Consul's plain-text
/// complaint).
pub(crate) fn status_error(status: StatusCode, body: &[u8]) -> Error {
    Error::Status {
        status,
        message: String::from_utf8_lossy(body).trim().to_owned(),
    }
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
    fn escape_keeps_ids_in_one_segment() {
        assert_eq!(escape("web 1/x"), "web%201%2Fx");
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
