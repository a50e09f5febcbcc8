//! One transport per agent and identity in a process: clients built from equal settings
//! share their connections, their budget and their watches, so a hundred channels that each
//! build a registry from the environment cost the agent what one does. Uses the transport.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::connections::Transport;
use crate::config::Config;
use crate::error::Error;

/// The live transports by settings. Weak: a transport whose last client is gone is dropped,
/// and its entry with it at the next lookup.
static TRANSPORTS: LazyLock<Mutex<HashMap<Config, Weak<Transport>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The transport for `config`: the live one built from equal settings, else a new one (and
/// always a new one when `config.shared` is off).
pub(crate) fn transport(config: Config) -> Result<Arc<Transport>, Error> {
    if !config.shared {
        return Ok(Arc::new(Transport::new(config)?));
    }
    // Each mutation is one insert or a retain: a poisoned map is still consistent.
    let mut transports = TRANSPORTS.lock().unwrap_or_else(|p| p.into_inner());
    transports.retain(|_, t| t.strong_count() > 0);
    if let Some(live) = transports.get(&config).and_then(Weak::upgrade) {
        return Ok(live);
    }
    let transport = Arc::new(Transport::new(config.clone())?);
    transports.insert(config, Arc::downgrade(&transport));
    Ok(transport)
}
