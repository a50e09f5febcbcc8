//! A TCP proxy in front of a backend that can fail the way processes do: freeze (SIGSTOP:
//! the kernel still accepts connections, nothing is read or written, every socket stays
//! open), thaw (SIGCONT), or die (SIGKILL: every connection reset, new ones refused); or
//! the way a network path does: the connections open now go silent, new ones work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxied process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Running,
    Frozen,
    Killed,
}

/// A proxy on a fresh port forwarding to one backend.
pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    /// Connections numbered below this pass nothing.
    stuck_below: Arc<watch::Sender<u64>>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
}

impl FaultProxy {
    /// Starts forwarding to `backend`.
    pub async fn start(backend: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("a local address");
        let mode = Arc::new(watch::Sender::new(Mode::Running));
        let stuck_below = Arc::new(watch::Sender::new(0u64));
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn({
            let (mode, stuck_below, accepted) =
                (mode.clone(), stuck_below.clone(), accepted.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let _ = client.set_nodelay(true);
                    if *mode.borrow() == Mode::Killed {
                        reset(client);
                        continue;
                    }
                    let id = accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let gates = Gates {
                        id,
                        mode: mode.subscribe(),
                        stuck_below: stuck_below.subscribe(),
                    };
                    tokio::spawn(forward(client, backend, gates));
                }
            }
        });
        FaultProxy {
            addr,
            mode,
            stuck_below,
            accepted,
        }
    }

    /// Silences the connections open now (they pass nothing from here on, and stay
    /// open); connections made later work.
    pub fn silence_open_connections(&self) {
        let open = self.accepted.load(std::sync::atomic::Ordering::SeqCst);
        self.stuck_below.send_replace(open);
    }

    /// Connections made through the proxy so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops passing bytes either way, keeping every connection open, and leaves new
    /// connections accepted but unanswered.
    pub fn freeze(&self) {
        self.mode.send_replace(Mode::Frozen);
    }

    /// Passes bytes again, the held ones first.
    pub fn thaw(&self) {
        self.mode.send_replace(Mode::Running);
    }

    /// Resets every connection (RST, as the kernel does for a killed process) and resets
    /// new ones at once.
    pub fn kill(&self) {
        self.mode.send_replace(Mode::Killed);
    }
}

/// Closes `stream` with a RST instead of a FIN.
#[allow(deprecated)] // With a zero linger, close never blocks: it sends the RST at once.
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// What decides whether one connection passes bytes.
struct Gates {
    id: u64,
    mode: watch::Receiver<Mode>,
    stuck_below: watch::Receiver<u64>,
}

/// Forwards one connection until either side closes or the proxy is killed.
async fn forward(mut client: TcpStream, backend: SocketAddr, gates: Gates) {
    let Gates {
        id,
        mut mode,
        mut stuck_below,
    } = gates;
    let Ok(mut server) = TcpStream::connect(backend).await else {
        reset(client);
        return;
    };
    let _ = server.set_nodelay(true);
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    loop {
        let now = *mode.borrow_and_update();
        match now {
            Mode::Killed => {
                reset(client);
                reset(server);
                return;
            }
            Mode::Frozen => {
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Mode::Running if id < *stuck_below.borrow_and_update() => {
                tokio::select! {
                    changed = mode.changed() => if changed.is_err() { return },
                    changed = stuck_below.changed() => if changed.is_err() { return },
                }
                continue;
            }
            Mode::Running => {}
        }
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = stuck_below.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            read = client.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if server.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
            },
            read = server.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if client.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}
