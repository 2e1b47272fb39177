//! The network stage's RTCP socket around the sans-IO [`SenderSession`]: datagrams in →
//! [`SenderSession::on_rtcp`] (clock probes and echo requests answered by the socket
//! itself, [`RtcpSocket::poll`]), the session's events → the encoder's IDR requests and
//! bitrate, the stats segment and the log; the session's SR out with SDES CNAME; APP and
//! BYE. The decisions (which feedback to obey, PLI coalescing, SR timing, the bitrate)
//! are the session's and are unit-tested there.

use crate::net::{RtcpIn, RtcpSocket};
use crate::rt::{self, MonotonicNs};
use crate::rtcp::{self, SenderInfo};
use crate::shm::bitstream::BitstreamQueue;
use crate::shm::control::Control;
use std::net::SocketAddr;
use vr_proto::session::{Event, SenderSession};

/// The network stage's RTCP socket.
pub struct SenderRtcp {
    sock: RtcpSocket,
    ssrc: u32,
    cname: String,
    buf: Vec<u8>,
}

/// The wall clock now, NTP.
fn ntp_now() -> u64 {
    rt::realtime().to_ntp()
}

impl SenderRtcp {
    /// RTCP for stream `ssrc` from local port `local_port` (0 = any), reports to `dest`
    /// (the receiver's RTP port + 1). Feedback is read from any host and port (a receiver
    /// may answer from another port); the session decides what to obey.
    ///
    /// Errors: the socket cannot be created.
    pub fn new(
        dest: SocketAddr,
        dscp: u8,
        local_port: u16,
        ssrc: u32,
    ) -> std::io::Result<SenderRtcp> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Ok(SenderRtcp {
            sock: RtcpSocket::new(dest, dscp, local_port)?,
            ssrc,
            cname: format!("vr-stream@{}", host.trim()),
            buf: Vec::with_capacity(256),
        })
    }

    /// Reads what receivers sent into `session`, acts on its events, and sends an SR when
    /// one is due at `now`. Returns how many times the encoder's bitrate was changed.
    pub fn tick(
        &mut self,
        now: MonotonicNs,
        session: &mut SenderSession,
        ctl: &Control,
        queue: &BitstreamQueue,
    ) -> u64 {
        self.sock.poll(ntp_now, |m| {
            if let RtcpIn::Rtcp(packets, arrival_ntp, from) = m {
                session.on_rtcp(now, arrival_ntp, from.ip(), &packets);
            }
        });
        session.set_web_target(ctl.web_target());
        let stats = ctl.stats();
        let mut changes = 0;
        while let Some(e) = session.poll_event() {
            match e {
                Event::RequestIdr => queue.request_idr(),
                Event::Pli => stats.add_pli(),
                Event::Nack(n) => stats.add_nack(n),
                Event::Report { block, rtt_ns } => stats.add_rtcp_report(
                    block.fraction_lost,
                    block.cumulative_lost,
                    block.jitter,
                    rtt_ns.map(|ns| (ns / 1000).min(u32::MAX as u64) as u32),
                    now.0,
                ),
                Event::Adapted(ch) => eprintln!("vr-stream[network]: {ch}"),
                Event::Bitrate(kbps) => {
                    ctl.request_bitrate(kbps);
                    changes += 1;
                }
            }
        }
        if let Some(info) = session.sender_report(now, ntp_now()) {
            self.send_sr(&info);
        }
        changes
    }

    /// Sends an SR with `info` and our SDES CNAME (RFC 3550 §6.4.1, §6.5.1).
    fn send_sr(&mut self, info: &SenderInfo) {
        self.buf.clear();
        rtcp::write_sr(&mut self.buf, self.ssrc, info, &[]);
        rtcp::write_sdes_cname(&mut self.buf, self.ssrc, &self.cname);
        self.sock.send(&self.buf);
    }

    /// Sends an APP packet (RFC 3550 §6.7) from our SSRC, e.g. detections
    /// ([`crate::detect::wire`]).
    pub fn send_app(&mut self, subtype: u8, name: [u8; 4], data: &[u8]) {
        self.buf.clear();
        rtcp::write_app(&mut self.buf, self.ssrc, subtype, name, data);
        self.sock.send(&self.buf);
    }

    /// Sends a BYE (end of stream).
    pub fn bye(&mut self) {
        self.buf.clear();
        rtcp::write_rr(&mut self.buf, self.ssrc, &[]);
        rtcp::write_bye(&mut self.buf, self.ssrc);
        self.sock.send(&self.buf);
    }
}
