//! Where the agent is and how to talk to it, read as Consul's own CLI reads it: the
//! address, credentials and timeouts, and the HTTP client they describe. Uses `tls` for the
//! certificate settings.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::error::Error;
use crate::tls::{TlsConfig, TlsMaterial};

/// A secret (an ACL token, a password). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Token(secret.into())
    }

    /// The secret, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// HTTP basic authentication (`CONSUL_HTTP_AUTH=user[:password]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password, if any.
    pub password: Option<Token>,
}

/// Client settings. Build with [`Config::from_env`], [`Config::from_lookup`] or
/// [`Config::new`] and the setters.
///
/// Equal settings mean one agent reached the same way by the same identity: clients built
/// from equal settings in one process share their connections (see [`Config::shared`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Config {
    /// Base URL of the agent's HTTP API, such as `http://127.0.0.1:8500`. For a unix
    /// socket address this is `http://localhost` and [`Config::unix_socket`] is set.
    pub address: Url,
    /// The agent's unix socket (`unix:///path` addresses).
    pub unix_socket: Option<PathBuf>,
    /// ACL token sent as `X-Consul-Token` with every request.
    pub token: Option<Token>,
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Enterprise namespace sent with every request (`CONSUL_NAMESPACE`).
    pub namespace: Option<String>,
    /// Enterprise admin partition sent with every request (`CONSUL_PARTITION`).
    pub partition: Option<String>,
    /// Deadline of a request that does not block.
    pub request_timeout: Duration,
    /// Deadline of establishing a connection.
    pub connect_timeout: Duration,
    /// The connection budget: the most connections this client, its clones and everything
    /// built on them (registries, watches, channels) hold open to the agent at once. Consul
    /// allows 200 per client IP address (`limits.http_max_conns_per_client`), shared by every
    /// process on the host; the default, 16, leaves room for 12 such processes. See the
    /// crate's README for how the budget is spent.
    pub max_connections: usize,
    /// The least time between two polls of the watches that hold no blocking connection,
    /// across all of them: at most one poll per `poll_spacing` reaches the agent.
    pub poll_spacing: Duration,
    /// Whether clients built with equal settings in this process share one set of
    /// connections, one budget and one watch per query (the default). Turn off only to model
    /// separate processes, as tests and benchmarks do.
    pub shared: bool,
}

/// The default connection budget (see [`Config::max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// The agent address Consul's tools use when none is configured.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8500";

// === impl Config ===

impl Default for Config {
    fn default() -> Self {
        Config::new(DEFAULT_ADDRESS).expect("the default address parses")
    }
}

impl Config {
    /// Settings for the agent at `address`: `host:port`, `http://host:port`,
    /// `https://host:port` or `unix:///path/to/socket`.
    pub fn new(address: &str) -> Result<Self, Error> {
        let (address, unix_socket) = parse_address(address, "address")?;
        Ok(Config {
            address,
            unix_socket,
            token: None,
            basic_auth: None,
            tls: TlsConfig::default(),
            namespace: None,
            partition: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            poll_spacing: Duration::from_millis(100),
            shared: true,
        })
    }

    /// Settings from the process environment: `CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`,
    /// `CONSUL_HTTP_TOKEN_FILE`, `CONSUL_HTTP_AUTH`, `CONSUL_HTTP_SSL`,
    /// `CONSUL_HTTP_SSL_VERIFY`, `CONSUL_CACERT`, `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`,
    /// `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`, `CONSUL_NAMESPACE`,
    /// `CONSUL_PARTITION`.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from a lookup function standing for the environment, so tests never touch
    /// the process environment. Unset and empty variables mean the default. A bad value is
    /// an error naming its variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let mut config = match get("CONSUL_HTTP_ADDR") {
            Some(addr) => {
                let (address, unix_socket) = parse_address(&addr, "CONSUL_HTTP_ADDR")?;
                Config {
                    address,
                    unix_socket,
                    ..Config::default()
                }
            }
            None => Config::default(),
        };
        if let Some(ssl) = get("CONSUL_HTTP_SSL")
            && parse_bool(&ssl, "CONSUL_HTTP_SSL")?
        {
            config
                .address
                .set_scheme("https")
                .map_err(|()| Error::config("CONSUL_HTTP_SSL", "cannot switch to https"))?;
        }
        // The file wins over the variable, as in Consul's CLI.
        if let Some(path) = get("CONSUL_HTTP_TOKEN_FILE") {
            let secret = std::fs::read_to_string(&path).map_err(|e| {
                Error::config(
                    "CONSUL_HTTP_TOKEN_FILE",
                    format!("cannot read {path:?}: {e}"),
                )
            })?;
            config.token = Some(Token::new(secret.trim()));
        } else if let Some(secret) = get("CONSUL_HTTP_TOKEN") {
            config.token = Some(Token::new(secret));
        }
        if let Some(auth) = get("CONSUL_HTTP_AUTH") {
            let (username, password) = match auth.split_once(':') {
                Some((user, pass)) => (user.to_owned(), Some(Token::new(pass))),
                None => (auth.clone(), None),
            };
            if username.is_empty() {
                return Err(Error::config("CONSUL_HTTP_AUTH", "empty user name"));
            }
            config.basic_auth = Some(BasicAuth { username, password });
        }
        if let Some(verify) = get("CONSUL_HTTP_SSL_VERIFY") {
            config.tls.insecure_skip_verify = !parse_bool(&verify, "CONSUL_HTTP_SSL_VERIFY")?;
        }
        config.tls.ca_cert = get("CONSUL_CACERT").map(PathBuf::from);
        config.tls.ca_path = get("CONSUL_CAPATH").map(PathBuf::from);
        config.tls.client_cert = get("CONSUL_CLIENT_CERT").map(PathBuf::from);
        config.tls.client_key = get("CONSUL_CLIENT_KEY").map(PathBuf::from);
        if config.tls.client_cert.is_some() != config.tls.client_key.is_some() {
            let missing = if config.tls.client_cert.is_some() {
                "CONSUL_CLIENT_KEY"
            } else {
                "CONSUL_CLIENT_CERT"
            };
            return Err(Error::config(
                missing,
                "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY go together",
            ));
        }
        config.tls.server_name = get("CONSUL_TLS_SERVER_NAME");
        config.namespace = get("CONSUL_NAMESPACE");
        config.partition = get("CONSUL_PARTITION");
        Ok(config)
    }

    /// Sets the ACL token.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token::new(token));
        self
    }

    /// Sets the deadline of non-blocking requests.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the connect deadline.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the TLS settings.
    #[must_use]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// Sets basic authentication.
    #[must_use]
    pub fn basic_auth(mut self, username: impl Into<String>, password: Option<&str>) -> Self {
        self.basic_auth = Some(BasicAuth {
            username: username.into(),
            password: password.map(Token::new),
        });
        self
    }

    /// Sets the enterprise namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the enterprise partition.
    #[must_use]
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// Sets the connection budget (at least 1).
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Sets the least time between two polls of watches outside the blocking set.
    #[must_use]
    pub fn poll_spacing(mut self, spacing: Duration) -> Self {
        self.poll_spacing = spacing;
        self
    }

    /// Sets whether clients with equal settings in this process share their connections.
    #[must_use]
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// An HTTP client builder with these settings' address, timeouts and TLS `material`;
    /// the transport adds what differs per connection (pooling, protocol).
    pub(crate) fn http_builder(
        &self,
        material: &TlsMaterial,
    ) -> Result<reqwest::ClientBuilder, Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(path) = &self.unix_socket {
            builder = builder.unix_socket(path.clone());
        }
        builder = material.apply(builder);
        if let Some(name) = &self.tls.server_name {
            // Verify the certificate against `name` and send it as SNI: dial the URL by that
            // name, and pin the name to the configured host's addresses.
            let host = self.address.host_str().unwrap_or_default().to_owned();
            let port = self.address.port_or_known_default().unwrap_or(8501);
            let addrs: Vec<std::net::SocketAddr> =
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .map_err(|e| {
                        Error::config("CONSUL_TLS_SERVER_NAME", format!("resolve {host}: {e}"))
                    })?
                    .collect();
            builder = builder.resolve_to_addrs(name, &addrs);
        }
        Ok(builder)
    }

    /// The base URL requests go to: the address, with its host replaced by the TLS server
    /// name when one is set (see [`Config::http_client`]).
    pub(crate) fn base_url(&self) -> Result<Url, Error> {
        let mut url = self.address.clone();
        if let Some(name) = &self.tls.server_name {
            url.set_host(Some(name))
                .map_err(|e| Error::config("CONSUL_TLS_SERVER_NAME", e.to_string()))?;
        }
        Ok(url)
    }
}

fn parse_address(raw: &str, var: &'static str) -> Result<(Url, Option<PathBuf>), Error> {
    if let Some(path) = raw.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(Error::config(var, "unix address without a path"));
        }
        let url = Url::parse("http://localhost").expect("a constant URL parses");
        return Ok((url, Some(PathBuf::from(path))));
    }
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| Error::config(var, format!("invalid address {raw:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(Error::config(
                var,
                format!("unknown protocol scheme: {other}"),
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(var, format!("no host in {raw:?}")));
    }
    Ok((url, None))
}

fn parse_bool(raw: &str, var: &'static str) -> Result<bool, Error> {
    // Go's strconv.ParseBool, which Consul's CLI uses.
    match raw {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(Error::config(var, format!("invalid boolean {raw:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_to_local_agent() {
        let config = from(&[]).unwrap();
        assert_eq!(config.address.as_str(), "http://127.0.0.1:8500/");
        assert!(config.token.is_none() && config.unix_socket.is_none());
    }

    #[test]
    fn reads_address_forms() {
        let c = from(&[("CONSUL_HTTP_ADDR", "10.1.2.3:8500")]).unwrap();
        assert_eq!(c.address.as_str(), "http://10.1.2.3:8500/");
        let c = from(&[("CONSUL_HTTP_ADDR", "https://consul.example:8501")]).unwrap();
        assert_eq!(c.address.as_str(), "https://consul.example:8501/");
        let c = from(&[
            ("CONSUL_HTTP_ADDR", "127.0.0.1:8500"),
            ("CONSUL_HTTP_SSL", "true"),
        ])
        .unwrap();
        assert_eq!(c.address.scheme(), "https");
        let c = from(&[("CONSUL_HTTP_ADDR", "unix:///run/consul.sock")]).unwrap();
        assert_eq!(c.unix_socket, Some(PathBuf::from("/run/consul.sock")));
    }

    #[test]
    fn reads_the_rest_of_the_variables() {
        let c = from(&[
            ("CONSUL_HTTP_AUTH", "alice:s3cret"),
            ("CONSUL_HTTP_SSL_VERIFY", "false"),
            ("CONSUL_CACERT", "/etc/ca.pem"),
            ("CONSUL_CAPATH", "/etc/cas"),
            ("CONSUL_CLIENT_CERT", "/etc/c.pem"),
            ("CONSUL_CLIENT_KEY", "/etc/k.pem"),
            ("CONSUL_TLS_SERVER_NAME", "consul.internal"),
            ("CONSUL_NAMESPACE", "team-a"),
            ("CONSUL_PARTITION", "p1"),
        ])
        .unwrap();
        let auth = c.basic_auth.as_ref().unwrap();
        assert_eq!(auth.username, "alice");
        assert_eq!(auth.password.as_ref().map(Token::expose), Some("s3cret"));
        assert!(c.tls.insecure_skip_verify);
        assert_eq!(c.tls.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(c.tls.ca_path, Some(PathBuf::from("/etc/cas")));
        assert_eq!(c.tls.server_name.as_deref(), Some("consul.internal"));
        assert_eq!(c.namespace.as_deref(), Some("team-a"));
        assert_eq!(c.partition.as_deref(), Some("p1"));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug leaks the password"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for vars in [
            vec![("CONSUL_HTTP_ADDR", "ftp://x:1")],
            vec![("CONSUL_HTTP_ADDR", "unix://")],
            vec![("CONSUL_HTTP_SSL", "maybe")],
            vec![("CONSUL_HTTP_SSL_VERIFY", "nope")],
            vec![("CONSUL_HTTP_TOKEN_FILE", "/nonexistent/token")],
            vec![("CONSUL_HTTP_AUTH", ":pw")],
            vec![("CONSUL_CLIENT_KEY", "/k.pem")],
        ] {
            let err = from(&vars).expect_err("bad value must fail");
            let named = vars[0].0;
            let text = err.to_string();
            assert!(
                text.contains(named)
                    || (named == "CONSUL_CLIENT_KEY" && text.contains("CONSUL_CLIENT_CERT")),
                "error {text} should name {named}"
            );
        }
    }

    #[test]
    fn unreadable_tls_files_are_config_errors_at_client_build() {
        let c = from(&[("CONSUL_CACERT", "/nonexistent/ca.pem")]).unwrap();
        let err = TlsMaterial::load(&c.tls).unwrap_err();
        assert!(err.to_string().contains("CONSUL_CACERT"), "{err}");
    }

    #[test]
    fn token_file_wins_and_token_is_never_printed() {
        let path = std::env::temp_dir().join(format!("consul-api-token-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let c = from(&[
            ("CONSUL_HTTP_TOKEN", "from-env"),
            ("CONSUL_HTTP_TOKEN_FILE", path.to_str().unwrap()),
        ])
        .unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(c.token.as_ref().map(Token::expose), Some("from-file"));
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("from-file"),
            "Debug output leaks the token: {printed}"
        );
    }
}
