//! The data model: what a server registers and what a resolver yields. Uses nothing else of
//! this crate.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The health of one instance as the registry sees it.
///
/// Ordered from best to worst, so the aggregate of several checks is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum HealthStatus {
    /// Every check passes: the instance takes its full share of traffic.
    #[default]
    Passing,
    /// Degraded but serving: takes traffic in proportion to [`Weights::warning`].
    Warning,
    /// Failing: takes no traffic.
    Critical,
}

impl HealthStatus {
    /// The lowercase word registries use on the wire (`passing`, `warning`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`HealthStatus`] from a word other than the three known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown health status {0:?}: expected passing, warning or critical")]
pub struct ParseHealthStatusError(String);

impl FromStr for HealthStatus {
    type Err = ParseHealthStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "passing" => Ok(HealthStatus::Passing),
            "warning" => Ok(HealthStatus::Warning),
            "critical" => Ok(HealthStatus::Critical),
            other => Err(ParseHealthStatusError(other.to_owned())),
        }
    }
}

/// Relative traffic weights by health, as in Consul's `Weights`.
///
/// A passing instance gets `passing` shares, a warning one `warning` shares, a critical one
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weights {
    /// Shares while passing; at least 1.
    pub passing: u32,
    /// Shares while warning; 0 takes warning instances out of rotation.
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

impl Weights {
    /// The weight that applies at `status`.
    pub fn at(self, status: HealthStatus) -> u32 {
        match status {
            HealthStatus::Passing => self.passing,
            HealthStatus::Warning => self.warning,
            HealthStatus::Critical => 0,
        }
    }
}

/// One instance of a service: what a resolver yields and what a server registers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceInstance {
    /// Unique among all instances in the registry.
    pub id: String,
    /// The service name that callers resolve.
    pub service: String,
    /// Host name or IP address to dial.
    pub host: String,
    /// Port to dial.
    pub port: u16,
    /// Free-form labels callers may filter on (`v2`, `canary`).
    pub tags: Vec<String>,
    /// Free-form key/value metadata.
    pub meta: BTreeMap<String, String>,
    /// Traffic weights by health.
    pub weights: Weights,
    /// Aggregated health of the instance's checks.
    pub status: HealthStatus,
    /// The node (machine) the instance runs on, where the registry knows it.
    pub node: Option<String>,
    /// The instance's locality (zone or region), for locality-aware balancing.
    pub locality: Option<String>,
}

impl ServiceInstance {
    /// An instance with no tags or metadata, default weights, passing.
    pub fn new(
        id: impl Into<String>,
        service: impl Into<String>,
        host: impl Into<String>,
        port: u16,
    ) -> Self {
        ServiceInstance {
            id: id.into(),
            service: service.into(),
            host: host.into(),
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: Weights::default(),
            status: HealthStatus::Passing,
            node: None,
            locality: None,
        }
    }

    /// Adds one tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Replaces the tags.
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one metadata pair.
    #[must_use]
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Replaces the weights.
    #[must_use]
    pub fn weights(mut self, weights: Weights) -> Self {
        self.weights = weights;
        self
    }

    /// Replaces the health status.
    #[must_use]
    pub fn status(mut self, status: HealthStatus) -> Self {
        self.status = status;
        self
    }

    /// `host:port`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The weight that applies at the instance's current status.
    pub fn effective_weight(&self) -> u32 {
        self.weights.at(self.status)
    }

    /// Whether the instance carries every tag in `tags`, compared case-insensitively as
    /// Consul does.
    pub fn has_tags(&self, tags: &[String]) -> bool {
        tags.iter()
            .all(|want| self.tags.iter().any(|t| t.eq_ignore_ascii_case(want)))
    }
}

/// How the registry checks that an instance is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckSpec {
    /// The registry calls `grpc.health.v1.Health/Check` on `target`
    /// (`host:port`, or `host:port/service` to ask about one service).
    Grpc {
        /// `host:port[/service]`.
        target: String,
        /// Dial with TLS instead of plaintext.
        use_tls: bool,
        /// Time between checks.
        interval: Duration,
        /// Deadline of one check.
        timeout: Duration,
    },
    /// The registry sends an HTTP request to `url`; 2xx passes, 429 warns.
    Http {
        /// The URL to call.
        url: String,
        /// Time between checks.
        interval: Duration,
        /// Deadline of one check.
        timeout: Duration,
    },
    /// The registry opens a TCP connection to `address`.
    Tcp {
        /// `host:port`.
        address: String,
        /// Time between checks.
        interval: Duration,
        /// Deadline of one check.
        timeout: Duration,
    },
    /// The instance reports its own status at least every `ttl`
    /// ([`Registry::report`](crate::Registry::report)); silence turns it critical.
    Ttl {
        /// How long a report stays valid.
        ttl: Duration,
    },
}

impl CheckSpec {
    /// Interval of the check kinds the registry runs, when none is given.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
    /// Deadline of one check, when none is given.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A gRPC health check against `target` with the default interval and timeout.
    pub fn grpc(target: impl Into<String>) -> Self {
        CheckSpec::Grpc {
            target: target.into(),
            use_tls: false,
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// An HTTP check against `url` with the default interval and timeout.
    pub fn http(url: impl Into<String>) -> Self {
        CheckSpec::Http {
            url: url.into(),
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// A TCP connect check against `address` with the default interval and timeout.
    pub fn tcp(address: impl Into<String>) -> Self {
        CheckSpec::Tcp {
            address: address.into(),
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// A TTL check.
    pub fn ttl(ttl: Duration) -> Self {
        CheckSpec::Ttl { ttl }
    }

    /// Replaces the interval (no effect on TTL checks).
    #[must_use]
    pub fn interval(mut self, every: Duration) -> Self {
        match &mut self {
            CheckSpec::Grpc { interval, .. }
            | CheckSpec::Http { interval, .. }
            | CheckSpec::Tcp { interval, .. } => *interval = every,
            CheckSpec::Ttl { .. } => {}
        }
        self
    }

    /// Replaces the timeout (no effect on TTL checks).
    #[must_use]
    pub fn timeout(mut self, deadline: Duration) -> Self {
        match &mut self {
            CheckSpec::Grpc { timeout, .. }
            | CheckSpec::Http { timeout, .. }
            | CheckSpec::Tcp { timeout, .. } => *timeout = deadline,
            CheckSpec::Ttl { .. } => {}
        }
        self
    }

    /// Whether the instance must report its status itself.
    pub fn is_ttl(&self) -> bool {
        matches!(self, CheckSpec::Ttl { .. })
    }
}

/// What a server asks the registry for: an instance, how to check it, and when to give up
/// on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Registration {
    /// The instance to publish. Its `status` is ignored: the check decides.
    pub instance: ServiceInstance,
    /// How the registry checks the instance; `None` registers it without a check (always
    /// passing), which only suits tests.
    pub check: Option<CheckSpec>,
    /// Remove the instance after its check has been critical this long (Consul's
    /// `DeregisterCriticalServiceAfter`), so crashed servers don't linger.
    pub deregister_after: Option<Duration>,
    /// The status the check starts with (Consul's check `Status`); `None` leaves it to the
    /// registry, which starts a check it runs itself critical until its first run. A
    /// re-registration of an instance the registry still knows keeps the status it has.
    pub initial_status: Option<HealthStatus>,
}

impl Registration {
    /// A registration of `instance` with no check.
    pub fn new(instance: ServiceInstance) -> Self {
        Registration {
            instance,
            check: None,
            deregister_after: None,
            initial_status: None,
        }
    }

    /// Sets the check.
    #[must_use]
    pub fn check(mut self, check: CheckSpec) -> Self {
        self.check = Some(check);
        self
    }

    /// Sets the critical time after which the registry removes the instance.
    #[must_use]
    pub fn deregister_after(mut self, after: Duration) -> Self {
        self.deregister_after = Some(after);
        self
    }

    /// Sets the status the check starts with.
    #[must_use]
    pub fn initial_status(mut self, status: HealthStatus) -> Self {
        self.initial_status = Some(status);
        self
    }
}

/// Which instances a caller wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Query {
    /// The service name.
    pub service: String,
    /// Only instances carrying all of these tags (case-insensitive).
    pub tags: Vec<String>,
    /// Only instances whose checks all pass. On by default: callers want traffic to go to
    /// healthy instances only. Turn off to see warning and critical instances too.
    pub passing_only: bool,
    /// The datacenter to ask, where the registry has several; `None` is the local one.
    pub datacenter: Option<String>,
    /// A backend-specific filter expression (Consul's `filter`), passed through.
    pub filter: Option<String>,
    /// How current the answer must be. A registry that cannot trade freshness for cost
    /// (the in-memory one) answers current data whatever this says.
    pub consistency: Consistency,
}

/// How current an answer must be, for registries whose replicas can answer reads: a stale
/// read spreads load over every replica and keeps answering while there is no leader; a
/// consistent one costs the leader a round of confirmation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Consistency {
    /// The registry's usual read (Consul: answered by the leader).
    #[default]
    Default,
    /// Any replica may answer, possibly behind the leader; `max_stale`, if set, bounds how
    /// far behind (past it, the leader answers).
    Stale {
        /// The most the answer may lag the leader.
        max_stale: Option<Duration>,
    },
    /// Confirmed current before answering.
    Consistent,
}

impl Query {
    /// All passing instances of `service` in the local datacenter.
    pub fn new(service: impl Into<String>) -> Self {
        Query {
            service: service.into(),
            tags: Vec::new(),
            passing_only: true,
            datacenter: None,
            filter: None,
            consistency: Consistency::Default,
        }
    }

    /// Adds a required tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Replaces the required tags.
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets whether only passing instances are returned.
    #[must_use]
    pub fn passing_only(mut self, yes: bool) -> Self {
        self.passing_only = yes;
        self
    }

    /// Sets the datacenter.
    #[must_use]
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.datacenter = Some(dc.into());
        self
    }

    /// Sets a backend-specific filter expression.
    #[must_use]
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Sets how current the answer must be.
    #[must_use]
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Whether `instance` answers this query, leaving `filter` (backend-specific) aside.
    pub fn matches(&self, instance: &ServiceInstance) -> bool {
        instance.service == self.service
            && instance.has_tags(&self.tags)
            && (!self.passing_only || instance.status == HealthStatus::Passing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn queries_that_differ_in_consistency_are_different_questions() {
        let stale = Query::new("web").consistency(Consistency::Stale {
            max_stale: Some(Duration::from_secs(5)),
        });
        assert_ne!(
            stale,
            Query::new("web"),
            "a backend that shares one watch per query must not answer a stale query with a default one"
        );
        assert_eq!(Query::new("web").consistency, Consistency::Default);
        let instance = ServiceInstance::new("a", "web", "10.0.0.1", 80);
        assert!(
            stale.matches(&instance),
            "consistency says how current, not which instances"
        );
    }

    #[test]
    fn status_words_round_trip() {
        for s in [
            HealthStatus::Passing,
            HealthStatus::Warning,
            HealthStatus::Critical,
        ] {
            assert_eq!(s.as_str().parse::<HealthStatus>(), Ok(s));
        }
        assert!(
            "ok".parse::<HealthStatus>().is_err(),
            "`ok` is not a status"
        );
    }

    #[test]
    fn worst_status_is_the_max() {
        let worst = [HealthStatus::Warning, HealthStatus::Passing]
            .into_iter()
            .max();
        assert_eq!(worst, Some(HealthStatus::Warning));
        assert!(HealthStatus::Critical > HealthStatus::Warning);
    }

    #[test]
    fn weights_follow_status() {
        let w = Weights {
            passing: 3,
            warning: 1,
        };
        assert_eq!(w.at(HealthStatus::Passing), 3);
        assert_eq!(w.at(HealthStatus::Warning), 1);
        assert_eq!(w.at(HealthStatus::Critical), 0);
    }

    #[test]
    fn authority_brackets_ipv6() {
        assert_eq!(
            ServiceInstance::new("a", "s", "::1", 80).authority(),
            "[::1]:80"
        );
        assert_eq!(
            ServiceInstance::new("a", "s", "10.0.0.1", 80).authority(),
            "10.0.0.1:80"
        );
    }

    #[test]
    fn query_matches_tags_case_insensitively_and_health() {
        let a = ServiceInstance::new("a", "web", "h", 1).tags(["V1", "blue"]);
        assert!(Query::new("web").tag("v1").matches(&a));
        assert!(!Query::new("web").tag("green").matches(&a));
        assert!(!Query::new("db").matches(&a));
        let warn = a.clone().status(HealthStatus::Warning);
        assert!(
            !Query::new("web").matches(&warn),
            "passing_only drops warning"
        );
        assert!(Query::new("web").passing_only(false).matches(&warn));
    }

    proptest! {
        #[test]
        fn authority_is_parseable_as_socket_addr_for_ip_hosts(ip in any::<std::net::IpAddr>(), port in any::<u16>()) {
            let inst = ServiceInstance::new("i", "s", ip.to_string(), port);
            let parsed: std::net::SocketAddr = inst.authority().parse().expect("authority parses");
            prop_assert_eq!(parsed, std::net::SocketAddr::new(ip, port));
        }

        #[test]
        fn unknown_status_words_are_errors_not_panics(word in ".*") {
            let parsed = word.parse::<HealthStatus>();
            let known = ["passing", "warning", "critical"].contains(&word.as_str());
            prop_assert_eq!(parsed.is_ok(), known);
        }
    }
}
