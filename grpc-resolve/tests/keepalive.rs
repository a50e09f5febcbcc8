//! HTTP/2 keepalive: a connection whose peer goes silent (a partition, a frozen host: no
//! FIN, no RST) is closed once a ping goes unanswered, and the endpoint reconnects. Without
//! keepalive nothing would ever notice, since TCP itself stays quiet.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, SERVICE, check, settle, wait_ready};
use discovery_core::{MemoryRegistry, Registration, Registry, ServiceInstance};
use grpc_resolve::DiscoveredChannel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy in front of a backend that can go silent: once frozen, it stops passing
/// bytes either way but keeps every connection open.
struct Proxy {
    addr: SocketAddr,
    frozen: Arc<watch::Sender<bool>>,
    accepted: Arc<watch::Sender<usize>>,
}

impl Proxy {
    async fn start(backend: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("a local address");
        let frozen = Arc::new(watch::Sender::new(false));
        let accepted = Arc::new(watch::Sender::new(0usize));
        tokio::spawn({
            let (frozen, accepted) = (frozen.clone(), accepted.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.send_modify(|n| *n += 1);
                    let server = TcpStream::connect(backend).await.expect("the backend");
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pipe(client_read, server_write, frozen.subscribe()));
                    tokio::spawn(pipe(server_read, client_write, frozen.subscribe()));
                }
            }
        });
        Proxy {
            addr,
            frozen,
            accepted,
        }
    }

    fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

/// Copies `from` to `to` until either ends or the proxy freezes; a frozen pipe holds its
/// halves open forever.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let until_frozen = async move {
        // The borrow `wait_for` returns must not live across an await.
        let _ = frozen.wait_for(|frozen| *frozen).await.is_ok();
    };
    let mut until_frozen = std::pin::pin!(until_frozen);
    loop {
        tokio::select! {
            () = &mut until_frozen => break,
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    // Frozen: keep both halves open, passing nothing.
    std::future::pending::<()>().await;
    drop((from, to));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_ping_closes_a_silent_connection_and_the_endpoint_reconnects() {
    let backend = Backend::start().await;
    let proxy = Proxy::start(backend.addr).await;
    let registry = MemoryRegistry::new();
    registry
        .register(&Registration::new(ServiceInstance::new(
            "silent",
            SERVICE,
            "127.0.0.1",
            proxy.addr.port(),
        )))
        .await
        .expect("register");
    let channel = DiscoveredChannel::builder(registry, SERVICE)
        .http2_keep_alive_interval(Duration::from_millis(100))
        .keep_alive_timeout(Duration::from_millis(200))
        .keep_alive_while_idle(true)
        .build();
    wait_ready(&channel, 1).await;
    check(&channel).await.expect("a call through the proxy");
    assert_eq!(*proxy.accepted.borrow(), 1, "one connection so far");

    proxy.freeze();
    // The client gives up on the silent connection and makes a new one.
    let mut accepted = proxy.accepted.subscribe();
    settle(accepted.wait_for(|n| *n >= 2))
        .await
        .expect("the proxy lives");
}
