//! How the agent presents itself ([`Config`]: node, datacenter, ACL token, reaper timings,
//! connection limits) and the Consul version it claims. A leaf: uses no other module of the
//! crate.

use std::fmt;
use std::time::Duration;

/// The Consul version this agent claims to be.
pub(crate) const CONSUL_VERSION: &str = "1.21.0";

/// How the agent presents itself, the timings of its reaper and its connection limits.
///
/// Built with [`Config::default`] and the `#[must_use]` setters. Its `Debug` output shows
/// whether an ACL token is set, never the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The local node's name (default: the host name).
    pub node_name: String,
    /// The local node's ID (default: a random UUID).
    pub node_id: String,
    /// The datacenter (default `dc1`).
    pub datacenter: String,
    /// With a token, ACLs are on with default policy deny, and this is the only (management)
    /// token. Without one, ACLs are off.
    pub acl_token: Option<String>,
    /// How often services critical past their `DeregisterCriticalServiceAfter` are reaped
    /// (Consul: 30s). Shorter values are a test-only deviation.
    pub reaper_interval: Duration,
    /// The floor applied to `DeregisterCriticalServiceAfter` (Consul: 1m). Shorter values are
    /// a test-only deviation.
    pub min_deregister_after: Duration,
    /// How many concurrent HTTP connections one client IP may have open (Consul's
    /// `limits.http_max_conns_per_client`, default 200; 0 means no limit, as in Consul).
    /// The connection over the limit gets Consul's raw `429 Too Many Requests` and is closed.
    pub http_max_conns_per_client: usize,
    /// How long a client may take to send a request head once it has sent its first byte
    /// (default 10s; zero: no limit). Consul's plain-HTTP listener has no such timeout; this
    /// one exists so that a client trickling its headers cannot hold a connection forever.
    pub http_header_read_timeout: Duration,
    /// With a certificate and key: serve HTTPS (HTTP/2 and HTTP/1.1) instead of plain HTTP.
    pub(crate) https: Option<HttpsIdentity>,
    /// The CA certificates (PEM) HTTPS and gRPC-over-TLS checks trust instead of the
    /// public roots.
    pub(crate) check_tls_ca: Option<Vec<u8>>,
}

/// The agent's HTTPS certificate chain and private key, as PEM.
#[derive(Clone)]
pub(crate) struct HttpsIdentity {
    pub(crate) cert_chain_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: host_name(),
            node_id: random_uuid(),
            datacenter: "dc1".to_owned(),
            acl_token: None,
            reaper_interval: Duration::from_secs(30),
            min_deregister_after: Duration::from_secs(60),
            http_max_conns_per_client: 200,
            http_header_read_timeout: Duration::from_secs(10),
            https: None,
            check_tls_ca: None,
        }
    }
}

/// By hand so that the management token never reaches a log or a panic message.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            node_name,
            node_id,
            datacenter,
            acl_token,
            reaper_interval,
            min_deregister_after,
            http_max_conns_per_client,
            http_header_read_timeout,
            https,
            check_tls_ca,
        } = self;
        f.debug_struct("Config")
            .field("node_name", node_name)
            .field("node_id", node_id)
            .field("datacenter", datacenter)
            .field("acl_token", &acl_token.as_ref().map(|_| "<redacted>"))
            .field("reaper_interval", reaper_interval)
            .field("min_deregister_after", min_deregister_after)
            .field("http_max_conns_per_client", http_max_conns_per_client)
            .field("http_header_read_timeout", http_header_read_timeout)
            .field("https", &https.as_ref().map(|_| "<certificate and key>"))
            .field(
                "check_tls_ca",
                &check_tls_ca.as_ref().map(|_| "<CA certificates>"),
            )
            .finish()
    }
}

impl Config {
    /// Sets the node name.
    #[must_use]
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = name.into();
        self
    }

    /// Sets the node ID.
    #[must_use]
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// Sets the datacenter.
    #[must_use]
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.datacenter = dc.into();
        self
    }

    /// Turns ACLs on (default deny) with `token` as the management token.
    #[must_use]
    pub fn acl_token(mut self, token: impl Into<String>) -> Self {
        self.acl_token = Some(token.into());
        self
    }

    /// Sets the reaper period.
    #[must_use]
    pub fn reaper_interval(mut self, every: Duration) -> Self {
        self.reaper_interval = every;
        self
    }

    /// Sets the `DeregisterCriticalServiceAfter` floor.
    #[must_use]
    pub fn min_deregister_after(mut self, floor: Duration) -> Self {
        self.min_deregister_after = floor;
        self
    }

    /// Sets how many concurrent connections one client IP may have (0: no limit). Tests
    /// that open more than Consul's default of 200 raise it, and say why.
    #[must_use]
    pub fn http_max_conns_per_client(mut self, n: usize) -> Self {
        self.http_max_conns_per_client = n;
        self
    }

    /// Serves HTTPS instead of plain HTTP on the agent's address, as a Consul agent with
    /// `ports.https` does: TLS with `cert_chain_pem` (PEM certificates, the agent's first)
    /// and `key_pem` (its PEM private key), ALPN offering HTTP/2 and HTTP/1.1. An unusable
    /// certificate or key fails [`DevAgent::start_with`](crate::DevAgent::start_with).
    #[must_use]
    pub fn https(mut self, cert_chain_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.https = Some(HttpsIdentity {
            cert_chain_pem,
            key_pem,
        });
        self
    }

    /// Has HTTPS checks and gRPC checks with `GRPCUseTLS` trust the CA certificates in
    /// `ca_pem` (PEM, one or more) instead of the public roots, as a Consul agent with
    /// `enable_agent_tls_for_checks` and a CA file (`tls.defaults.ca_file`) does. Without
    /// it they verify against the public roots (Mozilla's; Consul reads the system's), and
    /// a check with `TLSSkipVerify` verifies nothing. A PEM without a usable certificate
    /// fails [`DevAgent::start_with`](crate::DevAgent::start_with).
    #[must_use]
    pub fn check_tls_ca(mut self, ca_pem: Vec<u8>) -> Self {
        self.check_tls_ca = Some(ca_pem);
        self
    }

    /// Sets the header-read timeout (zero: none).
    #[must_use]
    pub fn http_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.http_header_read_timeout = timeout;
        self
    }
}

/// The machine's host name, or `consul-dev` if it cannot be read.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "consul-dev".to_owned())
}

/// A random version-4 UUID string.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    fastrand::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_redacts_the_acl_token() {
        let config = Config::default().node_name("n1").acl_token("s3cr3t-token");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cr3t-token"),
            "the token must not appear in Debug output: {debug}"
        );
        assert!(
            debug.contains("acl_token: Some(\"<redacted>\")") && debug.contains("\"n1\""),
            "Debug output still shows the other fields and that a token is set: {debug}"
        );
        let with_key = format!(
            "{:?}",
            Config::default().https(b"CERT".to_vec(), b"PRIVATE-KEY".to_vec())
        );
        assert!(
            !with_key.contains("PRIVATE-KEY") && with_key.contains("<certificate and key>"),
            "the HTTPS key must not appear in Debug output: {with_key}"
        );
        let without = format!("{:?}", Config::default());
        assert!(
            without.contains("acl_token: None"),
            "no token shows as None: {without}"
        );
    }
}
