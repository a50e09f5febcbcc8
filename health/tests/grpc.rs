//! The statuses a `Health` handle sets are what a grpc.health.v1 client sees.

use std::net::SocketAddr;

use health::{Health, SERVER};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;

async fn serve() -> (Health, HealthClient<Channel>) {
    let (health, server) = Health::start().await;
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .expect("bind loopback")
        .with_nodelay(Some(true));
    let addr: SocketAddr = incoming.local_addr().expect("bound address");
    tokio::spawn(
        Server::builder()
            .add_service(server)
            .serve_with_incoming(incoming),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the health server");
    (health, HealthClient::new(channel))
}

async fn check(client: &mut HealthClient<Channel>, service: &str) -> Result<Wire, tonic::Code> {
    client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|r| r.into_inner().status())
        .map_err(|s| s.code())
}

#[tokio::test]
async fn clients_see_what_the_handle_sets() {
    let (health, mut client) = serve().await;
    assert_eq!(
        check(&mut client, SERVER).await,
        Ok(Wire::NotServing),
        "starts not serving"
    );
    assert_eq!(
        check(&mut client, "adder.Adder").await,
        Err(tonic::Code::NotFound),
        "an unknown service is NotFound"
    );

    health.set_serving(SERVER).await;
    health.set_serving("adder.Adder").await;
    assert_eq!(check(&mut client, SERVER).await, Ok(Wire::Serving));
    assert_eq!(check(&mut client, "adder.Adder").await, Ok(Wire::Serving));

    health.shutdown().await;
    assert_eq!(
        check(&mut client, SERVER).await,
        Ok(Wire::NotServing),
        "shutdown covers the server"
    );
    assert_eq!(
        check(&mut client, "adder.Adder").await,
        Ok(Wire::NotServing),
        "shutdown covers every service"
    );
}

#[tokio::test]
async fn watchers_see_indicator_changes() {
    use health::{Probe, Scope};
    let (health, mut client) = serve().await;
    health.set_serving(SERVER).await;
    let mut stream = client
        .watch(HealthCheckRequest {
            service: SERVER.to_owned(),
        })
        .await
        .expect("watch starts")
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().status();
    assert_eq!(first, Wire::Serving);
    health
        .report("db", Scope::All, Probe::down("connection refused"))
        .await;
    let next = stream.message().await.unwrap().unwrap().status();
    assert_eq!(next, Wire::NotServing, "a down indicator reaches watchers");
    health.report("db", Scope::All, Probe::up("ok")).await;
    let next = stream.message().await.unwrap().unwrap().status();
    assert_eq!(next, Wire::Serving, "and so does its recovery");
}
