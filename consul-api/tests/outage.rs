//! A watch through an agent outage: bounded requests while it is down, prompt recovery after.
//! Real time (about 30 s), against consul-dev, which can be stopped and started again on the
//! same port.

use std::time::Duration;

use consul_api::agent::{CheckDefinition, ServiceRegistration};
use consul_api::{Client, Config, ConsulRegistry};
use discovery_core::{Query, Resolver, Update};
use futures_util::StreamExt;

async fn register(client: &Client, name: &str) {
    let mut reg = ServiceRegistration::new(name);
    reg.port = Some(7000);
    let mut check = CheckDefinition::ttl(Duration::from_secs(60));
    check.status = Some(consul_api::CheckStatus::Passing);
    reg.check = Some(check);
    client.agent().register_service(&reg).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_backs_off_while_consul_is_down_and_resumes_when_it_returns() {
    let agent = consul_dev::DevAgent::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = agent.addr();
    let client = Client::new(Config::new(&agent.http_addr()).unwrap()).unwrap();
    let registry = ConsulRegistry::new(client.clone());
    register(&client, "web").await;
    let mut updates = registry.watch(&Query::new("web"));
    match updates.next().await {
        Some(Update::Snapshot(s)) => assert_eq!(s.len(), 1),
        other => panic!("expected the instance, got {other:?}"),
    }

    agent.shutdown().await;
    let down_at = registry.watch_hub().requests_sent();
    let outage = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + outage;
    let mut errors = 0;
    // Drain the stream through the outage: error items arrive, the stream goes on.
    while let Ok(item) = tokio::time::timeout_at(deadline, updates.next()).await {
        match item {
            Some(Update::Error(err)) => {
                assert!(
                    err.is_retryable(),
                    "an unreachable agent is retryable: {err:?}"
                );
                errors += 1;
            }
            Some(other) => panic!("nothing but errors while down, got {other:?}"),
            None => panic!("the stream must not end"),
        }
    }
    let during = registry.watch_hub().requests_sent() - down_at;
    println!("requests during a {outage:?} outage: {during} ({errors} error items)");
    assert!(errors > 0, "the outage is reported as error items");
    assert!(
        during <= 80,
        "backoff bounds the requests: {during} in {outage:?} (about one a second expected)"
    );

    // The agent returns with fresh state, on the same port.
    let agent = consul_dev::DevAgent::start(addr)
        .await
        .expect("restart on the same port");
    let back = tokio::time::Instant::now();
    register(&client, "web").await;
    let recovered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match updates.next().await {
                Some(Update::Snapshot(s)) if !s.is_empty() => return s,
                Some(_) => continue,
                None => panic!("the stream must not end"),
            }
        }
    })
    .await
    .expect("the watch resumes once the agent is back");
    let took = back.elapsed();
    println!("watch resumed {took:?} after the agent returned");
    assert_eq!(recovered[0].port, 7000);
    assert!(
        took < Duration::from_secs(3),
        "resumes within about a second: took {took:?}"
    );
    agent.shutdown().await;
}
