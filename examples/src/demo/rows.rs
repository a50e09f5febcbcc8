//! One row per backend: what its process does, how many calls it answers, and how Consul
//! and the channel see it. A pure function of the board, the channel's endpoints and the
//! rates. Uses the board.

use std::collections::BTreeMap;

use consul_api::CheckStatus;
use grpc_resolve::{Condition, EndpointInfo};

use super::board::{Backend, ConsulView};

/// What the channel says of one endpoint, as far as the demo shows it.
///
/// The one place that reads [`EndpointInfo`]: each field of the channel's view (its
/// client-side health, a slow-start weight, a fallback) is read here and shown by
/// [`ChannelView::describe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelView {
    /// Connected and not ejected: calls may pick it.
    pub(crate) ready: bool,
    /// Taken out of rotation by outlier detection.
    pub(crate) ejected: bool,
    /// Calls in flight on it.
    pub(crate) in_flight: usize,
    /// Its balancing weight.
    pub(crate) weight: u32,
    /// The share of its weight it gets now: below 100 during slow start.
    pub(crate) weight_percent: u32,
    /// What the channel sees of its server (client-side health, unresponsive).
    pub(crate) condition: Condition,
    /// Dropped by discovery but kept by the shrink guard.
    pub(crate) fallback: bool,
}

impl From<&EndpointInfo> for ChannelView {
    fn from(info: &EndpointInfo) -> Self {
        ChannelView {
            ready: info.ready,
            ejected: info.ejected,
            in_flight: info.in_flight,
            weight: info.weight,
            weight_percent: info.weight_percent,
            condition: info.condition,
            fallback: info.fallback,
        }
    }
}

impl ChannelView {
    /// The channel column.
    pub(crate) fn describe(&self) -> String {
        let state = if self.ejected {
            "ejected"
        } else if self.ready {
            "ready"
        } else {
            match self.condition {
                Condition::NotServing => "NOT_SERVING",
                Condition::Unresponsive => "unresponsive",
                _ => "not ready",
            }
        };
        let fallback = if self.fallback { ", fallback" } else { "" };
        if self.weight_percent < 100 {
            // Slow start: the share of its weight it gets now (short, to fit 120 columns).
            format!("{state}{fallback}, ramp {}%", self.weight_percent)
        } else {
            format!("{state}{fallback}, weight {}", self.weight)
        }
    }
}

/// One row of the screen.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// `n1`, …, or `?` for an instance the demo did not start.
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) pid: Option<u32>,
    pub(crate) process: String,
    /// Successful calls per second over the last second.
    pub(crate) rate: f64,
    /// `None` when the channel does not know it.
    pub(crate) in_flight: Option<usize>,
    pub(crate) consul: String,
    pub(crate) channel: String,
}

/// The rows: the demo's backends in start order (a finished one stays while Consul or the
/// channel still knows it, or until the screen has no room), then any instance Consul or
/// the channel knows that the demo did not start.
pub(crate) fn rows(
    backends: &[Backend],
    consul: &ConsulView,
    endpoints: &[EndpointInfo],
    rates: &BTreeMap<String, f64>,
) -> Vec<Row> {
    let channel: BTreeMap<&str, ChannelView> = endpoints
        .iter()
        .map(|e| (e.id.as_str(), ChannelView::from(e)))
        .collect();
    let row = |name: &str, id: &str, pid: Option<u32>, process: String| {
        let view = channel.get(id);
        Row {
            name: name.to_owned(),
            id: id.to_owned(),
            pid,
            process,
            rate: rates.get(id).copied().unwrap_or(0.0),
            in_flight: view.map(|v| v.in_flight),
            consul: consul_word(consul, id),
            channel: view.map_or_else(|| "-".to_owned(), ChannelView::describe),
        }
    };
    let mut out: Vec<Row> = backends
        .iter()
        .map(|b| row(&b.name, &b.id, Some(b.pid), b.process.word()))
        .collect();
    let mut strangers: Vec<&str> = channel.keys().copied().collect();
    if let ConsulView::Up(statuses) = consul {
        strangers.extend(statuses.keys().map(String::as_str));
    }
    strangers.sort_unstable();
    strangers.dedup();
    for id in strangers {
        if !backends.iter().any(|b| b.id == id) {
            out.push(row("?", id, None, "-".to_owned()));
        }
    }
    out
}

/// The Consul column for `id`.
fn consul_word(consul: &ConsulView, id: &str) -> String {
    match consul {
        ConsulView::Unknown => "?".to_owned(),
        ConsulView::Down => "agent down".to_owned(),
        ConsulView::Up(statuses) => match statuses.get(id) {
            Some(CheckStatus::Passing) => "passing".to_owned(),
            Some(status) => status.as_str().to_owned(),
            None => "not registered".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::board::Process;

    fn backend(name: &str, id: &str, process: Process) -> Backend {
        Backend {
            name: name.into(),
            id: id.into(),
            pid: 7,
            process,
        }
    }

    #[test]
    fn each_backend_shows_its_process_consul_status_and_rate_and_strangers_come_last() {
        let backends = [
            backend("n1", "a-1", Process::Running),
            backend("n2", "a-2", Process::Killed),
        ];
        let consul = ConsulView::Up(BTreeMap::from([
            ("a-1".to_owned(), CheckStatus::Passing),
            ("a-2".to_owned(), CheckStatus::Critical),
            ("z-9".to_owned(), CheckStatus::Passing),
        ]));
        let rates = BTreeMap::from([("a-1".to_owned(), 250.0)]);
        let rows = rows(&backends, &consul, &[], &rates);
        let summary: Vec<(&str, &str, &str, f64)> = rows
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.process.as_str(),
                    r.consul.as_str(),
                    r.rate,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("n1", "running", "passing", 250.0),
                ("n2", "killed", "critical", 0.0),
                ("?", "-", "passing", 0.0),
            ],
            "expected the backends in order, then the instance the demo did not start"
        );
        assert!(
            rows.iter()
                .all(|r| r.channel == "-" && r.in_flight.is_none()),
            "expected no channel view without endpoints"
        );
    }

    #[test]
    fn consul_down_and_unregistered_are_told_apart() {
        let backends = [backend("n1", "a-1", Process::Hung)];
        let down = rows(&backends, &ConsulView::Down, &[], &BTreeMap::new());
        assert_eq!(down[0].consul, "agent down", "expected the agent down");
        let empty = rows(
            &backends,
            &ConsulView::Up(BTreeMap::new()),
            &[],
            &BTreeMap::new(),
        );
        assert_eq!(empty[0].consul, "not registered", "expected not registered");
        assert_eq!(
            empty[0].process, "hung (SIGSTOP)",
            "expected the hang shown"
        );
    }

    #[test]
    fn the_channel_column_says_ejected_before_ready() {
        let view = ChannelView {
            ready: false,
            ejected: true,
            in_flight: 0,
            weight: 1,
            weight_percent: 100,
            condition: Condition::Unknown,
            fallback: false,
        };
        assert_eq!(view.describe(), "ejected, weight 1", "expected ejected");
        let view = ChannelView {
            ready: true,
            ejected: false,
            in_flight: 3,
            weight: 2,
            weight_percent: 100,
            condition: Condition::Serving,
            fallback: false,
        };
        assert_eq!(view.describe(), "ready, weight 2", "expected ready");
    }

    #[test]
    fn the_channel_column_says_not_serving_unresponsive_fallback_and_slow_start() {
        let base = ChannelView {
            ready: false,
            ejected: false,
            in_flight: 0,
            weight: 1,
            weight_percent: 100,
            condition: Condition::NotServing,
            fallback: false,
        };
        assert_eq!(base.describe(), "NOT_SERVING, weight 1");
        let hung = ChannelView {
            condition: Condition::Unresponsive,
            ..base.clone()
        };
        assert_eq!(hung.describe(), "unresponsive, weight 1");
        let ramping = ChannelView {
            ready: true,
            condition: Condition::Serving,
            weight_percent: 40,
            fallback: true,
            ..base
        };
        assert_eq!(ramping.describe(), "ready, fallback, ramp 40%");
    }
}
