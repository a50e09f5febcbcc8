//! A minimal ACL system: off by default; with an agent token configured, default-deny
//! with that token as the only (management) token. Uses `config`, `query` and `error`.

use http::HeaderMap;

use crate::config::Config;
use crate::error::HttpError;
use crate::query::Query;

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authz {
    /// ACLs are disabled: everything is allowed.
    Off,
    /// The management token: everything is allowed.
    Management,
    /// No token: default deny.
    Anonymous,
}

impl Authz {
    /// Whether reads are allowed (list endpoints filter instead of failing).
    pub(crate) fn can_read(self) -> bool {
        !matches!(self, Authz::Anonymous)
    }

    /// `Ok` if writes are allowed, else Consul's `Permission denied` 403.
    pub(crate) fn require(self, permission: &str, resource: &str) -> Result<(), HttpError> {
        match self {
            Authz::Off | Authz::Management => Ok(()),
            Authz::Anonymous => Err(HttpError::forbidden(format!(
                "Permission denied: anonymous token lacks permission '{permission}' on \
                 \"{resource}\". The anonymous token is used implicitly when a request does not \
                 specify a token."
            ))),
        }
    }

    /// Like [`Authz::require`] for permissions without a resource (`agent:read` etc.).
    pub(crate) fn require_plain(self, permission: &str) -> Result<(), HttpError> {
        match self {
            Authz::Off | Authz::Management => Ok(()),
            Authz::Anonymous => Err(HttpError::forbidden(format!(
                "Permission denied: anonymous token lacks permission '{permission}'. The \
                 anonymous token is used implicitly when a request does not specify a token."
            ))),
        }
    }
}

/// The token of a request: `?token=`, then `X-Consul-Token`, then `Authorization: Bearer`.
pub(crate) fn token_from(q: &Query, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = q.get("token").filter(|t| !t.is_empty()) {
        return Some(t.to_owned());
    }
    if let Some(t) = headers
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_owned());
    }
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        })
        .filter(|t| !t.is_empty())
}

/// Resolves a token against the configuration.
pub(crate) fn resolve(config: &Config, token: Option<&str>) -> Result<Authz, HttpError> {
    let Some(master) = config.acl_token.as_deref() else {
        return Ok(Authz::Off);
    };
    match token {
        None | Some("anonymous") => Ok(Authz::Anonymous),
        Some(t) if t == master => Ok(Authz::Management),
        Some(_) => Err(HttpError::forbidden("ACL not found")),
    }
}

/// The value of `X-Consul-Default-ACL-Policy`.
pub(crate) fn default_policy(config: &Config) -> &'static str {
    if config.acl_token.is_some() {
        "deny"
    } else {
        "allow"
    }
}
