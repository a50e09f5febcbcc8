//! The header-read timeout: a connection that has started a request must finish its
//! request head within the timeout, or it is closed. Uses nothing else of the crate.
//!
//! Hyper's own `header_read_timeout` starts its clock whenever the connection waits for a
//! head, so it also closes idle keep-alive connections, which Consul (no `IdleTimeout`)
//! keeps open as long as the client does. This clock starts only at the first byte of a
//! request head, so idle connections are left alone and only a started, unfinished head is
//! on the clock — the trickling client's.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

// === HeadSeen ===

/// Set by the connection's service when a request head has been parsed (a request is in
/// progress), cleared by the connection when it writes the answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadSeen(Arc<AtomicBool>);

impl HeadSeen {
    /// The head of a request was read: its clock stops.
    pub(crate) fn seen(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

// === HeadTimeout ===

/// A connection's I/O with the header-read clock.
///
/// The clock starts when bytes arrive while no request is in progress (the first bytes of
/// a head), stops when the service sees the head, and is off while the request and its
/// answer are under way (a slow body or a long blocking query are never cut). When it runs
/// out, reading fails with `TimedOut` and hyper closes the connection without an answer,
/// as Go's server does on `ReadHeaderTimeout`.
#[derive(Debug)]
pub(crate) struct HeadTimeout<T> {
    io: T,
    /// `None`: no clock.
    timeout: Option<Duration>,
    head_seen: HeadSeen,
    clock: Option<Pin<Box<Sleep>>>,
    running: bool,
}

impl<T> HeadTimeout<T> {
    pub(crate) fn new(io: T, timeout: Option<Duration>, head_seen: HeadSeen) -> HeadTimeout<T> {
        HeadTimeout {
            io,
            timeout,
            head_seen,
            clock: None,
            running: false,
        }
    }

    fn start_clock(&mut self) {
        let Some(timeout) = self.timeout else { return };
        let deadline = Instant::now() + timeout;
        match &mut self.clock {
            Some(clock) => clock.as_mut().reset(deadline),
            None => self.clock = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.running = true;
    }

    /// An answer is being written: the request is over, the next bytes start a new head.
    fn answered(&mut self) {
        self.head_seen.0.store(false, Ordering::Relaxed);
        self.running = false;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.head_seen.0.load(Ordering::Relaxed) {
            this.running = false;
        } else if !this.running && buf.filled().len() > before {
            this.start_clock();
        }
        if this.running
            && read.is_pending()
            && let Some(clock) = &mut this.clock
            && clock.as_mut().poll(cx).is_ready()
        {
            this.running = false;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not read within the header-read timeout",
            )));
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.answered();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.answered();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn without_a_timeout_a_started_head_may_take_forever() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = HeadTimeout::new(server, None, HeadSeen::default());
        client.write_all(b"G").await.expect("write");
        let mut buf = [0u8; 8];
        conn.read_exact(&mut buf[..1]).await.expect("a byte");
        let read = tokio::time::timeout(10 * TIMEOUT, conn.read(&mut buf)).await;
        assert!(read.is_err(), "no timeout configured: still waiting");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_never_on_the_clock() {
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = HeadTimeout::new(server, Some(TIMEOUT), HeadSeen::default());
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(10 * TIMEOUT, conn.read(&mut buf)).await;
        assert!(
            read.is_err(),
            "no bytes, no clock: still waiting after 10x the timeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_must_finish_within_the_timeout() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = HeadTimeout::new(server, Some(TIMEOUT), HeadSeen::default());
        client.write_all(b"G").await.expect("write");
        let mut buf = [0u8; 8];
        assert_eq!(conn.read(&mut buf).await.expect("a byte"), 1);
        let start = Instant::now();
        let err = conn.read(&mut buf).await.expect_err("the clock runs out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), TIMEOUT, "closed exactly at the timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn trickling_bytes_do_not_restart_the_clock() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = HeadTimeout::new(server, Some(TIMEOUT), HeadSeen::default());
        let start = Instant::now();
        let trickle = tokio::spawn(async move {
            loop {
                if client.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut buf = [0u8; 8];
        let err = loop {
            match conn.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            start.elapsed() <= TIMEOUT + Duration::from_secs(1),
            "a byte a second does not keep the head alive: {:?}",
            start.elapsed()
        );
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_and_the_idle_time_after_its_answer_are_off_the_clock() {
        let (mut client, server) = tokio::io::duplex(64);
        let head_seen = HeadSeen::default();
        let mut conn = HeadTimeout::new(server, Some(TIMEOUT), head_seen.clone());
        let mut buf = [0u8; 8];
        client.write_all(b"GET").await.expect("write");
        conn.read_exact(&mut buf[..3])
            .await
            .expect("the head's bytes");
        head_seen.seen();
        client.write_all(b"body").await.expect("write");
        conn.read_exact(&mut buf[..4]).await.expect("body bytes");
        let waited = tokio::time::timeout(3 * TIMEOUT, conn.read(&mut buf)).await;
        assert!(
            waited.is_err(),
            "a long request (a blocking query) is not cut"
        );
        conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("answer");
        let idle = tokio::time::timeout(3 * TIMEOUT, conn.read(&mut buf)).await;
        assert!(idle.is_err(), "idle keep-alive after the answer is not cut");
        client.write_all(b"G").await.expect("write");
        conn.read_exact(&mut buf[..1])
            .await
            .expect("the next head's first byte");
        let err = conn
            .read(&mut buf)
            .await
            .expect_err("the next head is on the clock");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
