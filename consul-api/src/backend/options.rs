//! Consul's own read options for a registry's resolves and watches: the agent cache, `near`
//! and `node-meta`, which no other registry has and so are not in the core `Query`. The
//! registry carries them, so whatever resolves through it (a `DiscoveredChannel` built on
//! it) reads with them. Uses the conversions and the client's read options.

use std::time::Duration;

use discovery_core::Query;

use super::convert::query_options;
use crate::client::QueryOptions;

/// Consul-specific read options, for every service a registry reads or for one
/// ([`ConsulRegistry::query_defaults`](crate::ConsulRegistry::query_defaults),
/// [`ConsulRegistry::service_defaults`](crate::ConsulRegistry::service_defaults)).
///
/// The agent cache (`cached`) answers reads from the local agent's memory, which it keeps
/// current with one blocking query per service to the servers, however many processes on
/// the host ask: the cheapest way to follow many services from many processes. A cached
/// answer may lag the servers by the time of that query's round trip, or by `max_age` /
/// `stale_if_error` where set. Consul refuses the cache beside `Consistency::Consistent`,
/// so a consistent query reads without it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct QueryDefaults {
    /// Read through the agent cache (`?cached`).
    pub cached: bool,
    /// With `cached`: refetch an answer older than this (`Cache-Control: max-age`).
    pub max_age: Option<Duration>,
    /// With `cached`: how old an answer may be served when the servers cannot be reached
    /// (`Cache-Control: stale-if-error`).
    pub stale_if_error: Option<Duration>,
    /// Sort instances by round-trip time from this node (`_agent`: the local one).
    pub near: Option<String>,
    /// Only instances on nodes with these metadata pairs (`node-meta`).
    pub node_meta: Vec<(String, String)>,
}

impl QueryDefaults {
    /// Sets whether reads go through the agent cache.
    #[must_use]
    pub fn cached(mut self, cached: bool) -> Self {
        self.cached = cached;
        self
    }

    /// Sets the oldest cached answer accepted.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Sets how old a cached answer may be while the servers cannot be reached.
    #[must_use]
    pub fn stale_if_error(mut self, stale_if_error: Duration) -> Self {
        self.stale_if_error = Some(stale_if_error);
        self
    }

    /// Sets the node instances are sorted by distance from.
    #[must_use]
    pub fn near(mut self, node: impl Into<String>) -> Self {
        self.near = Some(node.into());
        self
    }

    /// Adds a node metadata pair instances' nodes must carry.
    #[must_use]
    pub fn node_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_meta.push((key.into(), value.into()));
        self
    }
}

/// The read options that ask Consul what `query` asks, with `defaults`.
pub(crate) fn read_options(query: &Query, defaults: &QueryDefaults) -> QueryOptions {
    let mut opts = query_options(query);
    opts.cached = defaults.cached;
    opts.max_age = defaults.max_age;
    opts.stale_if_error = defaults.stale_if_error;
    opts.near = defaults.near.clone();
    opts.node_meta = defaults.node_meta.clone();
    opts
}
