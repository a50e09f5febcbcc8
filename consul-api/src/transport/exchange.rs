//! The seam under the transport: an [`Exchange`] answers requests in process instead of the
//! network, so a test or a model can stand in for the agent (on paused time, since no socket
//! is involved) and see on which connection each request travels. Uses only the error
//! type's `BoxError`.

use bytes::Bytes;
use futures_util::future::BoxFuture;

pub use crate::error::BoxError;

/// A connection of a transport, by number. Over HTTP/1.1 a connection carries one request at
/// a time; over HTTP/2 many. [`ConnectionId::PROBE`] is the one that learns the protocol of
/// an HTTPS agent before any other request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub usize);

impl ConnectionId {
    /// The connection of the first request to an HTTPS agent, which learns from the answer's
    /// version whether the agent speaks HTTP/2; closed once it has.
    pub const PROBE: ConnectionId = ConnectionId(usize::MAX);
}

/// Answers a transport's requests in process. The answer's version tells an HTTPS
/// transport which protocol the agent speaks (see [`ConnectionId::PROBE`]).
pub trait Exchange: Send + Sync + 'static {
    /// Answers `request`, sent on connection `connection`.
    fn exchange(
        &self,
        connection: ConnectionId,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, BoxError>>;
}
