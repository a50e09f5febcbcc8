//! A TCP proxy in front of an agent: it counts the connections open through it (now, at
//! most, in all) and records every byte sent to the agent, so a test can see what the
//! agent sees: how many connections a client holds, and the requests it sends (over plain
//! HTTP). Proxies may share a [`Limit`], which refuses connections over it as Consul's
//! `limits.http_max_conns_per_client` does (go-connlimit): idle connections count, and the
//! one over the limit gets a raw `429 Too Many Requests` and is closed.

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

/// Connections open through all the proxies sharing it, against a maximum.
#[derive(Debug)]
pub struct Limit {
    max: usize,
    open: AtomicUsize,
    pub peak: AtomicUsize,
    pub refused: AtomicUsize,
}

impl Limit {
    /// Consul's default: 200 connections per client IP address.
    pub fn consul_default() -> Arc<Self> {
        Self::new(200)
    }

    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Limit {
            max,
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        })
    }

    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Go-connlimit's answer to the connection over the limit.
const REFUSAL: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 81\r\nConnection: close\r\n\r\nYour IP is issuing too many concurrent connections, please rate limit your calls\n";

/// Starts a proxy to `upstream`; returns its address and counts.
pub async fn start(upstream: SocketAddr) -> (SocketAddr, Arc<Counts>) {
    start_limited(upstream, Limit::new(usize::MAX)).await
}

/// Starts a proxy to `upstream` whose connections count against `limit`.
pub async fn start_limited(upstream: SocketAddr, limit: Arc<Limit>) -> (SocketAddr, Arc<Counts>) {
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
            let limit = limit.clone();
            tokio::spawn(async move {
                let host = limit.open.fetch_add(1, Ordering::SeqCst) + 1;
                if host > limit.max {
                    limit.open.fetch_sub(1, Ordering::SeqCst);
                    limit.refused.fetch_add(1, Ordering::SeqCst);
                    let mut client = client;
                    let _ = client.write_all(REFUSAL).await;
                    let _ = client.shutdown().await;
                    return;
                }
                limit.peak.fetch_max(host, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream).await else {
                    limit.open.fetch_sub(1, Ordering::SeqCst);
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                counts.accepted.fetch_add(1, Ordering::SeqCst);
                let now = counts.open.fetch_add(1, Ordering::SeqCst) + 1;
                counts.peak.fetch_max(now, Ordering::SeqCst);
                pipe(client, server, &counts).await;
                counts.open.fetch_sub(1, Ordering::SeqCst);
                limit.open.fetch_sub(1, Ordering::SeqCst);
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
