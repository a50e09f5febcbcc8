//! Slow start on real servers: a backend joining a loaded pool gets a small share of the
//! calls at first and its fair share once its ramp is over.

mod common;

use std::time::Duration;

use common::{Backend, Load, SERVICE, settle, wait_ready};
use discovery_core::mock::channel_resolver;
use grpc_resolve::DiscoveredChannel;

const WINDOW: Duration = Duration::from_secs(6);

/// Calls each backend took between two readings.
fn taken(before: &[usize], backends: &[Backend]) -> Vec<usize> {
    backends
        .iter()
        .zip(before)
        .map(|(b, before)| b.calls() - before)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_backend_gets_under_half_its_share_at_first_and_all_of_it_after_the_window() {
    let backends: Vec<Backend> =
        futures_util::future::join_all((0..5).map(|_| Backend::start())).await;
    let instance = |i: usize| backends[i].instance(&format!("b{i}"));
    let (resolver, handle) = channel_resolver();
    handle.set((0..4).map(instance).collect());
    let channel = DiscoveredChannel::builder(resolver, SERVICE)
        .slow_start_window(WINDOW)
        .build();
    wait_ready(&channel, 4).await;
    // The first four ramp together; let that pass so they are at full weight.
    settle(async {
        while channel.endpoints().iter().any(|e| e.weight_percent < 100) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let load = Load::start(&channel, 8);

    handle.set((0..5).map(instance).collect());
    wait_ready(&channel, 5).await;
    let before: Vec<usize> = backends.iter().map(Backend::calls).collect();
    tokio::time::sleep(WINDOW / 10).await;
    let early = taken(&before, &backends);
    let percent = channel.endpoints()[4].weight_percent;
    // A late reading only lengthens the early period, which can only raise b4's share there.
    assert!(
        percent <= 20,
        "expected the reading early in the ramp, b4 was at {percent} %"
    );

    settle(async {
        while channel.endpoints()[4].weight_percent < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let before: Vec<usize> = backends.iter().map(Backend::calls).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = taken(&before, &backends);
    load.stop().await;

    let share = |calls: &[usize]| calls[4] as f64 / calls.iter().sum::<usize>() as f64;
    let fair = 1.0 / 5.0;
    println!(
        "b4's share: {:.3} in the first tenth ({early:?}), {:.3} after the window ({after:?}); fair {fair}",
        share(&early),
        share(&after)
    );
    assert!(
        share(&early) < fair / 2.0,
        "expected under half the fair share ({:.2}) at first, got {:.3} ({early:?})",
        fair / 2.0,
        share(&early)
    );
    assert!(
        share(&after) > fair * 0.75,
        "expected about the fair share ({fair}) after the window, got {:.3} ({after:?})",
        share(&after)
    );
}
