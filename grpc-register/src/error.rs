//! The crate's error type. Uses nothing else of the crate.

/// Why a registered server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No address to advertise could be determined (the listener is on a wildcard address
    /// and no route to the registry was found); set one with `advertise`.
    #[error("cannot determine an address to advertise")]
    Advertise(#[source] std::io::Error),
    /// The tonic server failed.
    #[error("grpc server failed")]
    Serve(#[source] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("grpc server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}
