//! RTP (RFC 3550) packetization of H.264 access units (RFC 6184, packetization-mode 1).
//!
//! Pure code: no sockets, no clock reads, no allocation per packet. The caller passes the
//! access unit, its RTP timestamp and capture time, and a [`PacketBuf`] it owns and reuses;
//! the packetizer writes complete RTP packets into it.
//!
//! Per access unit: leading parameter-set/SEI NAL units (types 6, 7, 8, 9) that fit are
//! aggregated into one STAP-A (RFC 6184 §5.7.1) — SPS+PPS travel together —, other NAL units
//! up to `payload_size` bytes go as single NAL unit packets (§5.6), larger ones as FU-A
//! fragments (§5.8). The marker bit is set on the last packet of the access unit
//! (§5.1). The first packet carries an RFC 8285 one-byte header extension with the
//! abs-capture-time of the frame (64-bit NTP timestamp, Q32.32 seconds since 1900), so a
//! receiver can measure capture-to-arrival latency.

use crate::time::MonotonicNs;

/// RTP header size without CSRCs or extension, bytes.
pub const RTP_HEADER: usize = 12;
/// Header extension size used for abs-capture-time, bytes: 4 (0xBEDE + length) + 1 + 8,
/// padded to 16.
pub const EXT_LEN: usize = 16;
/// URI of the abs-capture-time header extension (for the SDP `a=extmap` line).
pub const ABS_CAPTURE_TIME_URI: &str =
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time";
/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix epoch).
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// Static RTP parameters of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpParams {
    /// Synchronization source (RFC 3550 §5.1).
    pub ssrc: u32,
    /// Payload type, 96..=127.
    pub payload_type: u8,
    /// Largest RTP payload (after header and extension), bytes; >= 64.
    pub payload_size: usize,
    /// RFC 8285 one-byte extension id for abs-capture-time, 1..=14; None = no extension.
    pub capture_time_ext_id: Option<u8>,
}

/// Errors from [`Packetizer::packetize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketizeError {
    /// The access unit holds no NAL unit (no Annex-B start code, or only empty units).
    #[error("access unit of {0} bytes holds no NAL unit")]
    Empty(usize),
    /// payload_size too small to packetize anything.
    #[error("payload size {0} too small (need >= 64 bytes)")]
    PayloadSize(usize),
}

/// Caller-owned packet storage: packets are stored back to back in one buffer that keeps
/// its capacity between access units.
#[derive(Debug, Default)]
pub struct PacketBuf {
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl PacketBuf {
    /// Empty storage with room for `bytes` of packets.
    pub fn with_capacity(bytes: usize) -> PacketBuf {
        PacketBuf {
            buf: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(bytes / 1000 + 8),
        }
    }

    /// Removes all packets (keeps capacity).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True if there is no packet.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Packet `i` (a complete RTP packet).
    pub fn get(&self, i: usize) -> &[u8] {
        let (o, l) = self.spans[i];
        &self.buf[o..o + l]
    }

    /// All packets in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans.iter().map(|&(o, l)| &self.buf[o..o + l])
    }

    /// Total bytes of all packets.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends one packet made of `head` followed by `body`.
    pub fn push_parts(&mut self, head: &[u8], body: &[u8]) {
        let start = self.begin();
        self.buf.extend_from_slice(head);
        self.buf.extend_from_slice(body);
        self.end(start);
    }

    fn begin(&mut self) -> usize {
        self.buf.len()
    }

    fn end(&mut self, start: usize) {
        self.spans.push((start, self.buf.len() - start));
    }
}

/// Splits an Annex-B byte stream into NAL units (without start codes; trailing zero bytes,
/// which belong to the next 4-byte start code, are trimmed). Empty units are skipped.
pub fn nal_units(au: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut pos = find_start(au, 0).map(|(_, p)| p);
    std::iter::from_fn(move || {
        loop {
            let start = pos?;
            let (end, next) = match find_start(au, start) {
                Some((sc, after)) => (sc, Some(after)),
                None => (au.len(), None),
            };
            pos = next;
            let mut nal = &au[start..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
            pos?;
        }
    })
}

/// Finds the next `00 00 01` at or after `from`: (index of the start code, index after it).
fn find_start(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= b.len() {
        if b[i + 2] > 1 {
            i += 3;
        } else if b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1 {
            return Some((i, i + 3));
        } else {
            i += 1;
        }
    }
    None
}

/// Converts a Unix time in ns to a 64-bit NTP timestamp (Q32.32 seconds since 1900).
pub fn ntp_from_unix_ns(ns: u64) -> u64 {
    let secs = ns / 1_000_000_000 + NTP_UNIX_OFFSET_S;
    let frac = ((ns % 1_000_000_000) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Converts a 64-bit NTP timestamp back to Unix time in ns (negative before 1970); the
/// inverse of [`ntp_from_unix_ns`] to within 1 ns.
pub fn unix_ns_from_ntp(ntp: u64) -> i128 {
    let secs = (ntp >> 32) as i128 - NTP_UNIX_OFFSET_S as i128;
    secs * 1_000_000_000 + (((ntp & 0xffff_ffff) as i128 * 1_000_000_000) >> 32)
}

/// `ns` nanoseconds in 90 kHz ticks (the RTP video clock, RFC 6184 §5.1), rounded down:
/// `ns · 9 / 100 000` without overflow for every `u64`.
pub fn ticks_90k(ns: u64) -> u64 {
    ns / 100_000 * 9 + ns % 100_000 * 9 / 100_000
}

/// RTP timestamp (90 kHz) of a frame captured at `capture`, relative to the stream's
/// first capture `base`, starting at `offset` (random per stream, RFC 3550 §5.1). A
/// capture before `base` maps to `offset`.
pub fn rtp_timestamp_90k(capture: MonotonicNs, base: MonotonicNs, offset: u32) -> u32 {
    let ticks = ticks_90k(capture.0.saturating_sub(base.0));
    offset.wrapping_add(ticks as u32)
}

/// The H.264 RTP packetizer; keeps the sequence number.
#[derive(Debug, Clone)]
pub struct Packetizer {
    p: RtpParams,
    seq: u16,
}

impl Packetizer {
    /// A packetizer starting at sequence number `first_seq` (random per stream).
    pub fn new(p: RtpParams, first_seq: u16) -> Packetizer {
        Packetizer { p, seq: first_seq }
    }

    /// Sequence number the next packet will get.
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// The parameters.
    pub fn params(&self) -> &RtpParams {
        &self.p
    }

    fn header(&mut self, out: &mut PacketBuf, ts: u32, ext: Option<u64>) {
        let x = ext.is_some() && self.p.capture_time_ext_id.is_some();
        out.buf.push(0x80 | if x { 0x10 } else { 0 });
        out.buf.push(self.p.payload_type & 0x7f);
        out.buf.extend_from_slice(&self.seq.to_be_bytes());
        out.buf.extend_from_slice(&ts.to_be_bytes());
        out.buf.extend_from_slice(&self.p.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        if let (Some(ntp), Some(id)) = (ext, self.p.capture_time_ext_id) {
            // RFC 8285 §4.2: 0xBEDE, length in 32-bit words, then id<<4 | (len - 1).
            out.buf
                .extend_from_slice(&[0xBE, 0xDE, 0, 3, (id << 4) | 7]);
            out.buf.extend_from_slice(&ntp.to_be_bytes());
            out.buf.extend_from_slice(&[0, 0, 0]);
        }
    }

    /// Packetizes one access unit (Annex-B) into `out` (cleared first). `rtp_ts` is its
    /// 90 kHz timestamp, `capture_ntp` its abs-capture-time (sent on the first packet).
    /// Returns the number of packets.
    ///
    /// Errors: [`PacketizeError::Empty`] if `au` holds no NAL unit,
    /// [`PacketizeError::PayloadSize`] if the payload size is below 64 bytes.
    pub fn packetize(
        &mut self,
        au: &[u8],
        rtp_ts: u32,
        capture_ntp: Option<u64>,
        out: &mut PacketBuf,
    ) -> Result<usize, PacketizeError> {
        out.clear();
        let max = self.p.payload_size;
        if max < 64 {
            return Err(PacketizeError::PayloadSize(max));
        }
        let mut nals = nal_units(au).peekable();
        if nals.peek().is_none() {
            return Err(PacketizeError::Empty(au.len()));
        }
        let mut ext = capture_ntp;
        while let Some(nal) = nals.next() {
            let t = nal[0] & 0x1f;
            let small_non_vcl = |n: &[u8]| matches!(n[0] & 0x1f, 6..=9) && n.len() + 2 < max;
            if small_non_vcl(nal)
                && nals
                    .peek()
                    .is_some_and(|n| small_non_vcl(n) && 1 + 2 + nal.len() + 2 + n.len() <= max)
            {
                // STAP-A: header (F | max NRI | 24), then 16-bit size + NAL unit per unit.
                let start = out.begin();
                self.header(out, rtp_ts, ext.take());
                let hdr_at = out.buf.len();
                out.buf.push(24);
                let (mut f, mut nri, mut used) = (0u8, 0u8, 1usize);
                let mut cur = Some(nal);
                while let Some(n) = cur {
                    f |= n[0] & 0x80;
                    nri = nri.max(n[0] & 0x60);
                    out.buf.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    out.buf.extend_from_slice(n);
                    used += 2 + n.len();
                    cur = match nals.peek() {
                        Some(next) if small_non_vcl(next) && used + 2 + next.len() <= max => {
                            nals.next()
                        }
                        _ => None,
                    };
                }
                out.buf[hdr_at] = f | nri | 24;
                out.end(start);
            } else if nal.len() <= max {
                let start = out.begin();
                self.header(out, rtp_ts, ext.take());
                out.buf.extend_from_slice(nal);
                out.end(start);
            } else {
                // FU-A: indicator (F | NRI | 28), header (S | E | type), payload after the
                // original one-byte NAL header.
                let ind = (nal[0] & 0xe0) | 28;
                let body = &nal[1..];
                let chunk = max - 2;
                let count = body.len().div_ceil(chunk);
                for (i, part) in body.chunks(chunk).enumerate() {
                    let start = out.begin();
                    self.header(out, rtp_ts, ext.take());
                    let s = if i == 0 { 0x80 } else { 0 };
                    let e = if i + 1 == count { 0x40 } else { 0 };
                    out.buf.push(ind);
                    out.buf.push(s | e | t);
                    out.buf.extend_from_slice(part);
                    out.end(start);
                }
            }
        }
        if let Some(&(o, _)) = out.spans.last() {
            out.buf[o + 1] |= 0x80; // marker: last packet of the access unit
        }
        Ok(out.len())
    }
}

/// A parsed RTP packet (RFC 3550 §5.1), borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// 90 kHz timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// abs-capture-time (NTP Q32.32) if the packet carries it under `ext_id`.
    pub capture_ntp: Option<u64>,
    /// Payload (padding removed).
    pub payload: &'a [u8],
}

/// Parses an RTP packet, looking for abs-capture-time under one-byte extension `ext_id`.
/// None if the bytes are not a valid RTP version-2 packet.
pub fn parse_rtp(b: &[u8], ext_id: u8) -> Option<RtpPacket<'_>> {
    if b.len() < RTP_HEADER || b[0] >> 6 != 2 {
        return None;
    }
    let cc = (b[0] & 0x0f) as usize;
    let mut off = RTP_HEADER + 4 * cc;
    let mut capture_ntp = None;
    if b[0] & 0x10 != 0 {
        let eh = b.get(off..off + 4)?;
        let words = u16::from_be_bytes([eh[2], eh[3]]) as usize;
        let ext = b.get(off + 4..off + 4 + 4 * words)?;
        if eh[0] == 0xBE && eh[1] == 0xDE {
            let mut i = 0;
            while i < ext.len() {
                let id = ext[i] >> 4;
                let len = (ext[i] & 0x0f) as usize + 1;
                if id == 0 {
                    i += 1;
                    continue;
                }
                if id == 15 {
                    break;
                }
                let data = ext.get(i + 1..i + 1 + len)?;
                if id == ext_id && len == 8 {
                    capture_ntp = Some(u64::from_be_bytes(data.try_into().ok()?));
                }
                i += 1 + len;
            }
        }
        off += 4 + 4 * words;
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        let pad = *b.last()? as usize;
        end = end.checked_sub(pad)?;
    }
    let payload = b.get(off..end)?;
    Some(RtpPacket {
        marker: b[1] & 0x80 != 0,
        payload_type: b[1] & 0x7f,
        seq: u16::from_be_bytes([b[2], b[3]]),
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        capture_ntp,
        payload,
    })
}

/// Reassembles NAL units from the RTP payloads of one access unit, in order (RFC 6184
/// single NAL, STAP-A, FU-A). Appends Annex-B (4-byte start codes) to `out`. Returns false
/// on a malformed payload or a broken FU-A sequence (the access unit is then incomplete).
pub fn depacketize<'a>(payloads: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) -> bool {
    let mut in_fu = false;
    for p in payloads {
        let Some(&h) = p.first() else { return false };
        match h & 0x1f {
            1..=23 => {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(p);
            }
            24 => {
                let mut i = 1;
                while i < p.len() {
                    let Some(sz) = p.get(i..i + 2) else {
                        return false;
                    };
                    let n = u16::from_be_bytes([sz[0], sz[1]]) as usize;
                    let Some(nal) = p.get(i + 2..i + 2 + n) else {
                        return false;
                    };
                    out.extend_from_slice(&[0, 0, 0, 1]);
                    out.extend_from_slice(nal);
                    i += 2 + n;
                }
            }
            28 => {
                let Some(&fu) = p.get(1) else { return false };
                if fu & 0x80 != 0 {
                    if in_fu {
                        return false;
                    }
                    in_fu = true;
                    out.extend_from_slice(&[0, 0, 0, 1, (h & 0xe0) | (fu & 0x1f)]);
                } else if !in_fu {
                    return false;
                }
                out.extend_from_slice(&p[2..]);
                if fu & 0x40 != 0 {
                    in_fu = false;
                }
            }
            _ => return false,
        }
    }
    !in_fu
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(max: usize) -> RtpParams {
        RtpParams {
            ssrc: 0x1234_5678,
            payload_type: 96,
            payload_size: max,
            capture_time_ext_id: Some(1),
        }
    }

    fn au(sizes: &[(u8, usize)]) -> Vec<u8> {
        let mut v = vec![];
        for (k, &(t, n)) in sizes.iter().enumerate() {
            v.extend_from_slice(if k == 0 {
                &[0, 0, 0, 1][..]
            } else {
                &[0, 0, 1][..]
            });
            v.push(0x60 | t);
            v.extend((1..n).map(|i| (i % 251 + 2) as u8));
        }
        v
    }

    #[test]
    fn nal_split_handles_3_and_4_byte_start_codes() {
        let a = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 9,
        ];
        let v: Vec<&[u8]> = nal_units(&a).collect();
        assert_eq!(v, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 9][..]]);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
    }

    #[test]
    fn stap_a_single_fu_a_marker_and_roundtrip() {
        let a = au(&[(7, 20), (8, 5), (5, 3000), (5, 700)]);
        let mut pk = Packetizer::new(params(1200), 65534);
        let mut out = PacketBuf::with_capacity(8000);
        let n = pk
            .packetize(&a, 90_000, Some(0xAABB_CCDD_0011_2233), &mut out)
            .unwrap();
        // STAP-A(SPS+PPS), 3 FU-A for 3000 bytes, one single NAL for 700.
        assert_eq!(n, 5);
        let pkts: Vec<RtpPacket> = out.iter().map(|b| parse_rtp(b, 1).unwrap()).collect();
        assert_eq!(pkts[0].payload[0] & 0x1f, 24);
        assert_eq!(pkts[0].capture_ntp, Some(0xAABB_CCDD_0011_2233));
        assert!(pkts[1].capture_ntp.is_none());
        assert_eq!(pkts[1].payload[0] & 0x1f, 28);
        assert_eq!(pkts[1].payload[1] & 0xc0, 0x80);
        assert_eq!(pkts[3].payload[1] & 0xc0, 0x40);
        assert_eq!(pkts[4].payload[0] & 0x1f, 5);
        assert!(pkts.iter().take(4).all(|p| !p.marker) && pkts[4].marker);
        let seqs: Vec<u16> = pkts.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![65534, 65535, 0, 1, 2]);
        assert!(
            pkts.iter()
                .all(|p| p.timestamp == 90_000 && p.ssrc == 0x1234_5678 && p.payload.len() <= 1200)
        );
        assert!(out.iter().all(|b| b.len() <= 1200 + RTP_HEADER + EXT_LEN));
        let mut back = vec![];
        assert!(depacketize(pkts.iter().map(|p| p.payload), &mut back));
        let orig: Vec<&[u8]> = nal_units(&a).collect();
        let got: Vec<&[u8]> = nal_units(&back).collect();
        assert_eq!(orig, got);
    }

    #[test]
    fn errors_and_timestamps() {
        let mut pk = Packetizer::new(params(1200), 0);
        let mut out = PacketBuf::default();
        assert_eq!(
            pk.packetize(&[0, 0, 0], 0, None, &mut out),
            Err(PacketizeError::Empty(3))
        );
        let mut small = Packetizer::new(params(10), 0);
        assert!(small.packetize(&au(&[(5, 10)]), 0, None, &mut out).is_err());
        assert_eq!(
            rtp_timestamp_90k(
                MonotonicNs(1_000_000_000 + 16_666_667),
                MonotonicNs(1_000_000_000),
                10
            ),
            10 + 1500
        );
        assert_eq!(
            rtp_timestamp_90k(MonotonicNs(0), MonotonicNs(5), u32::MAX),
            u32::MAX
        );
        // One tick is 11 111.1 ns; the largest u64 does not overflow.
        assert_eq!((ticks_90k(11_111), ticks_90k(11_112)), (0, 1));
        assert_eq!(ticks_90k(1_000_000_000), 90_000);
        assert_eq!(ticks_90k(u64::MAX), (u64::MAX as u128 * 9 / 100_000) as u64);
        // 1970-01-01T00:00:00.5 in NTP: era offset seconds, half a second of fraction.
        assert_eq!(
            ntp_from_unix_ns(500_000_000),
            (NTP_UNIX_OFFSET_S << 32) | 0x8000_0000
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: random access units of random NAL sizes, and garbage.
        let mut x = 0x9E37_79B9u32;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut out = PacketBuf::default();
        for _ in 0..2000 {
            let max = 64 + (rnd() % 1400) as usize;
            let mut pk = Packetizer::new(params(max), rnd() as u16);
            let len = (rnd() % 6000) as usize;
            let mut junk: Vec<u8> = Vec::with_capacity(len + 64);
            while junk.len() < len {
                match rnd() % 64 {
                    0 => junk.extend_from_slice(&[0, 0, 1, 0x40 | (1 + rnd() % 23) as u8]),
                    1..=16 => junk.push(0),
                    _ => junk.push(rnd() as u8),
                }
            }
            let plain = nal_units(&junk).all(|n| (1..=23).contains(&(n[0] & 0x1f)));
            if pk.packetize(&junk, 0, Some(1), &mut out).is_ok() && plain {
                let mut back = vec![];
                let pl: Vec<&[u8]> = out
                    .iter()
                    .map(|b| parse_rtp(b, 1).unwrap().payload)
                    .collect();
                assert!(depacketize(pl.iter().copied(), &mut back));
                let a: Vec<&[u8]> = nal_units(&junk).collect();
                let b: Vec<&[u8]> = nal_units(&back).collect();
                assert_eq!(a, b);
            }
            let _ = parse_rtp(&junk, 1);
            let mut sink = vec![];
            let _ = depacketize([&junk[..]], &mut sink);
        }
    }
}
