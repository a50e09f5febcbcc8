//! One transport per agent, identity and tokio runtime in a process: clients built from
//! equal settings share their connections, their budget and their watches, so a hundred
//! channels that each build a registry from the environment cost the agent what one does.
//! The runtime is part of the key because a connection's task runs on the runtime that made
//! it: a transport shared with a runtime that has ended would hand out connections that died
//! with it (`runtime dropped the dispatch task`). Uses the transport.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::connections::Transport;
use crate::config::Config;
use crate::error::Error;

/// The live transports by settings and runtime. Weak: a transport whose last client is gone
/// is dropped, and its entry with it at the next lookup.
static TRANSPORTS: LazyLock<Mutex<HashMap<Key, Weak<Transport>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Equal settings, built in the same runtime (`None`: outside any).
type Key = (Config, Option<tokio::runtime::Id>);

/// The transport for `config`: the live one built from equal settings in the current tokio
/// runtime, else a new one (and always a new one when `config.shared` is off).
pub(crate) fn transport(config: Config) -> Result<Arc<Transport>, Error> {
    if !config.shared {
        return Ok(Arc::new(Transport::new(config)?));
    }
    // Each mutation is one insert or a retain: a poisoned map is still consistent.
    let mut transports = TRANSPORTS.lock().unwrap_or_else(|p| p.into_inner());
    transports.retain(|_, t| t.strong_count() > 0);
    let key = (
        config,
        tokio::runtime::Handle::try_current().ok().map(|h| h.id()),
    );
    if let Some(live) = transports.get(&key).and_then(Weak::upgrade) {
        return Ok(live);
    }
    let transport = Arc::new(Transport::new(key.0.clone())?);
    transports.insert(key, Arc::downgrade(&transport));
    Ok(transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_runtime<T>(f: impl FnOnce() -> T) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        f()
    }

    #[test]
    fn equal_settings_share_within_a_runtime_and_not_across_runtimes() {
        let config = Config::new("127.0.0.1:8500").unwrap();
        let (one, two) = in_runtime(|| {
            (
                transport(config.clone()).unwrap(),
                transport(config.clone()).unwrap(),
            )
        });
        assert!(Arc::ptr_eq(&one, &two), "one runtime: one transport");
        let other = in_runtime(|| transport(config.clone()).unwrap());
        assert!(
            !Arc::ptr_eq(&one, &other),
            "another runtime gets its own, whose connections live on it"
        );
        let unshared = in_runtime(|| transport(config.clone().shared(false)).unwrap());
        assert!(!Arc::ptr_eq(&one, &unshared), "shared(false): its own");
    }
}
