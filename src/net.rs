//! UDP output through `socket2` with `sendmmsg(2)` batching (the `unsafe` of this module is
//! the sendmmsg FFI call).
//!
//! The socket is connected to the receiver, so an ICMP port-unreachable comes back as an
//! error on a later send: it is counted, never fatal, and sending goes on. The socket is
//! non-blocking; a full socket buffer is waited out for at most [`WOULD_BLOCK_WAIT_MS`] and
//! then the rest of the batch is counted as dropped rather than stalling the stage.

use crate::rtp::PacketBuf;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
pub use vr_proto::framing::rfc4571_packets;
pub use vr_sys::net::route_source;

/// Longest wait for socket-buffer space before dropping packets, ms.
pub const WOULD_BLOCK_WAIT_MS: i32 = 2;
/// Send buffer requested, bytes (the kernel caps it at net.core.wmem_max).
pub const SEND_BUFFER: usize = 4 << 20;

/// What one [`UdpSender::send`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendStats {
    /// Packets the kernel accepted.
    pub packets: u64,
    /// Their bytes (UDP payload).
    pub bytes: u64,
    /// sendmmsg calls made.
    pub batches: u64,
    /// Packets lost to errors (ICMP unreachable, no route...).
    pub errors: u64,
    /// Packets dropped because the socket buffer stayed full past the wait (EAGAIN).
    pub wouldblock: u64,
    /// Of `errors`, those refused (ECONNREFUSED: the receiver's host answered an earlier
    /// packet with ICMP port unreachable, RFC 1122 §4.1.3.3 — nothing listens on the port).
    pub refused: u64,
}

impl SendStats {
    /// Adds another call's counts.
    pub fn add(&mut self, o: &SendStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.batches += o.batches;
        self.errors += o.errors;
        self.wouldblock += o.wouldblock;
        self.refused += o.refused;
    }
}

/// A connected, non-blocking UDP socket that sends RTP packets in sendmmsg batches.
pub struct UdpSender {
    sock: Socket,
    batch: usize,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the iovec/mmsghdr scratch vectors hold raw pointers only during `send`, which
// takes &mut self; between calls they are dangling-but-unused.
unsafe impl Send for UdpSender {}

impl UdpSender {
    /// A socket connected to `dest` with DSCP `dscp` (0..=63) in the IP header, sending at
    /// most `batch` packets per sendmmsg call.
    ///
    /// Errors: socket creation, bind or connect failures (e.g. an address family this host
    /// lacks).
    pub fn new(dest: SocketAddr, dscp: u8, batch: usize) -> io::Result<UdpSender> {
        let sock = Socket::new(Domain::for_address(dest), Type::DGRAM, Some(Protocol::UDP))?;
        let _ = sock.set_send_buffer_size(SEND_BUFFER);
        match dest {
            SocketAddr::V4(_) => {
                let _ = sock.set_tos_v4((dscp as u32) << 2);
            }
            SocketAddr::V6(_) => {
                let _ = sock.set_tclass_v6((dscp as u32) << 2);
            }
        }
        sock.connect(&SockAddr::from(dest))?;
        sock.set_nonblocking(true)?;
        let batch = batch.max(1);
        Ok(UdpSender {
            sock,
            batch,
            iovs: Vec::with_capacity(batch),
            msgs: Vec::with_capacity(batch),
        })
    }

    /// The local address (the sender side of the stream).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }

    /// Sends every packet of `pkts`, in order, in batches. Never fails: errors are counted.
    pub fn send(&mut self, pkts: &PacketBuf) -> SendStats {
        self.send_range(pkts, 0..pkts.len())
    }

    /// Sends packets `range` of `pkts` (indices), in order, in batches; as [`Self::send`].
    pub fn send_range(&mut self, pkts: &PacketBuf, range: std::ops::Range<usize>) -> SendStats {
        let mut st = SendStats::default();
        let n = range.end.min(pkts.len());
        let mut i = range.start;
        while i < n {
            let end = (i + self.batch).min(n);
            self.iovs.clear();
            self.msgs.clear();
            for k in i..end {
                let p = pkts.get(k);
                self.iovs.push(libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                });
            }
            for iov in self.iovs.iter_mut() {
                // SAFETY: an all-zero msghdr/mmsghdr is valid (null name, no control data).
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov as *mut libc::iovec;
                m.msg_hdr.msg_iovlen = 1;
                self.msgs.push(m);
            }
            // SAFETY: msgs[..] point at iovecs that point into `pkts`, all alive for the
            // call; the socket is connected so msg_name is null; count = msgs.len().
            let r = unsafe {
                libc::sendmmsg(self.fd(), self.msgs.as_mut_ptr(), self.msgs.len() as u32, 0)
            };
            st.batches += 1;
            if r > 0 {
                for k in i..i + r as usize {
                    st.packets += 1;
                    st.bytes += pkts.get(k).len() as u64;
                }
                i += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => {
                    if !self.wait_writable() {
                        st.wouldblock += (n - i) as u64;
                        return st;
                    }
                }
                Some(libc::EINTR) => {}
                other => {
                    // ECONNREFUSED (ICMP port unreachable), ENETUNREACH, EHOSTUNREACH...:
                    // this packet is lost; carry on with the next.
                    st.errors += 1;
                    if other == Some(libc::ECONNREFUSED) {
                        st.refused += 1;
                    }
                    i += 1;
                }
            }
        }
        st
    }

    fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }

    fn wait_writable(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, WOULD_BLOCK_WAIT_MS) };
        r > 0
    }
}

/// What arrived on the sender's RTCP socket.
#[derive(Debug)]
pub enum RtcpIn<'a> {
    /// A valid compound RTCP datagram, parsed, when it arrived (NTP Q32.32 of the
    /// kernel's receive time, or of now), and who sent it (the datagram's source address:
    /// anyone who can reach the port can send one).
    Rtcp(Vec<crate::rtcp::Rtcp>, u64, SocketAddr),
    /// A clock probe ([`crate::clock`]) that has been answered.
    ClockProbe,
    /// A quick-bench echo request that has been echoed.
    Echo,
    /// Anything else (counted by the caller, never fatal).
    Junk(&'a [u8]),
}

/// The sender's RTCP socket: sends SR/SDES/BYE to the receiver's RTCP port (RTP port + 1,
/// RFC 3550 §11) and takes whatever comes back to it — receivers answer to the source
/// address of the reports (symmetric RTCP, RFC 4961), so its own port is ephemeral. It also
/// answers clock probes and quick-bench echo requests. Non-blocking: [`RtcpSocket::poll`]
/// drains what is queued and returns.
pub struct RtcpSocket {
    sock: std::net::UdpSocket,
    dest: SocketAddr,
    rx: Vec<u8>,
}

impl RtcpSocket {
    /// A socket bound to `local_port` (0 = any) for sending to `dest` (the receiver's
    /// RTCP address) with DSCP `dscp`.
    ///
    /// Errors: socket creation or bind failures.
    pub fn new(dest: SocketAddr, dscp: u8, local_port: u16) -> io::Result<RtcpSocket> {
        let sock = Socket::new(Domain::for_address(dest), Type::DGRAM, Some(Protocol::UDP))?;
        match dest {
            SocketAddr::V4(_) => {
                let _ = sock.set_tos_v4((dscp as u32) << 2);
            }
            SocketAddr::V6(_) => {
                let _ = sock.set_tclass_v6((dscp as u32) << 2);
            }
        }
        let any: SocketAddr = if dest.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        sock.bind(&SockAddr::from(SocketAddr::new(any.ip(), local_port)))?;
        sock.set_nonblocking(true)?;
        let sock: std::net::UdpSocket = sock.into();
        // Kernel receive timestamps (CLOCK_REALTIME) for clock probes: a request waits in
        // the socket until the stage polls it, and that wait must not count.
        let _ = nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::ReceiveTimestampns,
            &true,
        );
        Ok(RtcpSocket {
            sock,
            dest,
            rx: vec![0u8; 2048],
        })
    }

    /// The local address (where receivers' RTCP comes back).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Sends one datagram to the receiver's RTCP port. Errors are ignored (an absent
    /// receiver answers with ICMP; RTCP is best effort).
    pub fn send(&self, datagram: &[u8]) {
        let _ = self.sock.send_to(datagram, self.dest);
    }

    /// Receives one datagram: (length, source, kernel receive time (SO_TIMESTAMPNS: the
    /// wall clock) if the kernel gave one). `None` when nothing is waiting.
    fn recv(&mut self) -> Option<(usize, SocketAddr, Option<crate::rt::UnixNs>)> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
        use std::os::fd::AsRawFd;
        loop {
            let mut iov = [io::IoSliceMut::new(&mut self.rx)];
            let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
            match recvmsg::<SockaddrStorage>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(m) => {
                    let ts = m.cmsgs().ok().and_then(|mut c| {
                        c.find_map(|c| match c {
                            ControlMessageOwned::ScmTimestampns(t) => Some(crate::rt::UnixNs(
                                t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64,
                            )),
                            _ => None,
                        })
                    });
                    let from = m.address.and_then(|a| {
                        a.as_sockaddr_in()
                            .map(|v4| SocketAddr::from(*v4))
                            .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
                    });
                    let n = m.bytes;
                    match from {
                        Some(from) if !m.flags.contains(MsgFlags::MSG_TRUNC) => {
                            return Some((n, from, ts));
                        }
                        _ => continue,
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return None,
                Err(nix::errno::Errno::EINTR) => continue,
                // ICMP errors from earlier sends (receiver not up yet): nothing to read.
                Err(_) => continue,
            }
        }
    }

    /// Handles every datagram waiting: answers clock probes (t2 = the kernel's receive
    /// time, t3 = `now_ntp()`, the wall clock as NTP) and echo requests itself, and passes
    /// each one to `f`.
    pub fn poll(&mut self, now_ntp: impl Fn() -> u64, mut f: impl FnMut(RtcpIn<'_>)) {
        while let Some((n, from, rx_ns)) = self.recv() {
            let b = &self.rx[..n];
            let t3 = now_ntp();
            let t2 = rx_ns.map(|t| t.to_ntp()).unwrap_or(t3);
            if let Some(a) = crate::clock::answer(b, t2, t3) {
                let _ = self.sock.send_to(&a, from);
                f(RtcpIn::ClockProbe);
            } else if n >= 12 && &b[..8] == b"VRSTECHO" {
                let _ = self.sock.send_to(b, from);
                f(RtcpIn::Echo);
            } else {
                match crate::rtcp::parse_compound(b) {
                    Ok(p) => f(RtcpIn::Rtcp(p, t2, from)),
                    Err(_) => f(RtcpIn::Junk(&self.rx[..n])),
                }
            }
        }
    }
}

/// RTP over TCP (RFC 4571: each packet preceded by its length as a 16-bit big-endian
/// number) to a receiver that listens (`vr-receive --tcp`).
///
/// Latest-wins at frame granularity: a frame is written whole or not at all. When the
/// previous frame has not fully left (the TCP send buffer, sized to about 100 ms of the
/// bitrate, is full), the new one is dropped and [`TcpFrame::Dropped`] tells the caller to
/// ask for an IDR. The connection is (re)made at most once per [`TCP_RETRY_NS`], without
/// blocking the stage for more than [`TCP_CONNECT_TIMEOUT_MS`].
pub struct TcpSender {
    dest: SocketAddr,
    dscp: u8,
    sndbuf: usize,
    conn: Option<std::net::TcpStream>,
    pending: Vec<u8>,
    written: usize,
    last_try_ns: Option<u64>,
}

/// Least time between connection attempts, ns.
pub const TCP_RETRY_NS: u64 = 1_000_000_000;
/// Longest a connection attempt may block, ms.
pub const TCP_CONNECT_TIMEOUT_MS: u64 = 50;

/// What happened to one frame given to [`TcpSender::send_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpFrame {
    /// Written to the socket (perhaps partly still in our buffer: it goes out before any
    /// later frame), on a connection made for this frame when `fresh`.
    Sent {
        /// The connection is new: the receiver needs an IDR to start decoding.
        fresh: bool,
    },
    /// Not sent: no connection, or the previous frame still occupies the socket.
    Dropped,
}

impl TcpSender {
    /// A sender to `dest` with DSCP `dscp` and a send buffer of `sndbuf` bytes. Connects
    /// lazily (on the first frame).
    pub fn new(dest: SocketAddr, dscp: u8, sndbuf: usize) -> TcpSender {
        TcpSender {
            dest,
            dscp,
            sndbuf,
            conn: None,
            pending: Vec::with_capacity(1 << 20),
            written: 0,
            last_try_ns: None,
        }
    }

    /// Whether a connection is up.
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    fn connect(&mut self, now_ns: u64) -> bool {
        if self
            .last_try_ns
            .is_some_and(|t| now_ns.saturating_sub(t) < TCP_RETRY_NS)
        {
            return false;
        }
        self.last_try_ns = Some(now_ns);
        let Ok(sock) = Socket::new(
            Domain::for_address(self.dest),
            Type::STREAM,
            Some(Protocol::TCP),
        ) else {
            return false;
        };
        let _ = sock.set_send_buffer_size(self.sndbuf);
        let _ = sock.set_tcp_nodelay(true);
        let _ = match self.dest {
            SocketAddr::V4(_) => sock.set_tos_v4((self.dscp as u32) << 2),
            SocketAddr::V6(_) => sock.set_tclass_v6((self.dscp as u32) << 2),
        };
        if sock
            .connect_timeout(
                &SockAddr::from(self.dest),
                std::time::Duration::from_millis(TCP_CONNECT_TIMEOUT_MS),
            )
            .is_err()
        {
            return false;
        }
        if sock.set_nonblocking(true).is_err() {
            return false;
        }
        self.conn = Some(sock.into());
        self.pending.clear();
        self.written = 0;
        true
    }

    /// Writes what is buffered; drops the connection on an error. True when nothing is
    /// left over.
    pub fn flush(&mut self) -> bool {
        use std::io::Write;
        let Some(c) = self.conn.as_mut() else {
            self.pending.clear();
            self.written = 0;
            return true;
        };
        while self.written < self.pending.len() {
            match c.write(&self.pending[self.written..]) {
                Ok(0) => {
                    self.conn = None;
                    break;
                }
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // Reset or broken pipe: the receiver went away mid-frame.
                    self.conn = None;
                    break;
                }
            }
        }
        self.pending.clear();
        self.written = 0;
        true
    }

    /// Sends the packets of one frame, whole (see [`TcpFrame`]). `now_ns`: CLOCK_MONOTONIC,
    /// for the reconnection interval.
    pub fn send_frame(&mut self, pkts: &PacketBuf, now_ns: u64) -> TcpFrame {
        let mut fresh = false;
        if self.conn.is_none() {
            if !self.connect(now_ns) {
                return TcpFrame::Dropped;
            }
            fresh = true;
        }
        if !self.flush() {
            return TcpFrame::Dropped;
        }
        if self.conn.is_none() {
            return TcpFrame::Dropped;
        }
        for p in pkts.iter() {
            self.pending
                .extend_from_slice(&(p.len() as u16).to_be_bytes());
            self.pending.extend_from_slice(p);
        }
        self.flush();
        if self.conn.is_none() {
            TcpFrame::Dropped
        } else {
            TcpFrame::Sent { fresh }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{PacketBuf, Packetizer, RtpParams};

    /// A 4 kB IDR access unit as RTP packets of at most 500 bytes: (packets, count).
    fn packetized_idr() -> (PacketBuf, usize) {
        let mut pk = Packetizer::new(
            RtpParams {
                ssrc: 1,
                payload_type: 96,
                payload_size: 500,
                capture_time_ext_id: None,
            },
            0,
        );
        let mut buf = PacketBuf::default();
        let mut au = vec![0, 0, 0, 1, 0x65];
        au.extend(std::iter::repeat_n(7u8, 4000));
        let n = pk.packetize(&au, 0, None, &mut buf).unwrap();
        (buf, n)
    }

    #[test]
    fn sends_batches_on_loopback_and_counts_refusals() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = rx.local_addr().unwrap();
        let mut tx = UdpSender::new(dest, 34, 4).unwrap();
        let (buf, n) = packetized_idr();
        let st = tx.send(&buf);
        assert_eq!(st.packets as usize, n);
        assert_eq!(st.batches as usize, n.div_ceil(4));
        let mut got = 0;
        let mut b = [0u8; 2000];
        rx.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        while got < n {
            rx.recv(&mut b).unwrap();
            got += 1;
        }
        // Receiver gone: ICMP port unreachable comes back as errors, never a failure.
        drop(rx);
        let mut errors = 0;
        for _ in 0..5 {
            errors += tx.send(&buf).errors;
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(errors > 0);
        assert_eq!(route_source(dest).unwrap().to_string(), "127.0.0.1");
    }

    #[test]
    fn rfc4571_framing_splits_at_packet_boundaries() {
        let mut stream = vec![];
        for p in [&b"abc"[..], &b""[..], &[9u8; 300][..]] {
            stream.extend_from_slice(&(p.len() as u16).to_be_bytes());
            stream.extend_from_slice(p);
        }
        let mut got = vec![];
        // Byte by byte: nothing is handed out before it is whole.
        let mut buf = vec![];
        for b in &stream {
            buf.push(*b);
            let used = rfc4571_packets(&buf, |p| got.push(p.to_vec()));
            buf.drain(..used);
        }
        assert!(buf.is_empty());
        assert_eq!(got, vec![b"abc".to_vec(), vec![], vec![9u8; 300]]);
    }

    #[test]
    fn tcp_sender_frames_packets_and_survives_a_receiver_restart() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dest = l.local_addr().unwrap();
        let (buf, n) = packetized_idr();
        let mut tx = TcpSender::new(dest, 34, 1 << 16);
        assert_eq!(tx.send_frame(&buf, 0), TcpFrame::Sent { fresh: true });
        assert_eq!(tx.send_frame(&buf, 1), TcpFrame::Sent { fresh: false });
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut got = vec![];
        let mut packets = 0;
        while packets < 2 * n {
            let mut b = [0u8; 4096];
            let k = c.read(&mut b).unwrap();
            assert!(k > 0);
            got.extend_from_slice(&b[..k]);
            let used = rfc4571_packets(&got, |p| {
                assert_eq!(p, buf.get(packets % n));
                packets += 1;
            });
            got.drain(..used);
        }
        // The receiver goes away: frames are dropped (not a failure); a new listener on
        // the same port gets a fresh connection after the retry interval.
        drop(c);
        drop(l);
        let mut dropped = false;
        for i in 0..50 {
            if tx.send_frame(&buf, 2 + i) == TcpFrame::Dropped {
                dropped = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(dropped);
        let l2 = std::net::TcpListener::bind(dest).unwrap();
        assert_eq!(
            tx.send_frame(&buf, 100),
            TcpFrame::Dropped,
            "within the retry interval"
        );
        assert_eq!(
            tx.send_frame(&buf, 2 * TCP_RETRY_NS),
            TcpFrame::Sent { fresh: true }
        );
        let (_c2, _) = l2.accept().unwrap();
    }
}
