//! The order of registry calls at start and stop, checked with mockall.

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use discovery_core::mock::MockRegistry;
use discovery_core::{CheckSpec, Error};
use grpc_register::{CheckKind, Registered};
use health::{SERVER, ServingStatus};
use mockall::Sequence;
use tonic::transport::Server;

fn listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

#[tokio::test]
async fn registers_after_serving_and_deregisters_before_closing() {
    let mut registry = MockRegistry::new();
    let mut order = Sequence::new();
    let port = Arc::new(Mutex::new(0u16));
    let health_slot: Arc<Mutex<Option<health::Health>>> = Arc::default();

    let (p, h) = (port.clone(), health_slot.clone());
    registry
        .expect_register()
        .times(1)
        .in_sequence(&mut order)
        .returning(move |reg| {
            let inst = &reg.instance;
            *p.lock().unwrap() = inst.port;
            assert_ne!(inst.port, 0, "the bound port is registered, not 0");
            assert_eq!(
                inst.host, "127.0.0.1",
                "the concrete listen address is advertised"
            );
            assert!(listening(inst.port), "listener is bound before register");
            let health = h.lock().unwrap().clone().expect("health handle");
            assert_eq!(
                health.status(SERVER),
                Some(ServingStatus::Serving),
                "health is SERVING before register"
            );
            assert_eq!(
                reg.check,
                Some(
                    CheckSpec::grpc(inst.authority())
                        .interval(Duration::from_secs(1))
                        .timeout(CheckSpec::DEFAULT_TIMEOUT)
                ),
                "a gRPC check against the server's own health service"
            );
            Ok(())
        });
    let (p, h) = (port.clone(), health_slot.clone());
    registry
        .expect_deregister()
        .times(1)
        .in_sequence(&mut order)
        .returning(move |id| {
            let port = *p.lock().unwrap();
            assert_eq!(id, format!("adder-127.0.0.1-{port}"), "default id");
            let health = h.lock().unwrap().clone().expect("health handle");
            assert_eq!(
                health.status(SERVER),
                Some(ServingStatus::NotServing),
                "NOT_SERVING before deregister"
            );
            assert!(listening(port), "still listening while deregistering");
            Ok(())
        });

    registry.expect_is_registered().returning(|_| Ok(true));
    let builder = Registered::builder(registry, "adder")
        .check_interval(Duration::from_secs(1))
        .drain(Duration::from_millis(10));
    *health_slot.lock().unwrap() = Some(builder.health());
    let running = builder
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .expect("server starts");
    let port = running.local_addr().port();
    assert!(listening(port), "serving after start");
    running.stop().await.expect("clean stop");
    assert!(!listening(port), "listener closed after stop");
}

#[tokio::test]
async fn a_registry_that_is_down_at_start_does_not_stop_the_server() {
    let mut registry = MockRegistry::new();
    let attempts = Arc::new(Mutex::new(0u32));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let a = attempts.clone();
    registry.expect_register().returning(move |_| {
        let mut n = a.lock().unwrap();
        *n += 1;
        if *n < 3 {
            Err(Error::unavailable(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "registry down",
            )))
        } else {
            let _ = tx.send(());
            Ok(())
        }
    });
    registry.expect_deregister().returning(|_| Ok(()));
    registry.expect_is_registered().returning(|_| Ok(true));

    let running = Registered::builder(registry, "adder")
        .drain(Duration::ZERO)
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .expect("starts although the registry is down");
    assert!(listening(running.local_addr().port()), "serves meanwhile");
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("registered once the registry answers");
    assert_eq!(*attempts.lock().unwrap(), 3, "two failures, then success");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn ttl_mode_reports_health_and_reregisters_when_forgotten() {
    let mut registry = MockRegistry::new();
    let registers = Arc::new(Mutex::new(0u32));
    let r = registers.clone();
    registry.expect_register().returning(move |reg| {
        assert!(
            matches!(reg.check, Some(CheckSpec::Ttl { .. })),
            "TTL check"
        );
        *r.lock().unwrap() += 1;
        Ok(())
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut reports = 0;
    registry
        .expect_report()
        .returning(move |_, status, output| {
            reports += 1;
            let _ = tx.send((status, output.to_owned()));
            if reports == 1 {
                Err(Error::NotFound {
                    what: "check".into(),
                })
            } else {
                Ok(())
            }
        });
    registry.expect_deregister().returning(|_| Ok(()));

    let running = Registered::builder(registry, "adder")
        .check(CheckKind::Ttl(Duration::from_millis(300)))
        .drain(Duration::ZERO)
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
    let (status, output) = rx.recv().await.expect("a first report");
    assert_eq!(status, discovery_core::HealthStatus::Passing);
    assert!(output.contains("SERVING"), "output says why: {output}");
    let _ = rx.recv().await.expect("a second report");
    assert_eq!(
        *registers.lock().unwrap(),
        2,
        "a NotFound report leads to one re-registration"
    );

    running.health().set_not_serving(SERVER).await;
    loop {
        let (status, _) = rx.recv().await.expect("more reports");
        if status == discovery_core::HealthStatus::Critical {
            break;
        }
    }
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_forgotten_registration_is_restored_within_one_interval() {
    let mut registry = MockRegistry::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    registry.expect_register().returning(move |reg| {
        let _ = tx.send(reg.instance.id.clone());
        Ok(())
    });
    // The registry answers "unknown" once, as an agent that restarted empty would.
    let mut asked = 0;
    registry.expect_is_registered().returning(move |_| {
        asked += 1;
        Ok(asked != 2)
    });
    registry.expect_deregister().returning(|_| Ok(()));
    let running = Registered::builder(registry, "adder")
        .check_interval(Duration::from_millis(100))
        .drain(Duration::ZERO)
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
    let first = rx.recv().await.expect("registered at start");
    let again = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("registered again after the registry forgot it")
        .unwrap();
    assert_eq!(first, again, "the same instance");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn several_services_on_one_server_register_under_their_own_names() {
    let mut registry = MockRegistry::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    registry.expect_register().returning(move |reg| {
        assert_eq!(
            reg.instance.locality.as_deref(),
            Some("zone-b"),
            "locality is registered"
        );
        s.lock()
            .unwrap()
            .push((reg.instance.service.clone(), reg.check.clone()));
        Ok(())
    });
    registry.expect_is_registered().returning(|_| Ok(true));
    let deregistered = Arc::new(Mutex::new(Vec::new()));
    let d = deregistered.clone();
    registry.expect_deregister().returning(move |id| {
        d.lock().unwrap().push(id.to_owned());
        Ok(())
    });
    let builder = Registered::builder(registry, "adder")
        .also_register("multiplier", "calc.Multiplier")
        .locality("zone-b")
        .drain(Duration::ZERO);
    let health = builder.health();
    let running = builder
        .start(
            Server::builder().add_routes(Default::default()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
    let port = running.local_addr().port();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, "adder");
    assert_eq!(seen[1].0, "multiplier");
    let target = match &seen[1].1 {
        Some(CheckSpec::Grpc { target, .. }) => target.clone(),
        other => panic!("expected a gRPC check, got {other:?}"),
    };
    assert_eq!(
        target,
        format!("127.0.0.1:{port}/calc.Multiplier"),
        "the check asks about the service's own health"
    );
    assert_eq!(
        health.status("calc.Multiplier"),
        Some(ServingStatus::Serving)
    );
    running.stop().await.unwrap();
    assert_eq!(
        *deregistered.lock().unwrap(),
        [
            format!("adder-127.0.0.1-{port}"),
            format!("multiplier-127.0.0.1-{port}")
        ],
        "both deregistered at stop"
    );
}
