//! Which address to publish for a listener.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// The local IP address the operating system would use to reach `target`.
///
/// Connecting a UDP socket sends nothing: it only asks the routing table which interface
/// (and so which source address) leads to `target`. This is the address a peer on that
/// network can reach us at, and unlike enumerating interfaces it picks the right one on a
/// multi-homed host. IPv6 targets yield IPv6 addresses.
pub fn local_ip_toward(target: SocketAddr) -> io::Result<IpAddr> {
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(target)?;
    let ip = socket.local_addr()?.ip();
    if ip.is_unspecified() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no local address routes to {target}"),
        ));
    }
    Ok(ip)
}

/// The host to register for a listener bound at `bound`: `explicit` if given, else the bound
/// IP if it is a concrete one, else the local address routing toward `registry`, else the
/// loopback address (a single-machine setup). Never a wildcard address.
pub(crate) fn choose(
    explicit: Option<&str>,
    bound: SocketAddr,
    registry: Option<SocketAddr>,
) -> io::Result<String> {
    if let Some(host) = explicit {
        return Ok(host.to_owned());
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound.ip().to_string());
    }
    match registry {
        Some(target) => local_ip_toward(target).map(|ip| ip.to_string()),
        None => Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "listening on a wildcard address with neither an advertise address nor a registry address to route toward",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_wins_then_concrete_bound_ip() {
        let wildcard: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert_eq!(
            choose(Some("10.1.1.1"), wildcard, None).unwrap(),
            "10.1.1.1"
        );
        let concrete: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(choose(None, concrete, None).unwrap(), "127.0.0.1");
    }

    #[test]
    fn wildcard_routes_toward_the_registry_and_never_stays_wildcard() {
        let wildcard: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let registry: SocketAddr = "127.0.0.1:8500".parse().unwrap();
        let host = choose(None, wildcard, Some(registry)).unwrap();
        let ip: IpAddr = host.parse().unwrap();
        assert!(!ip.is_unspecified(), "advertised {ip}");
        assert!(choose(None, wildcard, None).is_err(), "no way to choose");
    }
}
