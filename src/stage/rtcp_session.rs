//! The network stage's RTCP side: a sender report with SDES CNAME once a second (RFC 3550
//! §6.4.1: NTP time, the RTP timestamp of the same instant, packet and octet counts), the
//! receivers' report blocks about our SSRC into the stats segment (loss, jitter, RTT from
//! LSR/DLSR), PLI → an IDR request to the encoder (at most one per
//! [`PLI_MIN_INTERVAL_NS`]), NACKs counted (not retransmitted yet), clock probes answered,
//! BYE at the end. Blocks about other SSRCs and unknown packets (ffmpeg's own RTCP, for
//! one) are ignored, and so is all feedback from any host but the receiver's (the RTCP
//! port is reachable by anyone on the network: a PLI from elsewhere would force IDRs).
//! Feedback must name our SSRC as its media source (RFC 4585 §6.1, "SSRC of media
//! source"); a PLI naming 0 or another SSRC is not about this stream.

use crate::abr::Feedback;
use crate::net::{RtcpIn, RtcpSocket};
use crate::rt;
use crate::rtcp::{self, Rtcp, SenderInfo};
use crate::shm::bitstream::BitstreamQueue;
use crate::shm::stats::Stats;
use std::net::SocketAddr;

/// Sender-report interval, ns.
pub const SR_INTERVAL_NS: u64 = 1_000_000_000;
/// PLIs closer together than this after an honoured one are counted but ask for no new
/// IDR (a receiver may send one per broken frame until the IDR arrives), ns.
pub const PLI_MIN_INTERVAL_NS: u64 = 20_000_000;

/// RTCP state of the network stage.
pub struct SenderRtcp {
    sock: RtcpSocket,
    ssrc: u32,
    /// The receiver's host: feedback from any other address is ignored.
    peer: std::net::IpAddr,
    cname: String,
    last_sr_ns: u64,
    last_idr_request_ns: u64,
    packets: u64,
    octets: u64,
    buf: Vec<u8>,
    feedback: Vec<Feedback>,
}

fn ntp_now() -> u64 {
    crate::rtp::ntp_from_unix_ns(rt::realtime_ns())
}

impl SenderRtcp {
    /// RTCP for stream `ssrc` from local port `local_port` (0 = any), reports to `dest`
    /// (the receiver's RTP port + 1); feedback is taken from `dest`'s host only (any port:
    /// a receiver may answer from another one).
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
            peer: dest.ip(),
            cname: format!("vr-stream@{}", host.trim()),
            last_sr_ns: 0,
            last_idr_request_ns: 0,
            packets: 0,
            octets: 0,
            buf: Vec::with_capacity(256),
            feedback: Vec::with_capacity(8),
        })
    }

    /// Counts RTP packets sent (`bytes` = whole packets; the SR counts payload octets,
    /// estimated as bytes − 12 per packet).
    pub fn sent(&mut self, packets: u64, bytes: u64) {
        self.packets += packets;
        self.octets += bytes.saturating_sub(12 * packets);
    }

    /// Handles what receivers sent and sends an SR when one is due. `now_ns` is
    /// CLOCK_MONOTONIC; `rtp_ts_now` the RTP timestamp of that instant (`None` before the
    /// first frame: no SR yet).
    pub fn tick(
        &mut self,
        now_ns: u64,
        rtp_ts_now: Option<u32>,
        stats: &Stats,
        queue: &BitstreamQueue,
    ) {
        let (ssrc, peer) = (self.ssrc, self.peer);
        let mut idr = false;
        let feedback = &mut self.feedback;
        self.sock.poll(ntp_now, |m| {
            if let RtcpIn::Rtcp(packets, arrival, from) = m
                && from.ip() == peer
            {
                for p in packets {
                    match p {
                        Rtcp::SenderReport { reports, .. }
                        | Rtcp::ReceiverReport { reports, .. } => {
                            for b in reports.iter().filter(|b| b.ssrc == ssrc) {
                                let rtt_ns = rtcp::rtt_ns(arrival, b);
                                let rtt_us =
                                    rtt_ns.map(|ns| (ns / 1000).min(u32::MAX as u64) as u32);
                                stats.add_rtcp_report(
                                    b.fraction_lost,
                                    b.cumulative_lost,
                                    b.jitter,
                                    rtt_us,
                                    now_ns,
                                );
                                if feedback.len() < 64 {
                                    feedback.push(Feedback {
                                        arrival_ns: now_ns,
                                        block: *b,
                                        rtt_ns,
                                    });
                                }
                            }
                        }
                        Rtcp::Pli { media_ssrc, .. } if media_ssrc == ssrc => {
                            stats.add_pli();
                            idr = true;
                        }
                        Rtcp::Nack {
                            media_ssrc, lost, ..
                        } if media_ssrc == ssrc => stats.add_nack(lost.len() as u64),
                        _ => {}
                    }
                }
            }
        });
        if idr && now_ns.saturating_sub(self.last_idr_request_ns) >= PLI_MIN_INTERVAL_NS {
            queue.request_idr();
            self.last_idr_request_ns = now_ns;
        }
        if let Some(ts) = rtp_ts_now
            && now_ns.saturating_sub(self.last_sr_ns) >= SR_INTERVAL_NS
        {
            self.last_sr_ns = now_ns;
            self.buf.clear();
            let info = SenderInfo {
                ntp: ntp_now(),
                rtp_ts: ts,
                packets: self.packets as u32,
                octets: self.octets as u32,
            };
            rtcp::write_sr(&mut self.buf, self.ssrc, &info, &[]);
            rtcp::write_sdes_cname(&mut self.buf, self.ssrc, &self.cname);
            self.sock.send(&self.buf);
        }
    }

    /// The report blocks about our SSRC received by the last [`Self::tick`] calls, for
    /// the rate controller (arrival = the `now_ns` of the tick that read them).
    pub fn feedback(&mut self) -> std::vec::Drain<'_, Feedback> {
        self.feedback.drain(..)
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
