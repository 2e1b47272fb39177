//! Routes and interfaces: which local address reaches a peer, and which interface holds
//! an address.

use std::net::SocketAddr;

/// The local address the kernel would use to reach `dest` (a UDP connect sends nothing).
pub fn route_source(dest: SocketAddr) -> Option<std::net::IpAddr> {
    let bind: SocketAddr = if dest.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(dest).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// The interface holding `addr` (getifaddrs).
pub fn interface_of(addr: std::net::IpAddr) -> Option<String> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        let Some(sa) = a.address else { continue };
        let ip: Option<std::net::IpAddr> = if let Some(v4) = sa.as_sockaddr_in() {
            Some(std::net::IpAddr::V4(v4.ip()))
        } else {
            sa.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip()))
        };
        if ip == Some(addr) {
            return Some(a.interface_name);
        }
    }
    None
}
