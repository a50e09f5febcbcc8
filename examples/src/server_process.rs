//! What an `add-server` process does once its flags are read: serve, registered; toggle its
//! health on SIGUSR1/SIGUSR2; stop on SIGINT/SIGTERM and print what it served. The `demo`
//! binary runs the same code in its child processes (`demo serve`), so they are always the
//! demo's own build.

use std::path::Path;
use std::sync::Arc;

use crate::{AdderService, Served, ServerOptions};

/// Serves Adder with `opts`, registered in the agent `CONSUL_HTTP_ADDR` names, until SIGINT
/// or SIGTERM; prints `serving <id> on <addr>` once serving, `health: NOT_SERVING` /
/// `health: SERVING` at each toggle, and `served N Add calls` and `stopped` at the end.
/// With `served_file`, the count is kept there too ([`Served::with_file`]).
pub async fn run_add_server(
    opts: &ServerOptions,
    served_file: Option<&Path>,
) -> anyhow::Result<()> {
    let served = Arc::new(match served_file {
        Some(path) => Served::with_file(path)
            .map_err(|e| anyhow::anyhow!("--served-file {}: {e}", path.display()))?,
        None => Served::new(),
    });
    let registry = crate::registry_from_env()?;
    let service = AdderService::counting(served.clone());
    let running = crate::start_adder(registry, opts, service).await?;
    println!("serving {} on {}", running.id(), running.local_addr());
    let toggles = tokio::spawn(health_toggles(running.health().clone()));
    running
        .run_until(async {
            grpc_register::shutdown_signal().await;
            // The stop sequence owns the health state from here.
            toggles.abort();
        })
        .await?;
    println!("served {} Add calls", served.count());
    println!("stopped");
    Ok(())
}

/// SIGUSR1: NOT_SERVING; SIGUSR2: SERVING (the whole server and `add.Adder`). Consul's
/// check and clients watching `grpc.health.v1` see the change; calls are still answered.
async fn health_toggles(health: health::Health) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::warn!("no SIGUSR1/SIGUSR2 handlers: health stays as it is");
        return;
    };
    loop {
        let serving = tokio::select! {
            _ = usr1.recv() => false,
            _ = usr2.recv() => true,
        };
        for service in [health::SERVER, crate::ADDER_HEALTH_NAME] {
            if serving {
                health.set_serving(service).await;
            } else {
                health.set_not_serving(service).await;
            }
        }
        println!(
            "health: {}",
            if serving { "SERVING" } else { "NOT_SERVING" }
        );
    }
}
