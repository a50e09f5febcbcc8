//! Where the agent is and how to talk to it, read as Consul's own CLI reads it.

use std::fmt;
use std::time::Duration;

use url::Url;

use crate::Error;

/// An ACL token. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
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

/// Client settings. Build with [`Config::from_env`], [`Config::from_lookup`] or
/// [`Config::new`] and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Base URL of the agent's HTTP API, such as `http://127.0.0.1:8500`.
    pub address: Url,
    /// ACL token sent as `X-Consul-Token` with every request.
    pub token: Option<Token>,
    /// Deadline of a request that does not block.
    pub request_timeout: Duration,
    /// Deadline of establishing a connection.
    pub connect_timeout: Duration,
}

/// The agent address Consul's tools use when none is configured.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8500";

// === impl Config ===

impl Default for Config {
    fn default() -> Self {
        Config::new(DEFAULT_ADDRESS).expect("the default address parses")
    }
}

impl Config {
    /// Settings for the agent at `address` (`host:port`, `http://host:port` or
    /// `https://host:port`).
    pub fn new(address: &str) -> Result<Self, Error> {
        Ok(Config {
            address: parse_address(address, "address")?,
            token: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        })
    }

    /// Settings from the process environment (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`,
    /// `CONSUL_HTTP_TOKEN_FILE`, `CONSUL_HTTP_SSL`).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from a lookup function standing for the environment, so tests never touch
    /// the process environment. Unset and empty variables mean the default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let mut config = match get("CONSUL_HTTP_ADDR") {
            Some(addr) => Config {
                address: parse_address(&addr, "CONSUL_HTTP_ADDR")?,
                ..Config::default()
            },
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
        Ok(config)
    }

    /// Sets the ACL token.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token::new(token));
        self
    }

    /// Sets the deadline of non-blocking requests.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

fn parse_address(raw: &str, var: &'static str) -> Result<Url, Error> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| Error::config(var, format!("invalid address {raw:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => {}
        "unix" => {
            return Err(Error::config(
                var,
                "unix socket addresses are not supported yet",
            ));
        }
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
    Ok(url)
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
        assert!(config.token.is_none());
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
    }

    #[test]
    fn bad_values_name_the_variable() {
        for vars in [
            vec![("CONSUL_HTTP_ADDR", "ftp://x:1")],
            vec![("CONSUL_HTTP_SSL", "maybe")],
            vec![("CONSUL_HTTP_TOKEN_FILE", "/nonexistent/token")],
        ] {
            let var = vars[0].0;
            let err = from(&vars).expect_err("bad value must fail");
            assert!(
                err.to_string().contains(var),
                "error {err} should name {var}"
            );
        }
    }

    #[test]
    fn token_file_wins_and_token_is_never_printed() {
        let dir = std::env::temp_dir().join(format!("consul-api-token-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let c = from(&[
            ("CONSUL_HTTP_TOKEN", "from-env"),
            ("CONSUL_HTTP_TOKEN_FILE", dir.to_str().unwrap()),
        ])
        .unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!(c.token.as_ref().map(Token::expose), Some("from-file"));
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("from-file"),
            "Debug output leaks the token: {printed}"
        );
    }
}
