//! Locality preference: calls stay in the preferred zone while it has a ready endpoint.

mod common;

use common::{Backend, SERVICE, check, settle, wait_ready};
use discovery_core::{MemoryRegistry, Registration, Registry, ServiceInstance};
use grpc_resolve::DiscoveredChannel;

fn in_zone(mut instance: ServiceInstance, zone: &str) -> ServiceInstance {
    instance.locality = Some(zone.to_owned());
    instance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_stay_in_the_preferred_zone_until_it_has_no_ready_endpoint() {
    let far = Backend::start().await;
    let mut near1 = Backend::start().await;
    let mut near2 = Backend::start().await;
    let registry = MemoryRegistry::new();
    for instance in [
        in_zone(far.instance("far"), "zone-a"),
        in_zone(near1.instance("near1"), "zone-b"),
        in_zone(near2.instance("near2"), "zone-b"),
    ] {
        registry
            .register(&Registration::new(instance))
            .await
            .expect("register");
    }
    let channel = DiscoveredChannel::builder(registry.clone(), SERVICE)
        .prefer_locality("zone-b")
        .build();
    wait_ready(&channel, 3).await;

    for _ in 0..300 {
        check(&channel).await.expect("zone-b serves");
    }
    assert_eq!(far.calls(), 0, "expected no call to leave zone-b");
    assert!(
        near1.calls() > 50 && near2.calls() > 50,
        "expected both zone-b backends to share 300 calls, got {} and {}",
        near1.calls(),
        near2.calls()
    );

    // One zone-b backend left: it takes all of the zone's calls.
    near1.stop().await;
    settle(channel.wait_for(|eps| eps.iter().any(|e| e.id == "near1" && !e.ready))).await;
    let before = near2.calls();
    for _ in 0..100 {
        check(&channel).await.expect("near2 serves");
    }
    assert_eq!(
        near2.calls() - before,
        100,
        "expected near2 to get every call"
    );
    assert_eq!(far.calls(), 0, "expected still no call to leave zone-b");

    // Nothing ready in zone-b: every ready endpoint is fair game.
    near2.stop().await;
    settle(channel.wait_for(|eps| {
        eps.iter()
            .filter(|e| e.locality.as_deref() == Some("zone-b"))
            .all(|e| !e.ready)
    }))
    .await;
    for _ in 0..100 {
        check(&channel)
            .await
            .expect("zone-a serves once zone-b has nothing ready");
    }
    assert_eq!(
        far.calls(),
        100,
        "expected every call to fall back to zone-a"
    );
    let stats = channel.stats();
    assert_eq!(stats.failures, 0, "expected no failed attempt: {stats:?}");
}
