//! Network section of `quick-bench`: the route to the receiver, Wi-Fi link facts when the
//! route is wireless, and the UDP round trip to a receiver that answers the echo.
//!
//! Echo protocol (defined here; `quick-bench --echo` answers it, and a receiver may): a
//! datagram to the receiver's RTCP port (RTP port + 1) whose first 8 bytes are
//! [`ECHO_MAGIC`], then a 4-byte big-endian sequence number, then any padding (16 bytes
//! total are sent); the answer is the same datagram sent back to its source. The first
//! byte `V` (0x56) cannot start an RTP or RTCP packet (their first two bits are version 2,
//! 0x80..=0xBF), so the echo shares the RTCP port without ambiguity.

use super::{Percentiles, Section, Unit};
use crate::rt::monotonic_ns;
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// First 8 bytes of an echo request and reply.
pub const ECHO_MAGIC: &[u8; 8] = b"VRSTECHO";
/// Size of an echo request, bytes.
pub const ECHO_LEN: usize = 16;

/// The route to the receiver.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Local source address the kernel picks.
    pub source: String,
    /// Interface that has that address (`lo`, `eth0`, `wlan0`).
    pub interface: String,
    /// Whether the interface is wireless (`/sys/class/net/IF/wireless`).
    pub wireless: bool,
}

/// Wi-Fi link facts (each `None` when the kernel or `iw` does not say).
#[derive(Debug, Clone, Serialize)]
pub struct Wifi {
    /// Interface.
    pub interface: String,
    /// Signal level, dBm (`/proc/net/wireless`).
    pub signal_dbm: Option<f64>,
    /// Link quality as the driver reports it (`/proc/net/wireless`).
    pub link_quality: Option<f64>,
    /// Transmit bitrate, Mbit/s (`iw dev IF link`).
    pub tx_bitrate_mbps: Option<f64>,
    /// Power save on (`iw dev IF get power_save`).
    pub power_save: Option<bool>,
}

/// The whole network section.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkSection {
    /// Receiver address.
    pub ip: String,
    /// Echo port (RTCP port).
    pub echo_port: u16,
    /// Route, or why unknown.
    pub route: Section<Route>,
    /// Wi-Fi facts, or why not (not wireless).
    pub wifi: Section<Wifi>,
    /// UDP round-trip time, or why not measured.
    pub rtt: Section<Percentiles>,
    /// Echo requests without an answer within 1 s.
    pub lost: usize,
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

/// Parses a `/proc/net/wireless` line for `iface`: (link quality, signal level dBm). Pure.
pub fn parse_proc_wireless(text: &str, iface: &str) -> Option<(f64, f64)> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{iface}:")))?;
    let f: Vec<&str> = line.split(':').nth(1)?.split_whitespace().collect();
    let num = |s: &str| s.trim_end_matches('.').parse::<f64>().ok();
    Some((num(f.get(1)?)?, num(f.get(2)?)?))
}

/// Parses the `tx bitrate: 433.3 MBit/s` line of `iw dev IF link`. Pure.
pub fn parse_iw_bitrate(text: &str) -> Option<f64> {
    let l = text
        .lines()
        .find(|l| l.trim_start().starts_with("tx bitrate:"))?;
    l.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
}

fn wifi_of(iface: &str) -> Wifi {
    let pw = std::fs::read_to_string("/proc/net/wireless")
        .ok()
        .and_then(|t| parse_proc_wireless(&t, iface));
    let link = vr_setup::live::run("iw", &["dev", iface, "link"]).ok();
    Wifi {
        interface: iface.to_string(),
        signal_dbm: pw.map(|p| p.1),
        link_quality: pw.map(|p| p.0),
        tx_bitrate_mbps: link.as_deref().and_then(parse_iw_bitrate),
        power_save: vr_setup::live::wifi_power_save(iface),
    }
}

/// Sends `n` echo requests 10 ms apart to `dest` and times the answers.
/// Returns the round trips (ns) and how many got no answer within 1 s.
pub fn echo_rtt(dest: SocketAddr, n: usize) -> std::io::Result<(Vec<u64>, usize)> {
    let bind: SocketAddr = if dest.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(dest)?;
    let mut sent_at = vec![0u64; n];
    let mut rtt = Vec::with_capacity(n);
    let mut buf = [0u8; 64];
    for seq in 0..n {
        let mut req = [0u8; ECHO_LEN];
        req[..8].copy_from_slice(ECHO_MAGIC);
        req[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
        let t0 = monotonic_ns();
        sent_at[seq] = t0;
        if s.send(&req).is_err() {
            continue; // ICMP port unreachable from an earlier request: counted as lost.
        }
        // Wait for this answer (or a late one) up to 10 ms, then up to 1 s at the end.
        let until = t0
            + if seq + 1 == n {
                1_000_000_000
            } else {
                10_000_000
            };
        loop {
            let now = monotonic_ns();
            if now >= until {
                break;
            }
            s.set_read_timeout(Some(Duration::from_nanos((until - now).max(1000))))?;
            match s.recv(&mut buf) {
                Ok(len) if len >= 12 && &buf[..8] == ECHO_MAGIC => {
                    let k = u32::from_be_bytes(buf[8..12].try_into().unwrap()) as usize;
                    if k < n && sent_at[k] != 0 {
                        rtt.push(monotonic_ns() - sent_at[k]);
                        sent_at[k] = 0;
                    }
                    if k == seq {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(_) => break, // ECONNREFUSED: nobody listens; the requests count as lost.
            }
        }
        if rtt.is_empty() && seq >= 4 {
            break; // Five requests without any answer: nobody is there.
        }
    }
    let lost = n - rtt.len();
    Ok((rtt, lost))
}

/// Answers echo requests on `addr` until the process is stopped (`quick-bench --echo`).
/// Anything that is not an echo request (RTCP, RTP) is ignored.
pub fn serve_echo(addr: SocketAddr) -> std::io::Result<()> {
    let s = UdpSocket::bind(addr)?;
    eprintln!(
        "quick-bench: answering echo requests on udp {}",
        s.local_addr()?
    );
    let mut buf = [0u8; 2048];
    loop {
        let (len, from) = s.recv_from(&mut buf)?;
        if len >= 12 && &buf[..8] == ECHO_MAGIC {
            let _ = s.send_to(&buf[..len], from);
        }
    }
}

/// The network section for receiver `ip`, echo on `echo_port`, `n` echo requests.
pub fn network(ip: std::net::IpAddr, echo_port: u16, n: usize) -> NetworkSection {
    let dest = SocketAddr::new(ip, echo_port);
    let route = match crate::net::route_source(dest) {
        None => Section::not(format!("no route to {ip}")),
        Some(src) => {
            let iface = interface_of(src).unwrap_or_else(|| "unknown".into());
            let wireless =
                std::path::Path::new(&format!("/sys/class/net/{iface}/wireless")).exists();
            Section::Measured(Route {
                source: src.to_string(),
                interface: iface,
                wireless,
            })
        }
    };
    let wifi = match route.get() {
        Some(r) if r.wireless => Section::Measured(wifi_of(&r.interface)),
        Some(r) => Section::not(format!("{} is not a wireless interface", r.interface)),
        None => Section::not("no route"),
    };
    let (rtt, lost) = match echo_rtt(dest, n) {
        Ok((v, lost)) if !v.is_empty() => (
            Section::Measured(Percentiles::from_ns(&v, Unit::Ms).expect("non-empty")),
            lost,
        ),
        Ok((_, lost)) => (
            Section::not(format!(
                "no echo reply from {dest} within 1 s (run `quick-bench --echo` on the receiver, or use a receiver that answers the echo)"
            )),
            lost,
        ),
        Err(e) => (Section::not(format!("cannot send to {dest}: {e}")), n),
    };
    NetworkSection {
        ip: ip.to_string(),
        echo_port,
        route,
        wifi,
        rtt,
        lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wireless_facts() {
        let t = "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n wlan0: 0000   58.  -52.  -256        0      0      0      0      0        0\n";
        assert_eq!(parse_proc_wireless(t, "wlan0"), Some((58.0, -52.0)));
        assert_eq!(parse_proc_wireless(t, "wlan1"), None);
        let iw = "Connected to aa:bb (on wlan0)\n\tSSID: x\n\tsignal: -52 dBm\n\ttx bitrate: 433.3 MBit/s VHT-MCS 9 80MHz short GI VHT-NSS 1\n";
        assert_eq!(parse_iw_bitrate(iw), Some(433.3));
    }

    #[test]
    fn echo_round_trip_on_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        drop(server);
        std::thread::spawn(move || serve_echo(addr));
        std::thread::sleep(Duration::from_millis(50));
        let (rtt, lost) = echo_rtt(addr, 20).unwrap();
        assert_eq!(rtt.len() + lost, 20);
        assert!(rtt.len() >= 18, "{} answers", rtt.len());
        // Nobody on this port: not measured, quickly.
        let nobody = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let t = std::time::Instant::now();
        let (rtt, _) = echo_rtt(nobody, 50).unwrap();
        assert!(rtt.is_empty());
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
