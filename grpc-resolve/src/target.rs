//! `consul://` targets: a service and its query written as one string.
//!
//! Configuration files and command lines carry one string per upstream; this module turns
//! `consul://127.0.0.1:8500/adder?tag=v1&dc=dc1` into the registry address and the
//! [`Query`] to watch. Parsing does no I/O: building a resolver for the address is the job
//! of the crate that talks to Consul.
//!
//! May use: `error`.
//!
//! # Examples
//!
//! ```
//! use grpc_resolve::Target;
//!
//! let target = Target::parse("consul://127.0.0.1:8500/adder?tag=v1&dc=dc1")?;
//! assert_eq!(target.address.as_deref(), Some("127.0.0.1:8500"));
//! assert_eq!(target.query.service, "adder");
//! assert_eq!(target.query.tags, ["v1"]);
//! assert_eq!(target.query.datacenter.as_deref(), Some("dc1"));
//! # Ok::<(), grpc_resolve::Error>(())
//! ```

use discovery_core::Query;

use crate::error::Error;

/// A parsed `consul://[host[:port]]/service[?options]` target.
///
/// Options: `tag` (repeatable, all must match), `dc`, `passing` (`true`, the default, or
/// `false`) and `filter` (a Consul filter expression, percent-encoded). Unknown options are
/// errors, so that a misspelt `tga=v1` does not silently widen the query.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Target {
    /// The registry's `host:port`, or `None` for `consul:///service` (use the default or the
    /// environment).
    pub address: Option<String>,
    /// What to watch.
    pub query: Query,
}

// === impl Target ===

impl Target {
    /// The URL scheme of a target.
    pub const SCHEME: &'static str = "consul";

    /// Parses a target string.
    pub fn parse(target: &str) -> Result<Target, Error> {
        let invalid = |reason: &str| Error::InvalidTarget {
            target: target.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(target).map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != Self::SCHEME {
            return Err(invalid("the scheme must be consul://"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials do not belong in a target"));
        }
        if url.fragment().is_some() {
            return Err(invalid("a target has no fragment"));
        }
        let address = match url.host_str() {
            None | Some("") => None,
            Some(host) => Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            }),
        };
        let service = url.path().trim_start_matches('/');
        if service.is_empty() {
            return Err(invalid("the path must name a service"));
        }
        if service.contains('/') {
            return Err(invalid("the path must be a single service name"));
        }
        let service = percent_decode(service).ok_or_else(|| invalid("bad percent-encoding"))?;
        let mut query = Query::new(service);
        for (key, value) in url.query_pairs() {
            match &*key {
                "tag" => query = query.tag(value.into_owned()),
                "dc" => query = query.datacenter(value.into_owned()),
                "filter" => query = query.filter(value.into_owned()),
                "passing" => {
                    let yes = match &*value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(invalid("passing must be true or false")),
                    };
                    query = query.passing_only(yes);
                }
                other => return Err(invalid(&format!("unknown option {other:?}"))),
            }
        }
        Ok(Target { address, query })
    }
}

impl std::str::FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

/// Decodes `%XX` escapes in a path segment; `url` leaves paths encoded.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_target() {
        let t = Target::parse(
            "consul://consul.local:8500/adder?tag=v1&tag=blue&dc=dc2&passing=false&filter=Service.Meta.x%20%3D%3D%20%221%22",
        )
        .expect("a valid target");
        assert_eq!(t.address.as_deref(), Some("consul.local:8500"), "address");
        assert_eq!(t.query.service, "adder", "service");
        assert_eq!(t.query.tags, ["v1", "blue"], "tags in order");
        assert_eq!(t.query.datacenter.as_deref(), Some("dc2"), "datacenter");
        assert!(
            !t.query.passing_only,
            "passing=false turns passing_only off"
        );
        assert_eq!(
            t.query.filter.as_deref(),
            Some("Service.Meta.x == \"1\""),
            "filter is percent-decoded"
        );
    }

    #[test]
    fn defaults() {
        let t = Target::parse("consul:///adder").expect("a valid target");
        assert_eq!(t.address, None, "no authority means the default address");
        assert_eq!(t.query, Query::new("adder"), "a plain query");
        let t = Target::parse("consul://localhost/adder").expect("a valid target");
        assert_eq!(t.address.as_deref(), Some("localhost"), "host without port");
        let t: Target = "consul://[::1]:8500/my%2Dsvc"
            .parse()
            .expect("a valid target");
        assert_eq!(
            t.address.as_deref(),
            Some("[::1]:8500"),
            "IPv6 stays bracketed"
        );
        assert_eq!(t.query.service, "my-svc", "the service is percent-decoded");
    }

    #[test]
    fn rejects() {
        for bad in [
            "http://127.0.0.1:8500/adder",
            "consul://127.0.0.1:8500/",
            "consul://127.0.0.1:8500/a/b",
            "consul://127.0.0.1:8500/adder?tga=v1",
            "consul://127.0.0.1:8500/adder?passing=maybe",
            "consul://user:pw@127.0.0.1:8500/adder",
            "consul://127.0.0.1:8500/adder#x",
            "not a url",
        ] {
            let err = Target::parse(bad).expect_err(bad);
            assert!(
                matches!(err, Error::InvalidTarget { .. }),
                "expected InvalidTarget for {bad}, got {err:?}"
            );
        }
    }
}
