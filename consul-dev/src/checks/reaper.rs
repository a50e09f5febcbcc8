//! The reaper: removes services whose check has been critical for longer than its
//! `DeregisterCriticalServiceAfter` (floored). Uses `state` and `config`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::state::{Shared, Status};

/// The effective `DeregisterCriticalServiceAfter`: none when unset, else at least the floor
/// (Consul: 1m).
pub(crate) fn deregister_after(requested: Duration, config: &Config) -> Option<Duration> {
    (!requested.is_zero()).then(|| requested.max(config.min_deregister_after))
}

/// Removes services whose check has been critical longer than its
/// `DeregisterCriticalServiceAfter`, every `reaper_interval`.
pub(crate) async fn reaper(state: Arc<Shared>) {
    let period = state.config.reaper_interval.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut store = state.lock();
        let doomed: Vec<(String, String)> = store
            .checks
            .values()
            .filter(|c| !c.service_id.is_empty())
            .filter_map(|c| {
                let after = c.deregister_after?;
                let since = c.critical_since?;
                (c.status == Status::Critical && now.duration_since(since) > after)
                    .then(|| (c.node.clone(), c.service_id.clone()))
            })
            .collect();
        for (node, id) in doomed {
            if store.remove_service(&node, &id) {
                tracing::info!(service = %id, "reaped service critical past DeregisterCriticalServiceAfter");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio::sync::watch;

    use super::*;
    use crate::state::{Check, Key, Service, Store, Weights};

    #[test]
    fn reaper_defaults_are_consuls() {
        let config = Config::default();
        assert_eq!(config.reaper_interval, Duration::from_secs(30), "reaper");
        assert_eq!(
            config.min_deregister_after,
            Duration::from_secs(60),
            "floor"
        );
        let secs = Duration::from_secs;
        assert_eq!(
            deregister_after(secs(10), &config),
            Some(secs(60)),
            "raised"
        );
        assert_eq!(deregister_after(secs(90), &config), Some(secs(90)), "kept");
        assert_eq!(deregister_after(Duration::ZERO, &config), None, "unset");
    }

    fn add_instance(store: &mut Store, name: &str, status: Status) -> Key {
        let node = "n".to_owned();
        store.insert_service(Service {
            node: node.clone(),
            kind: String::new(),
            id: name.to_owned(),
            name: name.to_owned(),
            tags: Vec::new(),
            address: String::new(),
            tagged_addresses: BTreeMap::new(),
            meta: BTreeMap::new(),
            port: 0,
            socket_path: String::new(),
            weights: Weights::default(),
            enable_tag_override: false,
            locality: None,
            create_index: 1,
            modify_index: 1,
        });
        let check_id = format!("service:{name}");
        let mut check = Check::new(&node, &check_id, "c", status);
        check.service_id = name.to_owned();
        check.service_name = name.to_owned();
        check.deregister_after = deregister_after(Duration::from_secs(10), &Config::default());
        store.insert_check(check);
        (node, check_id)
    }

    /// Case 55 at Consul's real timings, in paused time: 10s is raised to 1m, the clock
    /// starts at the transition to critical, and the service goes at the first 30s reaper
    /// run past the timeout, not before.
    #[tokio::test(start_paused = true)]
    async fn reaped_at_the_first_run_past_the_timeout() {
        let (_stop, stop_rx) = watch::channel(false);
        let state = Arc::new(Shared::new(Config::default().node_name("n"), stop_rx));
        let start = Instant::now();
        let (web, stuck) = {
            let mut store = state.lock();
            let web = add_instance(&mut store, "web", Status::Passing);
            let stuck = add_instance(&mut store, "stuck", Status::Critical);
            (web, stuck)
        };
        let reaper = tokio::spawn(reaper(Arc::clone(&state)));
        let present = |name: &str| state.lock().instances(name).next().is_some();

        tokio::time::sleep_until(start + Duration::from_secs(10)).await;
        assert!(
            state
                .lock()
                .set_check_status(&web, Status::Critical, "down".to_owned()),
            "web turns critical at 10s"
        );
        // Reaper runs at 30s, 60s, 90s; the 1m timeout passes at 70s.
        tokio::time::sleep_until(start + Duration::from_millis(89_900)).await;
        assert!(present("web"), "not reaped before the first run past 70s");
        tokio::time::sleep_until(start + Duration::from_millis(90_100)).await;
        assert!(!present("web"), "reaped by the 90s run");
        assert!(
            !state.lock().checks.contains_key(&web),
            "its check is gone too"
        );
        assert!(
            present("stuck") && state.lock().checks.contains_key(&stuck),
            "registered-as-critical never starts the clock"
        );
        reaper.abort();
    }
}
