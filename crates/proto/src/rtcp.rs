//! RTCP: sender and receiver reports, SDES CNAME and BYE (RFC 3550 §6), the feedback
//! messages PLI and generic NACK (RFC 4585 §6.2.1, §6.3.1), and the receiver-side
//! statistics behind a report block (RFC 3550 Appendix A.1, A.3, A.8).
//!
//! Pure code: builders append to a caller's `Vec<u8>`, the parser borrows the datagram,
//! and every time is passed in (NTP timestamps, 90 kHz arrival ticks), so it can be fuzzed
//! and run on simulated time. Compound packets are parsed leniently: reduced-size RTCP
//! (RFC 5506: a lone PLI, as browsers send) is accepted, unknown packet types are returned
//! as [`Rtcp::Other`] and skipped, and report blocks about other SSRCs are the caller's
//! to ignore (ffmpeg's own receiver reports, for instance, are ordinary RRs).

/// Sender report (RFC 3550 §6.4.1).
pub const PT_SR: u8 = 200;
/// Receiver report (§6.4.2).
pub const PT_RR: u8 = 201;
/// Source description (§6.5).
pub const PT_SDES: u8 = 202;
/// Goodbye (§6.6).
pub const PT_BYE: u8 = 203;
/// Application-defined (§6.7).
pub const PT_APP: u8 = 204;
/// Transport-layer feedback (RFC 4585 §6.2): FMT 1 = generic NACK.
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585 §6.3): FMT 1 = PLI.
pub const PT_PSFB: u8 = 206;

/// One report block of an SR or RR (RFC 3550 §6.4.1): what a receiver saw of `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | seq).
    pub ext_highest_seq: u32,
    /// Interarrival jitter, RTP timestamp units (90 kHz ticks for video).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from `ssrc` (0: none).
    pub lsr: u32,
    /// Delay since that SR was received, 1/65536 s.
    pub dlsr: u32,
}

/// The sender-info part of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// Wall-clock time of the report, NTP Q32.32.
    pub ntp: u64,
    /// The same instant in the stream's RTP timestamp (90 kHz).
    pub rtp_ts: u32,
    /// Packets sent since the start (wraps at 2^32).
    pub packets: u32,
    /// Payload octets sent since the start (wraps at 2^32).
    pub octets: u32,
}

/// One packet of a parsed compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rtcp {
    /// SR.
    SenderReport {
        /// Sender's SSRC.
        ssrc: u32,
        /// Its NTP/RTP time and counts.
        info: SenderInfo,
        /// Its reception reports.
        reports: Vec<ReportBlock>,
    },
    /// RR.
    ReceiverReport {
        /// Reporter's SSRC.
        ssrc: u32,
        /// Its reception reports.
        reports: Vec<ReportBlock>,
    },
    /// SDES: the CNAME of the first chunk.
    Sdes {
        /// Chunk SSRC.
        ssrc: u32,
        /// CNAME item, if present (lossy UTF-8).
        cname: Option<String>,
    },
    /// BYE.
    Bye {
        /// Sources leaving.
        ssrcs: Vec<u32>,
    },
    /// Picture loss indication: the receiver needs a new IDR.
    Pli {
        /// Who asks.
        sender_ssrc: u32,
        /// The media source it is about.
        media_ssrc: u32,
    },
    /// Generic NACK: these RTP sequence numbers were lost.
    Nack {
        /// Who asks.
        sender_ssrc: u32,
        /// The media source it is about.
        media_ssrc: u32,
        /// Lost sequence numbers, in the order the FCI lists them.
        lost: Vec<u16>,
    },
    /// APP (RFC 3550 §6.7): application-defined.
    App {
        /// Source.
        ssrc: u32,
        /// The 5-bit subtype.
        subtype: u8,
        /// Four ASCII characters naming the application.
        name: [u8; 4],
        /// Application data (a multiple of 4 bytes on the wire).
        data: Vec<u8>,
    },
    /// Any other packet type or feedback format (skipped).
    Other {
        /// Packet type.
        pt: u8,
        /// The 5-bit count / FMT field.
        count: u8,
    },
}

/// Why a datagram is not valid RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Shorter than one RTCP header, or a length field runs past the end.
    #[error("RTCP packet truncated at byte {0}")]
    Truncated(usize),
    /// Version is not 2.
    #[error("RTCP version {0} (expected 2)")]
    Version(u8),
    /// The packet type is not an RTCP type (200..=206, 192..=223 range checked).
    #[error("not an RTCP packet type: {0}")]
    NotRtcp(u8),
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}
fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn report_block(b: &[u8]) -> ReportBlock {
    let lost24 = u32::from_be_bytes([0, b[5], b[6], b[7]]);
    // Sign-extend the 24-bit two's complement count.
    let cumulative_lost = ((lost24 << 8) as i32) >> 8;
    ReportBlock {
        ssrc: be32(b, 0),
        fraction_lost: b[4],
        cumulative_lost,
        ext_highest_seq: be32(b, 8),
        jitter: be32(b, 12),
        lsr: be32(b, 16),
        dlsr: be32(b, 20),
    }
}

/// Parses a compound RTCP datagram into its packets.
///
/// Errors: [`RtcpError`] when the first header is not RTCP, any version is not 2 or a
/// length runs past the datagram. Report blocks beyond a packet's length are ignored.
pub fn parse_compound(b: &[u8]) -> Result<Vec<Rtcp>, RtcpError> {
    let mut out = vec![];
    let mut off = 0;
    while off < b.len() {
        let h = b.get(off..off + 4).ok_or(RtcpError::Truncated(off))?;
        let version = h[0] >> 6;
        if version != 2 {
            return Err(RtcpError::Version(version));
        }
        let count = h[0] & 0x1f;
        let pt = h[1];
        if !(192..=223).contains(&pt) {
            return Err(RtcpError::NotRtcp(pt));
        }
        let len = (be16(h, 2) as usize + 1) * 4;
        let p = b.get(off..off + len).ok_or(RtcpError::Truncated(off))?;
        // Padding (P bit) only counts in the last byte of the packet.
        let body_end = if h[0] & 0x20 != 0 {
            len.saturating_sub(*p.last().unwrap_or(&0) as usize).max(4)
        } else {
            len
        };
        let p = &p[..body_end];
        let blocks = |from: usize| -> Vec<ReportBlock> {
            (0..count as usize)
                .filter_map(|i| p.get(from + 24 * i..from + 24 * (i + 1)))
                .map(report_block)
                .collect()
        };
        out.push(match pt {
            PT_SR if p.len() >= 28 => Rtcp::SenderReport {
                ssrc: be32(p, 4),
                info: SenderInfo {
                    ntp: (be32(p, 8) as u64) << 32 | be32(p, 12) as u64,
                    rtp_ts: be32(p, 16),
                    packets: be32(p, 20),
                    octets: be32(p, 24),
                },
                reports: blocks(28),
            },
            PT_RR if p.len() >= 8 => Rtcp::ReceiverReport {
                ssrc: be32(p, 4),
                reports: blocks(8),
            },
            PT_SDES if count >= 1 && p.len() >= 8 => {
                let ssrc = be32(p, 4);
                let mut i = 8;
                let mut cname = None;
                while i + 2 <= p.len() && p[i] != 0 {
                    let (t, n) = (p[i], p[i + 1] as usize);
                    let Some(v) = p.get(i + 2..i + 2 + n) else {
                        break;
                    };
                    if t == 1 {
                        cname = Some(String::from_utf8_lossy(v).into_owned());
                        break;
                    }
                    i += 2 + n;
                }
                Rtcp::Sdes { ssrc, cname }
            }
            PT_APP if p.len() >= 12 => Rtcp::App {
                ssrc: be32(p, 4),
                subtype: count,
                name: [p[8], p[9], p[10], p[11]],
                data: p[12..].to_vec(),
            },
            PT_BYE => Rtcp::Bye {
                ssrcs: (0..count as usize)
                    .filter_map(|i| p.get(4 + 4 * i..8 + 4 * i))
                    .map(|s| be32(s, 0))
                    .collect(),
            },
            PT_PSFB if count == 1 && p.len() >= 12 => Rtcp::Pli {
                sender_ssrc: be32(p, 4),
                media_ssrc: be32(p, 8),
            },
            PT_RTPFB if count == 1 && p.len() >= 12 => {
                let mut lost = vec![];
                for f in p[12..].chunks_exact(4) {
                    let pid = be16(f, 0);
                    let blp = be16(f, 2);
                    lost.push(pid);
                    lost.extend(
                        (0..16)
                            .filter(|k| blp & (1 << k) != 0)
                            .map(|k| pid.wrapping_add(k + 1)),
                    );
                }
                Rtcp::Nack {
                    sender_ssrc: be32(p, 4),
                    media_ssrc: be32(p, 8),
                    lost,
                }
            }
            _ => Rtcp::Other { pt, count },
        });
        off += len;
    }
    if out.is_empty() {
        return Err(RtcpError::Truncated(0));
    }
    Ok(out)
}

fn header(out: &mut Vec<u8>, count: u8, pt: u8, words_after_header: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(pt);
    out.extend_from_slice(&(words_after_header as u16).to_be_bytes());
}

fn put_block(out: &mut Vec<u8>, r: &ReportBlock) {
    out.extend_from_slice(&r.ssrc.to_be_bytes());
    out.push(r.fraction_lost);
    let lost = r.cumulative_lost.clamp(-(1 << 23), (1 << 23) - 1) as u32 & 0x00ff_ffff;
    out.extend_from_slice(&lost.to_be_bytes()[1..]);
    out.extend_from_slice(&r.ext_highest_seq.to_be_bytes());
    out.extend_from_slice(&r.jitter.to_be_bytes());
    out.extend_from_slice(&r.lsr.to_be_bytes());
    out.extend_from_slice(&r.dlsr.to_be_bytes());
}

/// Appends an SR with up to 31 report blocks (more are left out).
pub fn write_sr(out: &mut Vec<u8>, ssrc: u32, info: &SenderInfo, reports: &[ReportBlock]) {
    let n = reports.len().min(31);
    header(out, n as u8, PT_SR, 6 + 6 * n);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    out.extend_from_slice(&info.rtp_ts.to_be_bytes());
    out.extend_from_slice(&info.packets.to_be_bytes());
    out.extend_from_slice(&info.octets.to_be_bytes());
    reports[..n].iter().for_each(|r| put_block(out, r));
}

/// Appends an RR with up to 31 report blocks.
pub fn write_rr(out: &mut Vec<u8>, ssrc: u32, reports: &[ReportBlock]) {
    let n = reports.len().min(31);
    header(out, n as u8, PT_RR, 1 + 6 * n);
    out.extend_from_slice(&ssrc.to_be_bytes());
    reports[..n].iter().for_each(|r| put_block(out, r));
}

/// Appends an SDES packet with one chunk holding a CNAME (up to 255 bytes).
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let c = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC + type + length + text + at least one null, padded to 32 bits.
    let chunk = 4 + 2 + c.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    header(out, 1, PT_SDES, padded / 4);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    out.push(c.len() as u8);
    out.extend_from_slice(c);
    out.extend(std::iter::repeat_n(0, padded - chunk + 1));
}

/// Appends a BYE for `ssrc`.
pub fn write_bye(out: &mut Vec<u8>, ssrc: u32) {
    header(out, 1, PT_BYE, 1);
    out.extend_from_slice(&ssrc.to_be_bytes());
}

/// Appends an APP packet (RFC 3550 §6.7) from `ssrc`: `subtype` (0..=31), the 4-byte
/// `name`, and `data` zero-padded to a multiple of 4 bytes.
pub fn write_app(out: &mut Vec<u8>, ssrc: u32, subtype: u8, name: [u8; 4], data: &[u8]) {
    let words = data.len().div_ceil(4);
    header(out, subtype & 0x1f, PT_APP, 2 + words);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&name);
    out.extend_from_slice(data);
    out.resize(out.len() + (words * 4 - data.len()), 0);
}

/// Appends a PLI (RFC 4585 §6.3.1) from `sender_ssrc` about `media_ssrc`.
pub fn write_pli(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32) {
    header(out, 1, PT_PSFB, 2);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
}

/// Appends a generic NACK (RFC 4585 §6.2.1) listing `lost` (any order; each PID covers
/// itself and the 16 following sequence numbers through its bitmask).
pub fn write_nack(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32, lost: &[u16]) {
    let mut fci: Vec<(u16, u16)> = vec![];
    let mut sorted = lost.to_vec();
    // Sort in sequence-number order around the first one (wrap-safe).
    if let Some(&first) = sorted.first() {
        sorted.sort_by_key(|&s| s.wrapping_sub(first));
        sorted.dedup();
    }
    for s in sorted {
        match fci.last_mut() {
            Some((pid, blp)) if s.wrapping_sub(*pid) >= 1 && s.wrapping_sub(*pid) <= 16 => {
                *blp |= 1 << (s.wrapping_sub(*pid) - 1)
            }
            _ => fci.push((s, 0)),
        }
    }
    header(out, 1, PT_RTPFB, 2 + fci.len());
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    for (pid, blp) in fci {
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&blp.to_be_bytes());
    }
}

/// The middle 32 bits of an NTP Q32.32 timestamp (the LSR / DLSR time base, 1/65536 s).
pub fn ntp_middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round-trip time from a report block received at `arrival_ntp` (RFC 3550 §6.4.1:
/// A − LSR − DLSR), in ns; `None` when the block refers to no SR (LSR 0) or the result is
/// negative (clock steps).
pub fn rtt_ns(arrival_ntp: u64, block: &ReportBlock) -> Option<u64> {
    if block.lsr == 0 {
        return None;
    }
    let a = ntp_middle32(arrival_ntp);
    let rtt = a.wrapping_sub(block.lsr).wrapping_sub(block.dlsr);
    if rtt > u32::MAX / 2 {
        return None;
    }
    Some(rtt as u64 * 1_000_000_000 / 65536)
}

/// Receiver-side statistics of one RTP source, as RFC 3550 Appendix A keeps them: the
/// extended highest sequence number (A.1), packets expected and lost and the fraction lost
/// per report interval (A.3), and the interarrival jitter (A.8), in 90 kHz ticks.
#[derive(Debug, Clone, Default)]
pub struct ReceptionStats {
    started: bool,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    transit: i64,
    jitter_q4: i64,
    last_sr_mid: u32,
    last_sr_arrival_ntp: u64,
}

impl ReceptionStats {
    /// No packets seen yet.
    pub fn new() -> ReceptionStats {
        ReceptionStats::default()
    }

    /// Records one RTP packet: its sequence number and timestamp, and its arrival time in
    /// 90 kHz ticks of the receiver's clock (any origin).
    pub fn on_packet(&mut self, seq: u16, rtp_ts: u32, arrival_90k: u64) {
        if !self.started {
            self.started = true;
            self.base_seq = seq as u32;
            self.max_seq = seq;
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = seq;
            }
        }
        self.received += 1;
        let transit = arrival_90k as i64 - rtp_ts as i64;
        if self.received > 1 {
            // Compare transits modulo 2^32 (RTP timestamps wrap).
            let d = ((transit - self.transit) as i32 as i64).abs();
            // J += (|D| - J) / 16, kept ×16 (A.8).
            self.jitter_q4 += d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = transit;
    }

    /// Records an SR from the source, received at `arrival_ntp` (for LSR/DLSR).
    pub fn on_sender_report(&mut self, sr_ntp: u64, arrival_ntp: u64) {
        self.last_sr_mid = ntp_middle32(sr_ntp);
        self.last_sr_arrival_ntp = arrival_ntp;
    }

    /// Extended highest sequence number received.
    pub fn ext_highest_seq(&self) -> u32 {
        self.cycles + self.max_seq as u32
    }

    /// Packets expected so far (from the sequence numbers).
    pub fn expected(&self) -> u64 {
        if !self.started {
            0
        } else {
            (self.ext_highest_seq() as u64 + 1).saturating_sub(self.base_seq as u64)
        }
    }

    /// Packets received so far (duplicates included, as A.3 counts them).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Cumulative loss (expected − received; negative with duplicates).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter, 90 kHz ticks.
    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }

    /// The report block about `ssrc` for a report sent at `now_ntp`; starts a new interval
    /// for the fraction lost.
    pub fn report_block(&mut self, ssrc: u32, now_ntp: u64) -> ReportBlock {
        let expected = self.expected();
        let interval_expected = expected - self.expected_prior.min(expected);
        let interval_received = self.received - self.received_prior.min(self.received);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let interval_lost = interval_expected as i64 - interval_received as i64;
        let fraction_lost = if interval_expected == 0 || interval_lost <= 0 {
            0
        } else {
            ((interval_lost << 8) / interval_expected as i64).min(255) as u8
        };
        let dlsr = if self.last_sr_mid == 0 {
            0
        } else {
            ntp_middle32(now_ntp).wrapping_sub(ntp_middle32(self.last_sr_arrival_ntp))
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-(1 << 23), (1 << 23) - 1) as i32,
            ext_highest_seq: self.ext_highest_seq(),
            jitter: self.jitter(),
            lsr: self.last_sr_mid,
            dlsr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sr_sdes_round_trip_as_one_compound() {
        let info = SenderInfo {
            ntp: 0xE1B2_C3D4_8000_0000,
            rtp_ts: 123_456,
            packets: 1000,
            octets: 1_200_000,
        };
        let rb = ReportBlock {
            ssrc: 7,
            fraction_lost: 25,
            cumulative_lost: -3,
            ext_highest_seq: 0x0001_0005,
            jitter: 90,
            lsr: 0x1234_5678,
            dlsr: 65536,
        };
        let mut b = vec![];
        write_sr(&mut b, 0xAABB_CCDD, &info, &[rb]);
        write_sdes_cname(&mut b, 0xAABB_CCDD, "vr-stream@pi");
        assert_eq!(b.len() % 4, 0);
        // SR with one block: 4 + 4 + 20 + 24; SDES: 4 + (4 + 2 + 12 + 1, padded to 20).
        assert_eq!(b.len(), 52 + 24);
        let p = parse_compound(&b).unwrap();
        assert_eq!(
            p[0],
            Rtcp::SenderReport {
                ssrc: 0xAABB_CCDD,
                info,
                reports: vec![rb]
            }
        );
        assert_eq!(
            p[1],
            Rtcp::Sdes {
                ssrc: 0xAABB_CCDD,
                cname: Some("vr-stream@pi".into())
            }
        );
    }

    #[test]
    fn rr_pli_nack_bye_round_trip() {
        let rb = ReportBlock {
            ssrc: 1,
            fraction_lost: 255,
            cumulative_lost: 8_388_607,
            ext_highest_seq: 9,
            jitter: 1,
            lsr: 2,
            dlsr: 3,
        };
        let mut b = vec![];
        write_rr(&mut b, 42, &[rb, ReportBlock { ssrc: 2, ..rb }]);
        write_pli(&mut b, 42, 1);
        write_nack(&mut b, 42, 1, &[65535, 100, 0, 3, 101, 117, 118]);
        write_bye(&mut b, 42);
        let p = parse_compound(&b).unwrap();
        assert_eq!(
            p[0],
            Rtcp::ReceiverReport {
                ssrc: 42,
                reports: vec![rb, ReportBlock { ssrc: 2, ..rb }]
            }
        );
        assert_eq!(
            p[1],
            Rtcp::Pli {
                sender_ssrc: 42,
                media_ssrc: 1
            }
        );
        // PID 65535 covers 0 and 3 (wrap), PID 100 covers 101, and 117 (17 after 100) starts
        // a new PID covering 118.
        assert_eq!(
            p[2],
            Rtcp::Nack {
                sender_ssrc: 42,
                media_ssrc: 1,
                lost: vec![65535, 0, 3, 100, 101, 117, 118]
            }
        );
        assert_eq!(p[3], Rtcp::Bye { ssrcs: vec![42] });
    }

    #[test]
    fn known_bytes_from_rfc_layout() {
        // An RR as ffmpeg sends it: V=2 RC=1 PT=201 length=7, SSRC, one block.
        let b = [
            0x81, 0xC9, 0x00, 0x07, 0x11, 0x22, 0x33, 0x44, // header, reporter
            0xAA, 0xBB, 0xCC, 0xDD, 0x0A, 0xFF, 0xFF,
            0xFE, // source, fraction 10/256, lost -2
            0x00, 0x02, 0x00, 0x10, 0x00, 0x00, 0x01, 0x00, // ext seq 2<<16|16, jitter 256
            0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x80, 0x00, // LSR, DLSR 0.5 s
        ];
        let p = parse_compound(&b).unwrap();
        let Rtcp::ReceiverReport { ssrc, reports } = &p[0] else {
            panic!("{p:?}")
        };
        assert_eq!(*ssrc, 0x1122_3344);
        assert_eq!(
            reports[0],
            ReportBlock {
                ssrc: 0xAABB_CCDD,
                fraction_lost: 10,
                cumulative_lost: -2,
                ext_highest_seq: 0x0002_0010,
                jitter: 256,
                lsr: 0x1234_5678,
                dlsr: 0x8000
            }
        );
        // RTT: arrival 0.75 s after the SR's middle-32 time, DLSR 0.5 s → 0.25 s.
        let arrival = ((0x1234_5678u64 + 0xC000) << 16) | 0xABCD;
        assert_eq!(rtt_ns(arrival, &reports[0]), Some(250_000_000));
        assert_eq!(
            rtt_ns(
                arrival,
                &ReportBlock {
                    lsr: 0,
                    ..reports[0]
                }
            ),
            None
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        assert!(parse_compound(&[]).is_err());
        assert_eq!(
            parse_compound(&[0x40, 0xC8, 0, 0]),
            Err(RtcpError::Version(1))
        );
        assert_eq!(
            parse_compound(&[0x80, 0x60, 0, 0]),
            Err(RtcpError::NotRtcp(0x60))
        );
        assert_eq!(
            parse_compound(&[0x80, 0xC9, 0, 7, 1, 2, 3, 4]),
            Err(RtcpError::Truncated(0))
        );
        // RC says 3 blocks but the length holds none: the blocks are ignored.
        let p = parse_compound(&[0x83, 0xC9, 0, 1, 0, 0, 0, 9]).unwrap();
        assert_eq!(
            p[0],
            Rtcp::ReceiverReport {
                ssrc: 9,
                reports: vec![]
            }
        );
        // Unknown feedback format: skipped as Other.
        let p = parse_compound(&[0x8F, 0xCE, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]).unwrap();
        assert_eq!(p[0], Rtcp::Other { pt: 206, count: 15 });
        // VRSTECHO probes (quick-bench) are not RTCP.
        assert!(parse_compound(b"VRSTECHO\0\0\0\0\0\0\0\x01").is_err());
    }

    #[test]
    fn reception_stats_follow_appendix_a() {
        let mut s = ReceptionStats::new();
        // 65530..=65535, 0..=9 with 3 and 4 lost, 7 arriving twice: wrap + loss + duplicate.
        let mut t = 0u64;
        for seq in (65530u16..=65535).chain(0..=9) {
            if seq == 3 || seq == 4 {
                continue;
            }
            s.on_packet(seq, (t * 1500) as u32, t * 1500);
            t += 1;
            if seq == 7 {
                s.on_packet(seq, 0, t * 1500);
            }
        }
        assert_eq!(s.ext_highest_seq(), (1 << 16) + 9);
        assert_eq!(s.expected(), 16);
        assert_eq!(s.received(), 15);
        assert_eq!(s.lost(), 1);
        let rb = s.report_block(5, 0);
        assert_eq!(
            (
                rb.ssrc,
                rb.fraction_lost,
                rb.cumulative_lost,
                rb.ext_highest_seq
            ),
            (5, 16, 1, 65545)
        );
        // Next interval: 4 expected, none lost.
        for seq in 10..14u16 {
            s.on_packet(seq, (t * 1500) as u32, t * 1500);
            t += 1;
        }
        assert_eq!(s.report_block(5, 0).fraction_lost, 0);
    }

    #[test]
    fn jitter_converges_to_the_mean_deviation() {
        // Arrivals alternate 0 and +900 ticks (10 ms) late: |D| = 900 every packet, so J
        // tends to 900.
        let mut s = ReceptionStats::new();
        for i in 0..400u64 {
            let ts = (i * 1500) as u32;
            s.on_packet(i as u16, ts, i * 1500 + if i % 2 == 1 { 900 } else { 0 });
        }
        assert!((880..=900).contains(&s.jitter()), "{}", s.jitter());
        let mut still = ReceptionStats::new();
        for i in 0..100u64 {
            still.on_packet(i as u16, (i * 1500) as u32, 7 + i * 1500);
        }
        assert_eq!(still.jitter(), 0);
    }

    #[test]
    fn dlsr_counts_from_the_sr_arrival() {
        let mut s = ReceptionStats::new();
        s.on_packet(1, 0, 0);
        let sr_ntp = 0x0000_1234_5678_0000u64;
        let arrival = 100u64 << 32;
        s.on_sender_report(sr_ntp, arrival);
        let rb = s.report_block(1, arrival + (1u64 << 31)); // 0.5 s later
        assert_eq!(rb.lsr, 0x1234_5678);
        assert_eq!(rb.dlsr, 0x8000);
    }
}
