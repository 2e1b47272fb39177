//! The sender's decisions, sans-IO: what the network stage does with each access unit and
//! each RTCP packet, with the time passed in and the results handed back. The stage
//! (`vr_stream::stage`) owns the sockets, the clocks and the shared memory and is a thin
//! driver around a [`SenderSession`]:
//!
//! - [`SenderSession::on_access_unit`]: an access unit (Annex-B) becomes RTP packets
//!   (RFC 6184 via [`crate::rtp::Packetizer`], 90 kHz timestamps from the capture time,
//!   abs-capture-time on the first packet), with SPS/PPS put in front once a second when
//!   nothing else repeats them (intra refresh), and its pacing plan ([`Pacer`]);
//!   [`next_batch`] says which packets are due when; after they left,
//!   [`SenderSession::protect_last`] makes the frame's FEC packets ([`crate::fec`]).
//!   [`SenderSession::media`] / [`SenderSession::fec`] hold them until the next access
//!   unit.
//! - [`SenderSession::on_rtcp`]: receiver reports about our SSRC (loss, jitter, RTT from
//!   LSR/DLSR) → [`Event::Report`] and the rate controller ([`crate::abr`]); PLIs → an
//!   [`Event::RequestIdr`] at most once per [`PLI_MIN_INTERVAL_NS`]; NACKs counted.
//!   Feedback is obeyed only from the receiver's host and only when it names our SSRC as
//!   its media source (RFC 4585 §6.1): the RTCP port is reachable by anyone on the Wi-Fi,
//!   and a PLI from elsewhere would force IDRs. The rest is counted ([`Ignored`]).
//! - [`SenderSession::sender_report`]: an RTCP SR (RFC 3550 §6.4.1) once per
//!   [`SR_INTERVAL_NS`] after the first frame, with the RTP timestamp of that instant.
//! - [`SenderSession::set_web_target`]: the encoder's bitrate is the lower of the rate
//!   controller's target and the web stage's ([`Event::Bitrate`] when it changes).
//!
//! Every instant is CLOCK_MONOTONIC ([`MonotonicNs`]) except NTP times (RFC 5905 64-bit,
//! the wall clock), which the caller reads; intervals are ns (`_NS` constants).

use crate::abr::{AbrParams, Change, Feedback, RateController};
use crate::fec::{FecEncoder, FecError};
use crate::pacing::Pacer;
use crate::rtcp::{Rtcp, SenderInfo};
use crate::rtp::{self, PacketBuf, PacketizeError, Packetizer, RtpParams};
use crate::time::MonotonicNs;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroU64;

/// Sender-report interval, ns.
pub const SR_INTERVAL_NS: u64 = 1_000_000_000;
/// PLIs closer together than this after an honoured one are counted but ask for no new
/// IDR (a receiver may send one per broken frame until the IDR arrives), ns.
pub const PLI_MIN_INTERVAL_NS: u64 = 20_000_000;
/// Packets due within this much of now go out in the same batch ([`next_batch`]): a
/// timer wake-up costs 50–250 µs on a VM and tens of µs on a Pi core, so waking for every
/// 1.2 kB packet (96 µs apart at 100 Mbit/s) would stretch the pacing by that much per
/// packet. 250 µs at 100 Mbit/s is about 3 kB: far below what a Wi-Fi queue holds. ns.
pub const PACING_SLACK_NS: u64 = 250_000;

/// Where a restarted network stage continues the stream: same SSRC, next sequence number,
/// same timestamp mapping (kept in the control segment between stage processes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpState {
    /// SSRC.
    pub ssrc: u32,
    /// Sequence number of the next packet.
    pub next_seq: u16,
    /// Random RTP timestamp offset.
    pub ts_offset: u32,
    /// Capture time that maps to `ts_offset`.
    pub base: MonotonicNs,
}

/// What the session is configured with (from `[stream]`, `[encoder]` and `[abr]`, plus
/// the random starting values the stage draws from the OS).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// SSRC, payload type, payload size and the abs-capture-time extension id.
    pub rtp: RtpParams,
    /// Sequence number of the first packet.
    pub first_seq: u16,
    /// RTP timestamp of the first frame (random, RFC 3550 §5.1).
    pub ts_offset: u32,
    /// Capture time that maps to `ts_offset` when continuing a stream (`None`: the first
    /// access unit's).
    pub base: Option<MonotonicNs>,
    /// The FEC packets protecting each access unit (`None`: no FEC).
    pub fec: Option<FecParams>,
    /// Bytes of a frame sent at once before pacing starts (0: no pacing).
    pub burst_bytes: u64,
    /// Pacing rate, kbit/s (0: no pacing).
    pub pacing_kbps: u32,
    /// Frame interval, ns (a frame's packets leave within 0.75 of it).
    pub frame_interval_ns: u64,
    /// SPS/PPS to put in front of access units between IDRs (`None`: never; the stage
    /// sets it for intra refresh, which has no IDR after the first frame).
    pub resend_headers: Option<HeaderResend>,
    /// The rate controller's settings (`None`: the bitrate is not adapted to reports).
    pub abr: Option<AbrParams>,
    /// The encoder's bitrate at the start, kbit/s.
    pub bitrate_kbps: u32,
    /// The receiver's host: feedback from any other address is ignored.
    pub receiver: IpAddr,
}

/// A session's FEC ([`crate::fec`]: Reed-Solomon over each access unit's packets, sent
/// to the RTP port + 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecParams {
    /// Overhead, per cent of the media packets (rounded up to whole packets; 0 makes
    /// none).
    pub percent: u32,
    /// Payload type of the FEC packets.
    pub payload_type: u8,
    /// Sequence number of the first FEC packet (its own sequence, random).
    pub first_seq: u16,
}

/// The parameter sets a session repeats in band ([`SessionConfig::resend_headers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderResend {
    /// SPS and PPS, Annex-B (RFC 6184 §8.1 allows them in band as well as in the SDP).
    pub sps_pps: Vec<u8>,
    /// Put in front of the access unit `every` frames after the last IDR or the last
    /// repeat.
    pub every: NonZeroU64,
}

/// One access unit for [`SenderSession::on_access_unit`].
#[derive(Debug, Clone, Copy)]
pub struct AccessUnit<'a> {
    /// Annex-B bytes.
    pub data: &'a [u8],
    /// Capture time.
    pub capture: MonotonicNs,
    /// Capture time on the wall clock, NTP (sent as abs-capture-time).
    pub capture_ntp: u64,
    /// An IDR access unit.
    pub keyframe: bool,
}

/// What [`SenderSession::on_access_unit`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// RTP packets in [`SenderSession::media`].
    pub packets: usize,
    /// When the packets may leave (`None`: all at once).
    pub pacer: Option<Pacer>,
    /// SPS/PPS were put in front of this access unit.
    pub with_headers: bool,
    /// Where a restarted stage would continue.
    pub state: RtpState,
}

/// Something the driver has to act on, from [`SenderSession::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Ask the encoder for an IDR (a receiver's PLI).
    RequestIdr,
    /// A PLI about our stream was received (honoured or coalesced).
    Pli,
    /// A generic NACK about our stream asked for this many packets (counted; no
    /// retransmission).
    Nack(u64),
    /// A report block about our stream (for the stats segment).
    Report {
        /// The block.
        block: crate::rtcp::ReportBlock,
        /// Round trip from its LSR/DLSR, ns.
        rtt_ns: Option<u64>,
    },
    /// The rate controller changed its target (for the log).
    Adapted(Change),
    /// Set the encoder's bitrate to this, kbit/s.
    Bitrate(u32),
}

/// Feedback received and ignored, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ignored {
    /// RTCP packets from a host that is not the receiver.
    pub foreign_host: u64,
    /// PLIs, NACKs and report blocks naming another SSRC.
    pub other_ssrc: u64,
}

/// Which packets of a frame to send now ([`next_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Send packets `from..end` now; `bytes_before` of the frame are then out.
    Send {
        /// One past the last packet to send.
        end: usize,
        /// Bytes of the frame sent after this batch.
        bytes_before: u64,
    },
    /// Nothing is due before this time.
    WaitUntil(MonotonicNs),
}

/// The next batch of a paced frame: `sizes(i)` is packet `i`'s length, `n` the packet
/// count, `from` the first packet not sent yet and `bytes_before` the bytes sent before
/// it; the frame's first packet left at `start`. Packets due within
/// [`PACING_SLACK_NS`] of `now` go together. `from < n` is required.
pub fn next_batch(
    pacer: &Pacer,
    sizes: impl Fn(usize) -> usize,
    n: usize,
    (from, bytes_before): (usize, u64),
    start: MonotonicNs,
    now: MonotonicNs,
) -> Batch {
    let (mut end, mut b) = (from, bytes_before);
    while end < n && start.0 + pacer.due_ns(b) <= now.0 + PACING_SLACK_NS {
        b += sizes(end) as u64;
        end += 1;
    }
    if end == from {
        Batch::WaitUntil(MonotonicNs(start.0 + pacer.due_ns(bytes_before)))
    } else {
        Batch::Send {
            end,
            bytes_before: b,
        }
    }
}

/// The network stage's state: see the module documentation.
#[derive(Debug)]
pub struct SenderSession {
    cfg: SessionConfig,
    packetizer: Packetizer,
    base: Option<MonotonicNs>,
    fec: FecEncoder,
    media: PacketBuf,
    fec_out: PacketBuf,
    with_headers: Vec<u8>,
    since_headers: u64,
    abr: Option<RateController>,
    rtp_target_kbps: u32,
    web_target_kbps: Option<u32>,
    applied_kbps: u32,
    last_idr_request: Option<MonotonicNs>,
    last_sr: Option<MonotonicNs>,
    packets: u64,
    octets: u64,
    events: VecDeque<Event>,
    ignored: Ignored,
}

impl SenderSession {
    /// A session with `cfg`; nothing is sent before the first access unit.
    pub fn new(cfg: SessionConfig) -> SenderSession {
        SenderSession {
            packetizer: Packetizer::new(cfg.rtp, cfg.first_seq),
            base: cfg.base,
            fec: FecEncoder::new(cfg.fec.map_or(0, |f| f.first_seq)),
            media: PacketBuf::with_capacity(2 << 20),
            fec_out: PacketBuf::with_capacity(1 << 20),
            with_headers: Vec::with_capacity(1 << 20),
            since_headers: 0,
            abr: cfg.abr.map(RateController::new),
            rtp_target_kbps: cfg.bitrate_kbps,
            web_target_kbps: None,
            applied_kbps: cfg.bitrate_kbps,
            last_idr_request: None,
            last_sr: None,
            packets: 0,
            octets: 0,
            events: VecDeque::with_capacity(16),
            ignored: Ignored::default(),
            cfg,
        }
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.cfg.rtp.ssrc
    }

    /// Where the stream is now (for a restarted stage).
    pub fn state(&self) -> Option<RtpState> {
        Some(RtpState {
            ssrc: self.cfg.rtp.ssrc,
            next_seq: self.packetizer.next_seq(),
            ts_offset: self.cfg.ts_offset,
            base: self.base?,
        })
    }

    /// The 90 kHz RTP timestamp of instant `at` (`None` before the first access unit).
    pub fn rtp_timestamp(&self, at: MonotonicNs) -> Option<u32> {
        Some(rtp::rtp_timestamp_90k(at, self.base?, self.cfg.ts_offset))
    }

    /// Makes the RTP packets of `au` ([`Self::media`]), its FEC packets ([`Self::fec`])
    /// and its pacing plan.
    ///
    /// Errors: the packetizer's ([`PacketizeError`]: no NAL unit in `au`, payload size
    /// below 64); nothing is then to be sent and the state is unchanged.
    pub fn on_access_unit(&mut self, au: AccessUnit<'_>) -> Result<Frame, PacketizeError> {
        let base = self.base.unwrap_or(au.capture);
        let ts = rtp::rtp_timestamp_90k(au.capture, base, self.cfg.ts_offset);
        let since = if au.keyframe {
            0
        } else {
            self.since_headers + 1
        };
        let resend = self.cfg.resend_headers.as_ref();
        let resend = resend.filter(|r| since >= r.every.get());
        let with_headers = resend.is_some();
        let data = if let Some(r) = resend {
            self.with_headers.clear();
            self.with_headers.extend_from_slice(&r.sps_pps);
            self.with_headers.extend_from_slice(au.data);
            &self.with_headers[..]
        } else {
            au.data
        };
        let packets = self
            .packetizer
            .packetize(data, ts, Some(au.capture_ntp), &mut self.media)?;
        self.base = Some(base);
        self.since_headers = if with_headers { 0 } else { since };
        self.fec_out.clear();
        let pacer = Pacer::plan(
            self.media.bytes() as u64,
            self.cfg.burst_bytes,
            self.cfg.pacing_kbps,
            self.cfg.frame_interval_ns,
        );
        Ok(Frame {
            packets,
            pacer,
            with_headers,
            state: RtpState {
                ssrc: self.cfg.rtp.ssrc,
                next_seq: self.packetizer.next_seq(),
                ts_offset: self.cfg.ts_offset,
                base,
            },
        })
    }

    /// The RTP packets of the last access unit.
    pub fn media(&self) -> &PacketBuf {
        &self.media
    }

    /// Makes the FEC packets of the last access unit ([`Self::fec`]; none when FEC is
    /// off). Called once its media packets have left: the Reed-Solomon encoding is then
    /// not on the media's latency path. Returns how many.
    ///
    /// Errors: [`FecError`] when the frame has more packets than the code allows; the
    /// frame then goes unprotected.
    pub fn protect_last(&mut self) -> Result<usize, FecError> {
        self.fec_out.clear();
        match self.cfg.fec {
            Some(f) if !self.media.is_empty() => {
                let out = &mut self.fec_out;
                self.fec
                    .protect(&self.media, f.percent, f.payload_type, out)
            }
            _ => Ok(0),
        }
    }

    /// The FEC packets of the last access unit (to the RTP port + 2), once
    /// [`Self::protect_last`] made them.
    pub fn fec(&self) -> &PacketBuf {
        &self.fec_out
    }

    /// Counts media packets that left (`bytes`: whole packets): the SR's counts (payload
    /// octets estimated as bytes − 12 per packet) and the rate controller's sent rate.
    pub fn on_sent(&mut self, packets: u64, bytes: u64) {
        self.packets += packets;
        self.octets += bytes.saturating_sub(12 * packets);
        if let Some(a) = self.abr.as_mut() {
            a.on_sent(packets, bytes);
        }
    }

    /// Handles one compound RTCP packet from `from`, received at `now` and `arrival_ntp`
    /// (the wall clock as NTP, for the RTT).
    pub fn on_rtcp(&mut self, now: MonotonicNs, arrival_ntp: u64, from: IpAddr, packets: &[Rtcp]) {
        if from != self.cfg.receiver {
            self.ignored.foreign_host += 1;
            return;
        }
        let ssrc = self.cfg.rtp.ssrc;
        let mut pli = false;
        for p in packets {
            match p {
                Rtcp::SenderReport { reports, .. } | Rtcp::ReceiverReport { reports, .. } => {
                    for b in reports {
                        if b.ssrc != ssrc {
                            self.ignored.other_ssrc += 1;
                            continue;
                        }
                        let rtt_ns = crate::rtcp::rtt_ns(arrival_ntp, b);
                        self.events.push_back(Event::Report { block: *b, rtt_ns });
                        let fb = Feedback {
                            arrival_ns: now.0,
                            block: *b,
                            rtt_ns,
                        };
                        if let Some(ch) = self.abr.as_mut().and_then(|a| a.on_report(fb)) {
                            self.rtp_target_kbps = ch.to_kbps;
                            self.events.push_back(Event::Adapted(ch));
                        }
                    }
                }
                Rtcp::Pli { media_ssrc, .. } if *media_ssrc == ssrc => {
                    self.events.push_back(Event::Pli);
                    pli = true;
                }
                Rtcp::Nack {
                    media_ssrc, lost, ..
                } if *media_ssrc == ssrc => self.events.push_back(Event::Nack(lost.len() as u64)),
                Rtcp::Pli { .. } | Rtcp::Nack { .. } => self.ignored.other_ssrc += 1,
                _ => {}
            }
        }
        if pli
            && self
                .last_idr_request
                .is_none_or(|t| now.0.saturating_sub(t.0) >= PLI_MIN_INTERVAL_NS)
        {
            self.last_idr_request = Some(now);
            self.events.push_back(Event::RequestIdr);
        }
        self.apply_bitrate();
    }

    /// The web stage's target (the lowest of its WebRTC peers' controllers; `None`: no
    /// peer): the encoder gets the lower of it and this session's.
    pub fn set_web_target(&mut self, kbps: Option<u32>) {
        self.web_target_kbps = kbps;
        self.apply_bitrate();
    }

    fn apply_bitrate(&mut self) {
        let want = self
            .web_target_kbps
            .map_or(self.rtp_target_kbps, |w| w.min(self.rtp_target_kbps));
        if want != self.applied_kbps {
            self.applied_kbps = want;
            self.events.push_back(Event::Bitrate(want));
        }
    }

    /// The next thing to act on, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feedback ignored so far.
    pub fn ignored(&self) -> Ignored {
        self.ignored
    }

    /// The sender info of an SR when one is due at `now` (none before the first access
    /// unit, then one per [`SR_INTERVAL_NS`]); `ntp_now` is the wall clock at `now`.
    /// The caller sends it with its SDES CNAME ([`crate::rtcp::write_sr`]).
    pub fn sender_report(&mut self, now: MonotonicNs, ntp_now: u64) -> Option<SenderInfo> {
        let rtp_ts = self.rtp_timestamp(now)?;
        if self
            .last_sr
            .is_some_and(|t| now.0.saturating_sub(t.0) < SR_INTERVAL_NS)
        {
            return None;
        }
        self.last_sr = Some(now);
        Some(SenderInfo {
            ntp: ntp_now,
            rtp_ts,
            // RFC 3550 §6.4.1: both counts wrap.
            packets: self.packets as u32,
            octets: self.octets as u32,
        })
    }

    /// When the session next has something to do without new input: the next SR (`None`
    /// before the first access unit; `MonotonicNs(0)`, at once, before the first SR).
    pub fn poll_timeout(&self) -> Option<MonotonicNs> {
        self.base?;
        Some(MonotonicNs(
            self.last_sr.map_or(0, |t| t.0 + SR_INTERVAL_NS),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::ReportBlock;

    const F60: u64 = 16_666_667;
    const RECEIVER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 100));
    const SSRC: u32 = 0x5eed_cafe;

    fn cfg() -> SessionConfig {
        SessionConfig {
            rtp: RtpParams {
                ssrc: SSRC,
                payload_type: 96,
                payload_size: 1200,
                capture_time_ext_id: Some(1),
            },
            first_seq: 65_500,
            ts_offset: 1000,
            base: None,
            fec: Some(FecParams {
                percent: 20,
                payload_type: 127,
                first_seq: 7,
            }),
            burst_bytes: 24_000,
            pacing_kbps: 100_000,
            frame_interval_ns: F60,
            resend_headers: None,
            abr: None,
            bitrate_kbps: 8000,
            receiver: RECEIVER,
        }
    }

    /// A rate controller between 1 and 8 Mbit/s.
    fn abr() -> Option<AbrParams> {
        Some(AbrParams {
            min_kbps: 1000,
            max_kbps: 8000,
            loss_high_percent: 10,
            loss_low_percent: 2,
            delay_ms: 30,
            increase_percent: 8,
            backoff_percent: 85,
        })
    }

    /// An Annex-B access unit: one slice NAL unit (type 5 = IDR, 1 = non-IDR) of `len`
    /// bytes of a pattern.
    fn au(idr: bool, len: usize, seed: u8) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, if idr { 0x65 } else { 0x41 }];
        v.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1));
        v
    }

    fn events(s: &mut SenderSession) -> Vec<Event> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn pli(media_ssrc: u32) -> Rtcp {
        Rtcp::Pli {
            sender_ssrc: 1,
            media_ssrc,
        }
    }

    fn rr(ssrc: u32, fraction_lost: u8, highest: u32) -> Rtcp {
        Rtcp::ReceiverReport {
            ssrc: 1,
            reports: vec![ReportBlock {
                ssrc,
                fraction_lost,
                cumulative_lost: 0,
                ext_highest_seq: highest,
                jitter: 0,
                lsr: 0,
                dlsr: 0,
            }],
        }
    }

    #[test]
    fn a_lost_packet_is_rebuilt_by_the_receiver_from_the_fec_packets() {
        use crate::receiver::{Receiver, ReceiverConfig, Verdict};
        let mut s = SenderSession::new(cfg());
        let mut rx = Receiver::new(ReceiverConfig {
            payload_type: 96,
            capture_time_ext_id: 1,
            reorder_window_ns: 5_000_000,
            fec_payload_type: 127,
        });
        let mut out = vec![];
        for i in 0..4u64 {
            let data = au(i == 0, 30_000, i as u8);
            let t = 1_000_000_000 + i * F60;
            let f = s
                .on_access_unit(AccessUnit {
                    data: &data,
                    capture: MonotonicNs(t),
                    capture_ntp: 0,
                    keyframe: i == 0,
                })
                .unwrap();
            assert_eq!(f.packets, s.media().len());
            let fec = s.protect_last().unwrap();
            assert!(fec >= 1 && fec == s.fec().len(), "{fec} FEC packets");
            // The link loses the frame's third packet; the FEC packets arrive.
            for (k, p) in s.media().iter().enumerate() {
                if k != 2 {
                    rx.on_packet(p, MonotonicNs(t));
                }
            }
            for p in s.fec().iter() {
                rx.on_fec(p, MonotonicNs(t));
            }
            while let Some(fr) = rx.poll(MonotonicNs(t + 10_000_000)) {
                out.push((fr, data.clone()));
            }
        }
        while let Some(fr) = rx.drain() {
            out.push((fr, vec![]));
        }
        assert_eq!(out.len(), 4);
        for (fr, data) in &out[..3] {
            assert_eq!(fr.verdict, Verdict::Recovered);
            assert_eq!(&fr.au, data, "the access unit is rebuilt bit for bit");
        }
        // Sequence numbers wrapped (65,500 + ~100 packets) without a loss.
        assert_eq!(rx.counts().lost, 0);
    }

    #[test]
    fn timestamps_follow_the_capture_clock_and_a_restart_continues_them() {
        let mut s = SenderSession::new(cfg());
        let data = au(true, 500, 0);
        let mut ts = vec![];
        for i in 0..3u64 {
            s.on_access_unit(AccessUnit {
                data: &data,
                capture: MonotonicNs(5_000_000_000 + i * F60),
                capture_ntp: 0,
                keyframe: true,
            })
            .unwrap();
            let p = crate::rtp::parse_rtp(s.media().get(0), 1).unwrap();
            ts.push(p.timestamp);
        }
        assert_eq!(ts, vec![1000, 2500, 4000], "90 kHz: 1500 ticks per 1/60 s");
        // A restarted stage given the state continues the sequence and the mapping.
        let st = s.state().unwrap();
        let mut c = cfg();
        (c.first_seq, c.ts_offset, c.base) = (st.next_seq, st.ts_offset, Some(st.base));
        let mut s2 = SenderSession::new(c);
        s2.on_access_unit(AccessUnit {
            data: &data,
            capture: MonotonicNs(5_000_000_000 + 3 * F60),
            capture_ntp: 0,
            keyframe: true,
        })
        .unwrap();
        let p = crate::rtp::parse_rtp(s2.media().get(0), 1).unwrap();
        assert_eq!((p.seq, p.timestamp), (st.next_seq, 5500));
    }

    #[test]
    fn a_pli_burst_asks_for_one_idr_per_20_ms() {
        let mut s = SenderSession::new(cfg());
        // A receiver repeating its PLI every 5 ms for 100 ms, two per compound packet.
        let mut idrs = vec![];
        let mut plis = 0;
        for k in 0..20u64 {
            let now = 1_000_000_000 + k * 5_000_000;
            s.on_rtcp(MonotonicNs(now), 0, RECEIVER, &[pli(SSRC), pli(SSRC)]);
            for e in events(&mut s) {
                match e {
                    Event::RequestIdr => idrs.push(now),
                    Event::Pli => plis += 1,
                    e => panic!("unexpected {e:?}"),
                }
            }
        }
        assert_eq!(plis, 40, "every PLI is counted");
        assert_eq!(idrs.len(), 5, "one IDR per 20 ms: {idrs:?}");
        assert!(idrs.windows(2).all(|w| w[1] - w[0] >= PLI_MIN_INTERVAL_NS));
    }

    #[test]
    fn feedback_from_another_host_or_about_another_ssrc_changes_nothing() {
        let mut c = cfg();
        c.abr = abr();
        let mut s = SenderSession::new(c);
        let other: IpAddr = "192.168.1.66".parse().unwrap();
        for k in 0..1000u64 {
            let now = 1_000_000_000 + k * 1_000_000;
            // Another host: PLIs naming us, reports of total loss about us.
            s.on_rtcp(
                MonotonicNs(now),
                0,
                other,
                &[pli(SSRC), rr(SSRC, 255, k as u32)],
            );
            // The receiver's host, but about SSRC 0 and another stream.
            s.on_rtcp(
                MonotonicNs(now),
                0,
                RECEIVER,
                &[pli(0), pli(SSRC ^ 1), rr(SSRC ^ 1, 255, 0)],
            );
        }
        assert_eq!(
            events(&mut s),
            vec![],
            "no IDR, no count, no bitrate change"
        );
        assert_eq!(
            s.ignored(),
            Ignored {
                foreign_host: 1000,
                other_ssrc: 3000
            }
        );
        // The receiver's own PLI still works.
        s.on_rtcp(MonotonicNs(3_000_000_000), 0, RECEIVER, &[pli(SSRC)]);
        assert_eq!(events(&mut s), vec![Event::Pli, Event::RequestIdr]);
    }

    #[test]
    fn an_idr_burst_leaves_paced_and_within_three_quarters_of_a_frame() {
        let mut c = cfg();
        c.fec = None;
        let mut s = SenderSession::new(c);
        let data = au(true, 150_000, 3);
        let f = s
            .on_access_unit(AccessUnit {
                data: &data,
                capture: MonotonicNs(1_000_000_000),
                capture_ntp: 0,
                keyframe: true,
            })
            .unwrap();
        let pacer = f.pacer.expect("150 kB is over the 24 kB burst");
        // Simulated driver: sends what is due, else jumps to when the next packet is.
        let (media, start) = (s.media(), 2_000_000_000u64);
        let (mut now, mut from, mut before) = (start, 0usize, 0u64);
        let mut batches = vec![];
        while from < media.len() {
            match next_batch(
                &pacer,
                |i| media.get(i).len(),
                media.len(),
                (from, before),
                MonotonicNs(start),
                MonotonicNs(now),
            ) {
                Batch::Send { end, bytes_before } => {
                    batches.push((now, from..end));
                    (from, before) = (end, bytes_before);
                }
                Batch::WaitUntil(MonotonicNs(t)) => {
                    assert!(t > now, "a wait is for the future");
                    now = t;
                }
            }
        }
        let first = &batches[0];
        let burst: usize = first.1.clone().map(|i| media.get(i).len()).sum();
        assert_eq!(first.0, start);
        // The 24 kB burst, the packet that crosses it, and what is due within the slack
        // (250 µs at 100 Mbit/s: 3125 B).
        let slack = (pacer.rate_kbps() * 1000.0 / 8.0 * PACING_SLACK_NS as f64 / 1e9) as usize;
        assert!(
            (24_000..=24_000 + slack + 2 * 1300).contains(&burst),
            "the burst: {burst} B (slack {slack} B)"
        );
        let (last_at, _) = batches.last().unwrap();
        let spread = last_at - start;
        assert!(
            spread <= (F60 as f64 * crate::pacing::MAX_SPREAD) as u64,
            "spread {spread} ns"
        );
        // 126 kB after the burst at 100 Mbit/s is ~10 ms: the configured rate held.
        assert!(spread >= 9_000_000, "spread {spread} ns");
        assert!(batches.len() > 20, "{} batches", batches.len());
        // Never ahead of the schedule by more than the slack.
        let mut sent = 0u64;
        for (at, r) in &batches {
            assert!(start + pacer.due_ns(sent) <= at + PACING_SLACK_NS);
            sent += r.clone().map(|i| media.get(i).len() as u64).sum::<u64>();
        }
    }

    #[test]
    fn sender_reports_come_once_a_second_after_the_first_frame() {
        let mut s = SenderSession::new(cfg());
        assert_eq!(
            s.sender_report(MonotonicNs(1_000_000_000), 77),
            None,
            "no frame yet"
        );
        assert_eq!(s.poll_timeout(), None);
        let data = au(true, 2000, 0);
        s.on_access_unit(AccessUnit {
            data: &data,
            capture: MonotonicNs(1_000_000_000),
            capture_ntp: 0,
            keyframe: true,
        })
        .unwrap();
        s.on_sent(3, 2000 + 3 * 12);
        let mut srs = vec![];
        for k in 0..=300u64 {
            let now = 1_000_000_000 + k * 10_000_000; // every 10 ms for 3 s
            if let Some(sr) = s.sender_report(MonotonicNs(now), now) {
                srs.push((now, sr));
            }
        }
        let at: Vec<u64> = srs.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            at,
            vec![1_000_000_000, 2_000_000_000, 3_000_000_000, 4_000_000_000]
        );
        let (t, sr) = srs[1];
        assert_eq!(sr.rtp_ts, 1000 + 90_000, "the RTP time of that instant");
        assert_eq!((sr.ntp, sr.packets, sr.octets), (t, 3, 2000));
        assert_eq!(s.poll_timeout(), Some(MonotonicNs(5_000_000_000)));
    }

    #[test]
    fn a_loss_step_lowers_the_bitrate_and_the_web_target_caps_it() {
        let mut c = cfg();
        c.abr = abr();
        let mut s = SenderSession::new(c);
        // 8 Mbit/s sent and reported clean every 100 ms for 2 s, then 25% loss.
        let mut seq = 0u32;
        let mut bitrates = vec![];
        for k in 0..40u64 {
            let now = 1_000_000_000 + k * 100_000_000;
            s.on_sent(85, 85 * 1200); // 100 ms of 8 Mbit/s
            seq += 85;
            let lost = if k < 20 { 0 } else { 64 };
            s.on_rtcp(MonotonicNs(now), 0, RECEIVER, &[rr(SSRC, lost, seq)]);
            for e in events(&mut s) {
                if let Event::Bitrate(b) = e {
                    bitrates.push((k, b));
                }
            }
        }
        let (k, first) = bitrates[0];
        assert!(
            k >= 20,
            "no change while clean at the maximum: {bitrates:?}"
        );
        assert!(first < 8000, "{bitrates:?}");
        let low = bitrates.last().unwrap().1;
        // The web stage's peers want less still: the encoder gets theirs; then more: ours.
        s.set_web_target(Some(low / 2));
        assert_eq!(events(&mut s), vec![Event::Bitrate(low / 2)]);
        s.set_web_target(Some(20_000));
        assert_eq!(events(&mut s), vec![Event::Bitrate(low)]);
        s.set_web_target(None);
        assert_eq!(events(&mut s), vec![]);
    }

    #[test]
    fn with_intra_refresh_the_parameter_sets_go_in_band_once_a_second() {
        let mut c = cfg();
        c.resend_headers = Some(HeaderResend {
            sps_pps: vec![0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 0, 1, 0x68, 4, 5],
            every: NonZeroU64::new(60).unwrap(),
        });
        let mut s = SenderSession::new(c);
        let mut with = vec![];
        for i in 0..200u64 {
            let data = au(i == 0, 800, i as u8);
            let f = s
                .on_access_unit(AccessUnit {
                    data: &data,
                    capture: MonotonicNs(1_000_000_000 + i * F60),
                    capture_ntp: 0,
                    keyframe: i == 0,
                })
                .unwrap();
            if f.with_headers {
                with.push(i);
                // STAP-A (RFC 6184 §5.7.1) or the SPS as the first NAL unit.
                let p = crate::rtp::parse_rtp(s.media().get(0), 1).unwrap();
                assert!(matches!(p.payload[0] & 0x1f, 24 | 7), "{:x}", p.payload[0]);
            }
        }
        assert_eq!(with, vec![60, 120, 180]);
    }

    #[test]
    fn an_empty_access_unit_is_an_error_and_changes_nothing() {
        let mut s = SenderSession::new(cfg());
        assert!(
            s.on_access_unit(AccessUnit {
                data: &[0, 0, 0, 1],
                capture: MonotonicNs(1),
                capture_ntp: 0,
                keyframe: false,
            })
            .is_err()
        );
        assert_eq!(s.media().len(), 0);
    }
}
