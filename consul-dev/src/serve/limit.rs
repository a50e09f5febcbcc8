//! Consul's per-client connection limit (`limits.http_max_conns_per_client`, enforced by
//! go-connlimit): a count of open connections per peer IP, and the raw 429 the connection
//! over the limit gets before it is closed. Uses nothing else of the crate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Exactly what Consul's `HTTPConnStateFuncWithDefault429Handler` writes, byte for byte: no
/// `Date`, no ACL-policy header, an 81-byte body.
pub(crate) const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
Content-Type: text/plain\r\n\
Content-Length: 81\r\n\
Connection: close\r\n\
\r\n\
Your IP is issuing too many concurrent connections, please rate limit your calls\n";

/// How long Consul lets the 429 take to write (its handler's write deadline).
const WRITE_DEADLINE: Duration = Duration::from_millis(10);

/// How long the refused connection's request is read and thrown away after the 429, so
/// that closing a socket with unread bytes does not reset it and destroy the 429 before
/// the client has read it. Go closes at once; the client sees the same answer either way,
/// only more reliably here.
const DRAIN: Duration = Duration::from_millis(100);

// === ConnLimiter ===

/// Open connections per peer IP, against a limit (0: none, as in Consul).
///
/// Every accepted connection counts from accept to close, idle keep-alive ones and those
/// still sending their request head included, as go-connlimit counts from `StateNew`. A
/// refused connection does not count.
#[derive(Debug, Clone)]
pub(crate) struct ConnLimiter {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnLimiter {
    pub(crate) fn new(limit: usize) -> ConnLimiter {
        ConnLimiter {
            limit,
            open: Arc::default(),
        }
    }

    /// Counts a new connection from `ip`, or `None` when `ip` already has the limit open.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<ConnPermit> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_default();
        if self.limit > 0 && *count >= self.limit {
            return None;
        }
        *count += 1;
        tracing::trace!(%ip, open = *count, "connection admitted");
        Some(ConnPermit {
            ip,
            open: Arc::clone(&self.open),
        })
    }

    /// How many connections `ip` has open.
    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip).copied().unwrap_or(0)
    }
}

// === ConnPermit ===

/// One counted connection; dropping it (when the connection closes) uncounts it.
#[derive(Debug)]
pub(crate) struct ConnPermit {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            tracing::trace!(ip = %self.ip, open = *count, "connection closed");
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Answers a connection over the limit as Consul does, before reading its request, and
/// closes it.
pub(crate) async fn refuse<T: AsyncRead + AsyncWrite + Unpin>(mut conn: T) {
    let written = tokio::time::timeout(WRITE_DEADLINE, async {
        conn.write_all(TOO_MANY_CONNECTIONS).await?;
        conn.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(DRAIN, async {
        while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn the_connection_over_the_limit_is_refused_until_one_closes() {
        let limiter = ConnLimiter::new(2);
        let first = limiter.admit(A).expect("first of two admitted");
        let _second = limiter.admit(A).expect("second of two admitted");
        assert!(
            limiter.admit(A).is_none(),
            "the third from one IP is refused"
        );
        assert!(
            limiter.admit(B).is_some(),
            "another IP has its own count, and a dropped permit uncounts at once"
        );
        drop(first);
        assert_eq!(limiter.open_from(A), 1, "closing one uncounts it");
        assert!(limiter.admit(A).is_some(), "room again after a close");
    }

    #[test]
    fn zero_means_no_limit_as_in_consul() {
        let limiter = ConnLimiter::new(0);
        let permits: Vec<_> = (0..1_000).filter_map(|_| limiter.admit(A)).collect();
        assert_eq!(permits.len(), 1_000, "no connection refused with limit 0");
        drop(permits);
        assert_eq!(limiter.open_from(A), 0, "every permit uncounted");
    }

    #[test]
    fn the_refusal_is_consuls_bytes() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert_eq!(
            body.len(),
            81,
            "Content-Length 81 is the body's length: {body:?}"
        );
        assert_eq!(
            head,
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n\
             Content-Length: 81\r\nConnection: close"
        );
    }
}
