//! The response body of a call: keeps the call in flight on its endpoint until the response
//! ends, and reads the gRPC status from the trailers.
//!
//! Counting a call until the body ends (not just until the headers) makes a long server
//! stream count as load, and holding a handle on the endpoint's connection keeps the
//! connection of a removed endpoint open until its last stream is done.
//!
//! May use: `classify` (reading the status), the pool (where the call is counted).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::classify::{Verdict, verdict};
use crate::pool::{Connection, Endpoint, Picked, Pool};

/// One call in flight on one endpoint; dropping it ends the call's load.
pub(crate) struct InFlight {
    pool: Arc<Pool>,
    endpoint: Arc<Endpoint>,
    /// The call's one handle on the endpoint's connection: it sends the request, then stays
    /// held so that the connection of a removed endpoint stays open for this call.
    pub(crate) connection: Connection,
    /// Which of the endpoint's connections `connection` is.
    pub(crate) generation: u64,
    judged: bool,
}

// === impl InFlight ===

impl InFlight {
    pub(crate) fn new(pool: Arc<Pool>, picked: Picked) -> Self {
        InFlight {
            pool,
            endpoint: picked.endpoint,
            connection: picked.connection,
            generation: picked.generation,
            judged: false,
        }
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Records the call's outcome, once.
    pub(crate) fn judge(&mut self, verdict: Verdict) {
        if std::mem::replace(&mut self.judged, true) {
            return;
        }
        match verdict {
            Verdict::Healthy => self.pool.record_success(&self.endpoint),
            Verdict::Faulted => self.pool.record_fault(&self.endpoint),
            Verdict::Unavailable => self.pool.record_failure(&self.endpoint),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pool.release(&self.endpoint);
    }
}

/// A response body that ends its call's in-flight count when it ends or is dropped.
pub(crate) struct ResponseBody {
    inner: Incoming,
    call: Option<InFlight>,
}

// === impl ResponseBody ===

impl ResponseBody {
    pub(crate) fn new(inner: Incoming, call: InFlight) -> Self {
        ResponseBody {
            inner,
            call: Some(call),
        }
    }

    fn finish(&mut self, verdict: Verdict) {
        if let Some(mut call) = self.call.take() {
            call.judge(verdict);
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let verdict = verdict(trailers).unwrap_or(Verdict::Healthy);
                    self.finish(verdict);
                }
            }
            // A stream cut mid-way is the endpoint's (or the network's) failure.
            Poll::Ready(Some(Err(_))) => self.finish(Verdict::Unavailable),
            Poll::Ready(None) => self.finish(Verdict::Healthy),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
