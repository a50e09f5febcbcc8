//! Which address to publish for a listener. Uses nothing else of the crate.
//!
//! The usual Consul deployment runs an agent on every node at `127.0.0.1:8500`, so "the
//! interface that routes to the registry" is often loopback, which no other node can dial.
//! The rule is therefore: an explicit address wins; a concrete bound IP is used as is; for a
//! wildcard listener, the interface that routes toward the registry if that is not loopback,
//! else the first non-loopback, non-link-local interface that is up (of the registry's
//! address family first); loopback only when the machine has nothing else.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// The local IP address the operating system would use to reach `target`.
///
/// Connecting a UDP socket sends nothing: it only asks the routing table which interface
/// (and so which source address) leads to `target`. Unlike enumerating interfaces it picks
/// the right one on a multi-homed host. IPv6 targets yield IPv6 addresses.
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

/// A candidate interface address: its IP, and whether it is loopback, link-local or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) ip: IpAddr,
    pub(crate) usable: bool,
}

/// The machine's interface addresses.
fn interfaces() -> Vec<Candidate> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| Candidate {
            ip: i.ip(),
            usable: !i.is_loopback() && !i.is_link_local() && i.is_oper_up(),
        })
        .collect()
}

/// The host to register for a listener bound at `bound`. Never a wildcard address.
pub(crate) fn choose(
    explicit: Option<&str>,
    bound: SocketAddr,
    registry: Option<SocketAddr>,
) -> io::Result<String> {
    choose_from(explicit, bound, registry, interfaces).map(|ip| ip.to_string())
}

fn choose_from(
    explicit: Option<&str>,
    bound: SocketAddr,
    registry: Option<SocketAddr>,
    interfaces: impl FnOnce() -> Vec<Candidate>,
) -> io::Result<String> {
    if let Some(host) = explicit {
        return Ok(host.to_owned());
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound.ip().to_string());
    }
    if let Some(target) = registry
        && let Ok(ip) = local_ip_toward(target)
        && !ip.is_loopback()
    {
        return Ok(ip.to_string());
    }
    let candidates = interfaces();
    let want_v6 = registry.is_some_and(|r| r.is_ipv6()) || bound.is_ipv6();
    let pick = candidates
        .iter()
        .filter(|c| c.usable)
        .min_by_key(|c| c.ip.is_ipv6() != want_v6)
        .map(|c| c.ip);
    match pick {
        Some(ip) => Ok(ip.to_string()),
        // A machine with nothing but loopback: a single-machine setup, where loopback is
        // what peers dial.
        None if bound.is_ipv6() => Ok(std::net::Ipv6Addr::LOCALHOST.to_string()),
        None => Ok(std::net::Ipv4Addr::LOCALHOST.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(ip: &str, usable: bool) -> Candidate {
        Candidate {
            ip: ip.parse().unwrap(),
            usable,
        }
    }

    fn wildcard() -> SocketAddr {
        "0.0.0.0:5000".parse().unwrap()
    }

    #[test]
    fn explicit_wins_then_concrete_bound_ip() {
        let none = Vec::new;
        assert_eq!(
            choose_from(Some("10.1.1.1"), wildcard(), None, none).unwrap(),
            "10.1.1.1"
        );
        let concrete: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            choose_from(None, concrete, None, none).unwrap(),
            "127.0.0.1"
        );
    }

    #[test]
    fn a_loopback_registry_does_not_make_the_service_loopback() {
        // The agent-per-node pattern: the registry is on loopback, the service must not be.
        let registry: SocketAddr = "127.0.0.1:8500".parse().unwrap();
        let ifaces = || {
            vec![
                cand("127.0.0.1", false),
                cand("fe80::1", false),
                cand("10.0.0.7", true),
            ]
        };
        assert_eq!(
            choose_from(None, wildcard(), Some(registry), ifaces).unwrap(),
            "10.0.0.7"
        );
    }

    #[test]
    fn the_registry_family_is_preferred() {
        let registry: SocketAddr = "[::1]:8500".parse().unwrap();
        let ifaces = || vec![cand("10.0.0.7", true), cand("2001:db8::7", true)];
        let bound: SocketAddr = "[::]:5000".parse().unwrap();
        assert_eq!(
            choose_from(None, bound, Some(registry), ifaces).unwrap(),
            "2001:db8::7"
        );
        let ifaces = || vec![cand("2001:db8::7", true), cand("10.0.0.7", true)];
        assert_eq!(
            choose_from(None, wildcard(), None, ifaces).unwrap(),
            "10.0.0.7"
        );
    }

    #[test]
    fn loopback_only_machines_advertise_loopback_never_the_wildcard() {
        let ifaces = || vec![cand("127.0.0.1", false)];
        assert_eq!(
            choose_from(None, wildcard(), None, ifaces).unwrap(),
            "127.0.0.1"
        );
        let bound: SocketAddr = "[::]:5000".parse().unwrap();
        assert_eq!(choose_from(None, bound, None, Vec::new).unwrap(), "::1");
    }

    #[test]
    fn this_machine_yields_a_concrete_address() {
        let host = choose(None, wildcard(), Some("127.0.0.1:8500".parse().unwrap())).unwrap();
        let ip: IpAddr = host.parse().unwrap();
        assert!(!ip.is_unspecified(), "advertised {ip}");
    }
}
