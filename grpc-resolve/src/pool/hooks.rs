//! What the pool's own tasks see of it: the monitor of unresponsive endpoints
//! ([`Watched`]) and each endpoint's reconnect loop ([`Owner`]) reach the pool only through
//! these small traits, so neither imports the set; and the pool's `Debug`.
//!
//! May use: `set` (the pool), `monitor` and `reconnect` (the traits), `endpoint`,
//! `progress`, `settings`, `stats`.

use std::sync::Arc;

use tokio::time::Instant;

use super::endpoint::Endpoint;
use super::monitor::{self, Watched};
use super::progress::Clock;
use super::reconnect::Owner;
use super::set::Pool;
use super::settings::PoolConfig;
use super::stats::Counters;

// --- The monitor of unresponsive endpoints and the clock it keeps ---

impl Pool {
    /// The coarse clock calls stamp their progress with.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(super) fn start_monitor(self: &Arc<Self>) {
        self.monitor
            .get_or_init(|| tokio::spawn(monitor::run(Arc::downgrade(self))).abort_handle());
    }
}

impl Watched for Pool {
    fn clock(&self) -> &Clock {
        Pool::clock(self)
    }

    fn counters(&self) -> &Counters {
        Pool::counters(self)
    }

    fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.read().clone()
    }

    fn unresponsive_after(&self) -> Option<std::time::Duration> {
        self.config.liveness.unresponsive_after
    }

    fn probe_service(&self) -> &str {
        &self.config.liveness.health_service
    }

    fn settings(&self) -> &crate::pool::settings::Settings {
        &self.config.settings
    }

    fn connection_stale(&self, endpoint: &Endpoint, generation: u64) {
        Pool::connection_stale(self, endpoint, generation);
    }

    fn endpoint_changed(&self) {
        // What a connection event does: slow-start ramps and the fallbacks' review too.
        <Self as Owner>::endpoint_changed(self);
    }
}

impl Owner for Pool {
    fn config(&self) -> &PoolConfig {
        &self.config
    }

    fn counters(&self) -> &Counters {
        Pool::counters(self)
    }

    fn clock(&self) -> &Clock {
        Pool::clock(self)
    }

    fn endpoint_changed(&self) {
        let now = Instant::now();
        self.start_ramps(now);
        // A fallback that lost its connection has failed on its own; a listed endpoint
        // that connected may have brought the set back.
        self.review_fallbacks(now);
        self.changed();
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("service", &self.service)
            .field("endpoints", &self.infos())
            .finish_non_exhaustive()
    }
}
