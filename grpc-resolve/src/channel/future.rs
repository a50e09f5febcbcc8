//! The future a call returns.
//!
//! May use: `error`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;

use crate::error::Error;

type Inner = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Error>> + Send>>;

/// The response of a call through a [`DiscoveredChannel`](crate::DiscoveredChannel).
pub struct ResponseFuture {
    inner: Inner,
}

// === impl ResponseFuture ===

impl ResponseFuture {
    pub(crate) fn new(
        future: impl Future<Output = Result<http::Response<Body>, Error>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            inner: Box::pin(future),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<Body>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
