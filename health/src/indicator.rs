//! Health indicators: probes whose verdicts decide a server's serving status. Uses nothing
//! else of this crate.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

/// How healthy one indicator finds things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Fine.
    Up,
    /// Serving, but worse than it should (a slow dependency): the registry is told
    /// `warning`, which Consul's weights can use to send less traffic.
    Degraded,
    /// Cannot serve: the covered services turn NOT_SERVING and the registry is told
    /// `critical`.
    Down,
}

/// One verdict of an indicator, with a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The verdict.
    pub level: Level,
    /// Why, for people reading the registry's check output.
    pub detail: String,
}

impl Probe {
    /// A verdict with a detail.
    pub fn new(level: Level, detail: impl Into<String>) -> Self {
        Probe {
            level,
            detail: detail.into(),
        }
    }

    /// An `Up` verdict.
    pub fn up(detail: impl Into<String>) -> Self {
        Self::new(Level::Up, detail)
    }

    /// A `Down` verdict.
    pub fn down(detail: impl Into<String>) -> Self {
        Self::new(Level::Down, detail)
    }
}

/// Which services an indicator speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every service, and the server as a whole.
    #[default]
    All,
    /// Only these services (fully-qualified gRPC names, like `adder.Adder`).
    Services(Vec<String>),
}

impl Scope {
    /// Whether the scope covers `service`.
    pub fn covers(&self, service: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Services(names) => names.iter().any(|n| n == service),
        }
    }
}

/// An async probe. Implement it for a type, or wrap a closure with [`indicator_fn`].
#[async_trait]
pub trait Indicator: Send + Sync + 'static {
    /// Looks and says how things are. A probe that outlives its
    /// [timeout](IndicatorOptions::timeout) counts as [`Level::Down`].
    async fn probe(&self) -> Probe;
}

/// An [`Indicator`] made of a closure returning a future.
#[derive(Debug, Clone)]
pub struct FnIndicator<F>(F);

/// Wraps `f` as an [`Indicator`].
pub fn indicator_fn<F, Fut>(f: F) -> FnIndicator<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Probe> + Send + 'static,
{
    FnIndicator(f)
}

#[async_trait]
impl<F, Fut> Indicator for FnIndicator<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Probe> + Send + 'static,
{
    async fn probe(&self) -> Probe {
        (self.0)().await
    }
}

/// When and for what an indicator runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IndicatorOptions {
    /// Time between probes.
    pub interval: Duration,
    /// Deadline of one probe.
    pub timeout: Duration,
    /// The services it speaks for.
    pub scope: Scope,
}

impl IndicatorOptions {
    /// Probes every `interval`, with a deadline of the interval, for every service.
    pub fn every(interval: Duration) -> Self {
        IndicatorOptions {
            interval,
            timeout: interval,
            scope: Scope::All,
        }
    }

    /// Sets the deadline of one probe.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Limits the indicator to some services.
    #[must_use]
    pub fn for_services<I, S>(mut self, services: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scope = Scope::Services(services.into_iter().map(Into::into).collect());
        self
    }
}

/// A dependency probe: up while a TCP connection to `addr` can be opened.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    addr: SocketAddr,
}

impl TcpProbe {
    /// Probes `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        TcpProbe { addr }
    }
}

#[async_trait]
impl Indicator for TcpProbe {
    async fn probe(&self) -> Probe {
        match tokio::net::TcpStream::connect(self.addr).await {
            Ok(_) => Probe::up(format!("TCP connect {}: Success", self.addr)),
            Err(e) => Probe::down(format!("TCP connect {}: {e}", self.addr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_what_they_name() {
        assert!(Scope::All.covers(""));
        assert!(Scope::All.covers("adder.Adder"));
        let only = Scope::Services(vec!["adder.Adder".into()]);
        assert!(only.covers("adder.Adder"));
        assert!(!only.covers(""));
        assert!(!only.covers("other.Svc"));
    }

    #[tokio::test]
    async fn tcp_probe_sees_listening_and_closed_ports() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let probe = TcpProbe::new(addr).probe().await;
        assert_eq!(probe.level, Level::Up, "{probe:?}");
        drop(listener);
        let probe = TcpProbe::new(addr).probe().await;
        assert_eq!(probe.level, Level::Down, "{probe:?}");
        assert!(probe.detail.starts_with(&format!("TCP connect {addr}:")));
    }
}
