//! A TCP proxy in front of an agent: it counts the connections open through it (now, at
//! most, in all) and records every byte sent to the agent, so a test can see what the
//! agent sees: how many connections a client holds, and the requests it sends (over plain
//! HTTP). Proxies for processes on one host may also count into the host's totals.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
pub struct Counts {
    pub open: AtomicUsize,
    pub peak: AtomicUsize,
    pub accepted: AtomicUsize,
    sent: Mutex<Vec<u8>>,
}

impl Counts {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Everything sent to the agent so far, as text.
    pub fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }

    /// The request heads sent so far (request line and headers, lower-cased names kept).
    pub fn request_heads(&self) -> Vec<String> {
        self.sent()
            .split("\r\n\r\n")
            .filter(|head| head.contains(" HTTP/1.1"))
            .map(str::to_owned)
            .collect()
    }
}

/// Starts a proxy to `upstream`; returns its address and counts.
pub async fn start(upstream: SocketAddr) -> (SocketAddr, Arc<Counts>) {
    start_on_host(upstream, Arc::default()).await
}

/// Starts a proxy to `upstream` whose connections also count into `host`'s open and peak.
pub async fn start_on_host(upstream: SocketAddr, host: Arc<Counts>) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let counts = c.clone();
            let host = host.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for counts in [&counts, &host] {
                    counts.accepted.fetch_add(1, Ordering::SeqCst);
                    let now = counts.open.fetch_add(1, Ordering::SeqCst) + 1;
                    counts.peak.fetch_max(now, Ordering::SeqCst);
                }
                pipe(client, server, &counts).await;
                for counts in [&counts, &host] {
                    counts.open.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, counts)
}

/// Copies both ways until either side closes, recording what goes to the agent.
async fn pipe(client: TcpStream, server: TcpStream, counts: &Counts) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    counts.sent.lock().unwrap().extend_from_slice(&buf[..n]);
                    if server_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server_tx.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
    };
    // The connection counts as open until both directions are done: the agent sees it
    // until it reads the client's close.
    tokio::join!(up, down);
}
