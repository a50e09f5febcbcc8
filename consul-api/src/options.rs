//! Read options and read metadata: what a read asks of Consul (`QueryOptions`, sent as
//! query-string pairs and, for the agent cache, a `Cache-Control` header) and what Consul
//! says besides the body (`QueryMeta`, from the `X-Consul-*` headers). Pure data: uses the
//! token type and Go durations, no I/O.

use std::time::Duration;

use crate::config::Token;
use crate::duration;

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
    /// With [`Consistency::Stale`] (or alone, which implies it): the most the answering
    /// server may lag the leader before the leader answers instead (`max_stale`).
    pub max_stale: Option<Duration>,
    /// A token for this request instead of the client's.
    pub token: Option<Token>,
    /// Sort by round-trip time from this node (`_agent` for the local one).
    pub near: Option<String>,
    /// Only nodes with these metadata pairs.
    pub node_meta: Vec<(String, String)>,
    /// Let the agent answer from its cache (`?cached`). Ignored with
    /// [`Consistency::Consistent`], which Consul refuses beside it (as Consul's Go client
    /// does).
    pub cached: bool,
    /// With `cached`: the oldest cached answer acceptable; an older one is fetched anew
    /// (`Cache-Control: max-age`, whole seconds).
    pub max_age: Option<Duration>,
    /// With `cached`: how old a cached answer may be when the servers cannot be reached
    /// (`Cache-Control: stale-if-error`, whole seconds).
    pub stale_if_error: Option<Duration>,
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
        if let Some(max_stale) = self.max_stale {
            q.push(("max_stale", duration::format(max_stale)));
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
        if self.uses_cache() {
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

    /// The `Cache-Control` header these options send: the agent cache's bounds, in whole
    /// seconds as Consul's Go client sends them; only for a cached read.
    pub fn cache_control(&self) -> Option<String> {
        if !self.uses_cache() {
            return None;
        }
        let mut directives = Vec::new();
        if let Some(age) = self.max_age {
            directives.push(format!("max-age={}", age.as_secs_f64().round()));
        }
        if let Some(stale) = self.stale_if_error {
            directives.push(format!("stale-if-error={}", stale.as_secs_f64().round()));
        }
        (!directives.is_empty()).then(|| directives.join(", "))
    }

    fn uses_cache(&self) -> bool {
        self.cached && self.consistency != Consistency::Consistent
    }

    /// Whether this read blocks at the server.
    pub(crate) fn blocks(&self) -> bool {
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
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Self {
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
    fn staleness_and_the_agent_cache_are_sent_as_consul_reads_them() {
        let mut opts = QueryOptions::default().consistency(Consistency::Stale);
        opts.max_stale = Some(Duration::from_secs(5));
        opts.cached = true;
        opts.max_age = Some(Duration::from_secs(30));
        opts.stale_if_error = Some(Duration::from_millis(90_400));
        let pairs = opts.pairs();
        assert!(
            pairs.contains(&("max_stale", "5s".into())),
            "max_stale in Go's duration format: {pairs:?}"
        );
        assert!(pairs.contains(&("cached", String::new())), "{pairs:?}");
        assert_eq!(
            opts.cache_control().as_deref(),
            Some("max-age=30, stale-if-error=90"),
            "the cache's bounds in whole seconds, as Consul's Go client sends them"
        );

        opts.consistency = Consistency::Consistent;
        assert!(
            !opts.pairs().iter().any(|(k, _)| *k == "cached") && opts.cache_control().is_none(),
            "Consul refuses ?cached beside ?consistent, so a consistent read skips the cache"
        );
        assert_eq!(QueryOptions::default().cache_control(), None);
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
}
