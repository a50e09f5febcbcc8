//! A server that dies without its stop sequence (SIGKILL, OOM) never deregisters: its check
//! turns critical, and the registry removes it after its deregister-after, which
//! grpc-register sets by default. Against consul-dev with the test-only short reaper
//! timings (Consul's are a 30 s reaper and a 1 min floor).

mod common;

use std::time::Duration;

use common::{check_until, dev_agent, dev_agent_with, http_get, registered, start};
use consul_api::CheckStatus;
use grpc_register::{Builder, Registered};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_is_reaped_once_critical_for_its_deregister_after() {
    let (_agent, registry) = dev_agent_with(
        consul_dev::Config::default()
            .node_name("dev")
            .reaper_interval(Duration::from_millis(200))
            .min_deregister_after(Duration::from_secs(1)),
    )
    .await;
    let after = Duration::from_secs(2);
    let running = start(
        Registered::builder(registry.clone(), "doomed")
            .check_interval(Duration::from_secs(1))
            .deregister_after(after),
    )
    .await;
    let id = running.id().to_owned();
    check_until(&registry, &id, "passing", |c| {
        c.status == CheckStatus::Passing
    })
    .await;

    // The kill: no NOT_SERVING, no deregistration; the listener closes, the keep-alive ends.
    drop(running);
    check_until(&registry, &id, "critical once nothing answers", |c| {
        c.status == CheckStatus::Critical
    })
    .await;
    let critical = Instant::now();
    assert!(
        registered(&registry, &id).await,
        "the dead server's registration is left behind, critical"
    );
    let deadline = critical + after + Duration::from_secs(5);
    while registered(&registry, &id).await {
        assert!(
            Instant::now() < deadline,
            "still registered {:?} after turning critical (deregister-after {after:?})",
            critical.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = critical.elapsed();
    println!("reaped {took:?} after turning critical (deregister-after {after:?}, reaper 200 ms)");
    assert!(
        took + Duration::from_millis(100) >= after,
        "not removed before it was critical for its deregister-after: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_consul_is_told_to_reap_after_ten_minutes() {
    assert_eq!(Builder::DEFAULT_DEREGISTER_AFTER, Duration::from_secs(600));
    let (agent, registry) = dev_agent().await;
    let running = start(Registered::builder(registry.clone(), "plain").drain(Duration::ZERO)).await;
    let (code, body) = http_get(agent.addr(), "/v1/agent/checks").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let checks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let check = checks
        .as_object()
        .unwrap()
        .values()
        .find(|c| c["ServiceID"] == running.id())
        .expect("the server's check");
    assert_eq!(
        check["Definition"]["DeregisterCriticalServiceAfter"], "10m0s",
        "the default reaches the agent: {check}"
    );
    running.stop().await.unwrap();
}
