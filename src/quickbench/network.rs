//! Network section of `quick-bench`: the route to the receiver, Wi-Fi link facts when the
//! route is wireless, the ICMP echo round trip (RFC 792 / RFC 4443: any host answers it, a
//! Quest included), and the UDP round trip to a receiver that answers the echo below.
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
pub use vr_sys::net::interface_of;

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
    /// ICMP echo round-trip time ([`ICMP_PROBES`] probes 10 ms apart), or why not measured.
    pub icmp: Section<Percentiles>,
    /// ICMP echo requests without a reply within 1 s.
    pub icmp_lost: usize,
    /// The socket the ICMP probes used ([`IcmpSocket::name`]); empty when none could be
    /// opened.
    pub icmp_socket: String,
}

impl NetworkSection {
    /// The round trip the budget halves for the network term, and what it is: the UDP
    /// echo when the receiver answers it (the path the video takes), else ICMP echo.
    pub fn round_trip(&self) -> (&Section<Percentiles>, &'static str) {
        match (&self.rtt, &self.icmp) {
            (Section::Measured(_), _) | (_, Section::NotMeasured { .. }) => {
                (&self.rtt, "half the UDP echo round trip")
            }
            (Section::NotMeasured { .. }, Section::Measured(_)) => {
                (&self.icmp, "half the ICMP echo round trip")
            }
        }
    }
}

/// ICMP echo requests sent by [`network`], 10 ms apart.
pub const ICMP_PROBES: usize = 100;

/// Which kind of ICMP socket sent the probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpSocket {
    /// `socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`: an unprivileged "ping socket", allowed
    /// when the caller's group is in `net.ipv4.ping_group_range` (systemd sets it to every
    /// group); the kernel picks the identifier and hands back only its replies.
    Unprivileged,
    /// `SOCK_RAW`: needs CAP_NET_RAW (root); sees every ICMP message, filtered here.
    Raw,
}

impl IcmpSocket {
    /// `"unprivileged"` or `"raw"`.
    pub fn name(self) -> &'static str {
        match self {
            IcmpSocket::Unprivileged => "unprivileged",
            IcmpSocket::Raw => "raw",
        }
    }
}

/// The Internet checksum (RFC 1071) of `data`: the ones' complement of the ones'
/// complement sum of its 16-bit big-endian words (an odd last byte padded with zero).
/// Pure.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request (RFC 792 type 8, or ICMPv6 RFC 4443 type 128): type, code 0,
/// checksum, identifier, sequence number (all big-endian), then `payload`. The checksum is
/// filled in for IPv4; for ICMPv6 the kernel computes it (it covers a pseudo-header). Pure.
///
/// Built here rather than with a crate: the message is an 8-byte header, and the ping
/// crates bring an async runtime or a packet framework for it.
pub fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    if !v6 {
        let c = internet_checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    m
}

/// The sequence number of an echo reply in `msg` (an ICMP message as a socket hands it
/// over: a raw IPv4 socket includes the IPv4 header, the others do not), when it is a
/// reply (type 0, or 129 for ICMPv6) and, for a raw socket, carries identifier `id` (a
/// raw socket sees every host's ICMP; a ping socket's identifier is the kernel's). Pure.
pub fn echo_reply_seq(msg: &[u8], v6: bool, kind: IcmpSocket, id: u16) -> Option<u16> {
    let icmp = if !v6 && kind == IcmpSocket::Raw {
        let ihl = (*msg.first()? & 0x0f) as usize * 4;
        msg.get(ihl..)?
    } else {
        msg
    };
    if icmp.len() < 8 || icmp[0] != if v6 { 129 } else { 0 } || icmp[1] != 0 {
        return None;
    }
    if kind == IcmpSocket::Raw && u16::from_be_bytes([icmp[4], icmp[5]]) != id {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

/// Opens an ICMP socket towards `ip`: a ping socket where `net.ipv4.ping_group_range`
/// allows it, else a raw one (root). Errors: neither is allowed (names both).
pub fn icmp_socket(ip: std::net::IpAddr) -> std::io::Result<(socket2::Socket, IcmpSocket)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, proto) = if ip.is_ipv4() {
        (Domain::IPV4, Protocol::ICMPV4)
    } else {
        (Domain::IPV6, Protocol::ICMPV6)
    };
    let (sock, kind) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, IcmpSocket::Unprivileged),
        Err(ping) => match Socket::new(domain, Type::RAW, Some(proto)) {
            Ok(s) => (s, IcmpSocket::Raw),
            Err(raw) => {
                return Err(std::io::Error::new(
                    raw.kind(),
                    format!(
                        "no ICMP socket: unprivileged: {ping} (net.ipv4.ping_group_range does not include this group); raw: {raw} (needs root or CAP_NET_RAW)"
                    ),
                ));
            }
        },
    };
    sock.connect(&SocketAddr::new(ip, 0).into())?;
    Ok((sock, kind))
}

/// Sends `n` ICMP echo requests 10 ms apart to `ip` and times the replies. Returns the
/// round trips (ns), how many got no reply within 1 s, and the socket kind. Errors: no
/// ICMP socket could be opened ([`icmp_socket`]).
pub fn icmp_rtt(ip: std::net::IpAddr, n: usize) -> std::io::Result<(Vec<u64>, usize, IcmpSocket)> {
    use std::io::Read;
    let (sock, kind) = icmp_socket(ip)?;
    let v6 = ip.is_ipv6();
    // A raw socket sees every ICMP message of the host: our identifier tells ours apart.
    let id = (std::process::id() & 0xffff) as u16;
    let mut buf = [0u8; 1500];
    let (rtt, lost) = probe_round_trips(
        n,
        // An error (no route, an ICMP error for an earlier probe) counts the probe as lost.
        |seq| {
            sock.send(&echo_request(v6, id, seq as u16, b"vr-stream qbench"))
                .is_ok()
        },
        |timeout| {
            sock.set_read_timeout(Some(timeout))?;
            let len = (&sock).read(&mut buf)?;
            Ok(echo_reply_seq(&buf[..len], v6, kind, id).map(usize::from))
        },
    );
    Ok((rtt, lost, kind))
}

/// The probe loop of [`icmp_rtt`] and [`echo_rtt`]: `send(seq)` sends probe `seq` (false:
/// it could not be sent), one every 10 ms; after each, replies are read until this one's
/// arrives or 10 ms have passed (1 s after the last probe). `recv(timeout)` waits at most
/// `timeout` for one datagram and gives the sequence number it answers (`None`: something
/// else); any error ends that wait (a timeout, or ECONNREFUSED: nobody there). Stops
/// after five probes without a single reply. Returns the round trips (ns, monotonic) and
/// how many probes got none.
fn probe_round_trips(
    n: usize,
    mut send: impl FnMut(usize) -> bool,
    mut recv: impl FnMut(Duration) -> std::io::Result<Option<usize>>,
) -> (Vec<u64>, usize) {
    let mut sent_at = vec![0u64; n];
    let mut rtt = Vec::with_capacity(n);
    for seq in 0..n {
        let t0 = monotonic_ns();
        sent_at[seq] = t0;
        if !send(seq) {
            continue;
        }
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
            match recv(Duration::from_nanos((until - now).max(1000))) {
                Ok(Some(k)) if k < n && sent_at[k] != 0 => {
                    rtt.push(monotonic_ns() - sent_at[k]);
                    sent_at[k] = 0;
                    if k == seq {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if rtt.is_empty() && seq >= 4 {
            break; // Five probes without a reply: nobody answers.
        }
    }
    let lost = n - rtt.len();
    (rtt, lost)
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
    let mut buf = [0u8; 64];
    Ok(probe_round_trips(
        n,
        // An error (ICMP port unreachable from an earlier request) counts it as lost.
        |seq| {
            let mut req = [0u8; ECHO_LEN];
            req[..8].copy_from_slice(ECHO_MAGIC);
            req[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
            s.send(&req).is_ok()
        },
        |timeout| {
            s.set_read_timeout(Some(timeout))?;
            let len = s.recv(&mut buf)?;
            Ok((len >= 12 && &buf[..8] == ECHO_MAGIC)
                .then(|| u32::from_be_bytes(buf[8..12].try_into().unwrap()) as usize))
        },
    ))
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
    let (icmp, icmp_lost, icmp_socket) = match icmp_rtt(ip, ICMP_PROBES) {
        Ok((v, lost, kind)) if !v.is_empty() => (
            Section::Measured(Percentiles::from_ns(&v, Unit::Ms).expect("non-empty")),
            lost,
            kind.name().to_string(),
        ),
        Ok((_, lost, kind)) => (
            Section::not(format!(
                "no ICMP echo reply from {ip} within 1 s (a firewall that drops ping?)"
            )),
            lost,
            kind.name().to_string(),
        ),
        Err(e) => (Section::not(e.to_string()), ICMP_PROBES, String::new()),
    };
    NetworkSection {
        ip: ip.to_string(),
        echo_port,
        route,
        wifi,
        rtt,
        lost,
        icmp,
        icmp_lost,
        icmp_socket,
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
    fn icmp_messages() {
        // RFC 1071 §3's example words sum to ddf2; the checksum is its complement.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // A message with its checksum in place sums to zero.
        let req = echo_request(false, 0x1234, 7, b"abc");
        assert_eq!(&req[..2], &[8, 0]);
        assert_eq!(internet_checksum(&req), 0);
        assert_eq!(&req[4..8], &[0x12, 0x34, 0, 7]);
        // ICMPv6: type 128, checksum left to the kernel.
        let req6 = echo_request(true, 1, 2, b"");
        assert_eq!(req6, vec![128, 0, 0, 0, 0, 1, 0, 2]);
        // Replies: a ping socket hands over the bare message, a raw IPv4 socket the IPv4
        // header (IHL 5) first; a raw socket checks the identifier.
        let mut reply = req.clone();
        reply[0] = 0;
        assert_eq!(
            echo_reply_seq(&reply, false, IcmpSocket::Unprivileged, 0),
            Some(7)
        );
        let mut ip = vec![0x45u8; 1];
        ip.extend_from_slice(&[0; 19]);
        ip.extend_from_slice(&reply);
        assert_eq!(echo_reply_seq(&ip, false, IcmpSocket::Raw, 0x1234), Some(7));
        assert_eq!(echo_reply_seq(&ip, false, IcmpSocket::Raw, 0x1235), None);
        // Our own request (seen by a raw socket on loopback) is not a reply.
        assert_eq!(
            echo_reply_seq(&req, false, IcmpSocket::Unprivileged, 0),
            None
        );
        assert_eq!(echo_reply_seq(&[0x45, 0], false, IcmpSocket::Raw, 0), None);
        let mut reply6 = req6.clone();
        reply6[0] = 129;
        assert_eq!(echo_reply_seq(&reply6, true, IcmpSocket::Raw, 1), Some(2));
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
