//! A TCP proxy in front of a backend that can fail the way processes do: freeze (SIGSTOP:
//! the kernel still accepts connections, nothing is read or written, every socket stays
//! open), thaw (SIGCONT), or die (SIGKILL: every connection reset, new ones refused).

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
}

impl FaultProxy {
    /// Starts forwarding to `backend`.
    pub async fn start(backend: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("a local address");
        let mode = Arc::new(watch::Sender::new(Mode::Running));
        tokio::spawn({
            let mode = mode.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let _ = client.set_nodelay(true);
                    if *mode.borrow() == Mode::Killed {
                        reset(client);
                        continue;
                    }
                    tokio::spawn(forward(client, backend, mode.subscribe()));
                }
            }
        });
        FaultProxy { addr, mode }
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

/// Forwards one connection until either side closes or the proxy is killed.
async fn forward(mut client: TcpStream, backend: SocketAddr, mut mode: watch::Receiver<Mode>) {
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
            Mode::Running => {}
        }
        tokio::select! {
            changed = mode.changed() => {
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
