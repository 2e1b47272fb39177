//! Forward error correction per frame: Reed–Solomon over the frame's RTP packets
//! (crate `reed-solomon-simd`, a Leopard-RS style GF(2^16) code), so a receiver that lost
//! up to `m` of a frame's `k + m` packets rebuilds the frame without a retransmission.
//!
//! Shards: each media RTP packet, whole (header included), prefixed with its length
//! (2 bytes, big-endian) and zero-padded to the frame's shard size (the longest packet + 2,
//! rounded up to even, as the code requires). `m = ceil(k × percent / 100)`, at least 1.
//!
//! FEC packets go to the receiver's RTP port + 2 (a plain RTP receiver never sees them, so
//! ffmpeg and GStreamer play the stream unchanged). Each is an RTP packet (RFC 3550 header:
//! payload type `stream.fec_payload_type`, its own sequence numbers, the frame's RTP
//! timestamp, the media SSRC, marker on the frame's last FEC packet) whose payload is an
//! 8-byte FEC header — first media sequence number of the frame, `k`, `m`, this shard's
//! recovery index (each u16, big-endian) — followed by the recovery shard.
//!
//! Pure code: no sockets, no clock.

use crate::rtp::{PacketBuf, RTP_HEADER};

/// FEC header size after the RTP header, bytes.
pub const FEC_HEADER: usize = 8;

/// Errors of FEC encoding or decoding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FecError {
    /// The Reed–Solomon library refused (shard counts out of its range).
    #[error("Reed-Solomon: {0}")]
    Rs(String),
    /// A FEC packet is malformed.
    #[error("malformed FEC packet: {0}")]
    Malformed(&'static str),
}

/// Recovery shards for a frame of `k` packets at `percent` overhead (0 = none).
pub fn recovery_count(k: usize, percent: u32) -> usize {
    if percent == 0 || k == 0 {
        0
    } else {
        (k * percent as usize).div_ceil(100).max(1)
    }
}

fn shard_size(max_packet: usize) -> usize {
    (max_packet + 2).div_ceil(2) * 2
}

fn shard_of(pkt: &[u8], size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(pkt.len() as u16).to_be_bytes());
    out.extend_from_slice(pkt);
    out.resize(size, 0);
}

/// Builds the FEC packets of one frame.
#[derive(Debug, Default)]
pub struct FecEncoder {
    seq: u16,
    shard: Vec<u8>,
}

impl FecEncoder {
    /// FEC packets numbered from `first_seq`.
    pub fn new(first_seq: u16) -> FecEncoder {
        FecEncoder {
            seq: first_seq,
            shard: vec![],
        }
    }

    /// Appends to `out` the FEC packets protecting `media` (all the RTP packets of one
    /// frame, in order) at `percent` overhead, as RTP packets of payload type `pt`.
    /// Returns how many it wrote (0 when `percent` is 0).
    ///
    /// Errors: [`FecError::Rs`] if the frame has more packets than the code allows
    /// (32768).
    pub fn protect(
        &mut self,
        media: &PacketBuf,
        percent: u32,
        pt: u8,
        out: &mut PacketBuf,
    ) -> Result<usize, FecError> {
        let k = media.len();
        let m = recovery_count(k, percent);
        if m == 0 {
            return Ok(0);
        }
        let first = media.get(0);
        if first.len() < RTP_HEADER {
            return Err(FecError::Malformed(
                "media packet shorter than an RTP header",
            ));
        }
        let base_seq = u16::from_be_bytes([first[2], first[3]]);
        let ts = &first[4..8];
        let ssrc = &first[8..12];
        let size = shard_size(media.iter().map(|p| p.len()).max().unwrap_or(0));
        let mut enc = reed_solomon_simd::ReedSolomonEncoder::new(k, m, size)
            .map_err(|e| FecError::Rs(e.to_string()))?;
        for p in media.iter() {
            shard_of(p, size, &mut self.shard);
            enc.add_original_shard(&self.shard)
                .map_err(|e| FecError::Rs(e.to_string()))?;
        }
        let result = enc.encode().map_err(|e| FecError::Rs(e.to_string()))?;
        for (i, r) in result.recovery_iter().enumerate() {
            let marker = if i + 1 == m { 0x80 } else { 0 };
            let s = self.seq.to_be_bytes();
            self.seq = self.seq.wrapping_add(1);
            let mut hdr = [0u8; RTP_HEADER + FEC_HEADER];
            hdr[0] = 0x80;
            hdr[1] = marker | (pt & 0x7f);
            hdr[2..4].copy_from_slice(&s);
            hdr[4..8].copy_from_slice(ts);
            hdr[8..12].copy_from_slice(ssrc);
            hdr[12..14].copy_from_slice(&base_seq.to_be_bytes());
            hdr[14..16].copy_from_slice(&(k as u16).to_be_bytes());
            hdr[16..18].copy_from_slice(&(m as u16).to_be_bytes());
            hdr[18..20].copy_from_slice(&(i as u16).to_be_bytes());
            out.push_parts(&hdr, r);
        }
        Ok(m)
    }
}

/// A parsed FEC packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecPacket<'a> {
    /// Media SSRC.
    pub ssrc: u32,
    /// The frame's RTP timestamp.
    pub timestamp: u32,
    /// Sequence number of the frame's first media packet.
    pub base_seq: u16,
    /// Media packets in the frame.
    pub k: u16,
    /// Recovery shards of the frame.
    pub m: u16,
    /// This shard's index, `< m`.
    pub index: u16,
    /// The recovery shard.
    pub shard: &'a [u8],
}

/// Parses a FEC packet of payload type `pt`.
///
/// Errors: [`FecError::Malformed`] naming what is wrong.
pub fn parse_fec(b: &[u8], pt: u8) -> Result<FecPacket<'_>, FecError> {
    if b.len() < RTP_HEADER + FEC_HEADER + 2 || b[0] >> 6 != 2 {
        return Err(FecError::Malformed("too short or not RTP version 2"));
    }
    if b[1] & 0x7f != pt {
        return Err(FecError::Malformed("wrong payload type"));
    }
    if b[0] & 0x3f != 0 {
        return Err(FecError::Malformed("CSRCs, extension or padding present"));
    }
    let u16at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let p = FecPacket {
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        base_seq: u16at(12),
        k: u16at(14),
        m: u16at(16),
        index: u16at(18),
        shard: &b[RTP_HEADER + FEC_HEADER..],
    };
    if p.k == 0
        || p.m == 0
        || p.index >= p.m
        || p.k as usize + p.m as usize > 65536
        || !p.shard.len().is_multiple_of(2)
    {
        return Err(FecError::Malformed("bad k, m, index or shard size"));
    }
    Ok(p)
}

/// Rebuilds the missing media packets of a frame from what arrived: `have` = the media
/// packets received, as (index in the frame = seq − base_seq, packet), and the FEC packets
/// received for it (all with the same k, m and shard size). Returns the rebuilt packets as
/// (index, packet), or an empty list when nothing is missing.
///
/// Errors: [`FecError::Rs`] when too few shards arrived (fewer than k in all) or they
/// disagree; [`FecError::Malformed`] for a rebuilt shard whose length prefix is wrong.
pub fn recover(
    have: &[(usize, &[u8])],
    fec: &[FecPacket<'_>],
) -> Result<Vec<(usize, Vec<u8>)>, FecError> {
    let Some(f0) = fec.first() else {
        return Err(FecError::Rs("no FEC packet".into()));
    };
    let (k, m, size) = (f0.k as usize, f0.m as usize, f0.shard.len());
    if have.len() >= k {
        return Ok(vec![]);
    }
    if have.len() + fec.len() < k {
        return Err(FecError::Rs(format!(
            "{} media + {} FEC packets of {k} needed",
            have.len(),
            fec.len()
        )));
    }
    let mut dec = reed_solomon_simd::ReedSolomonDecoder::new(k, m, size)
        .map_err(|e| FecError::Rs(e.to_string()))?;
    let mut shard = Vec::with_capacity(size);
    for &(i, p) in have {
        if p.len() + 2 > size || i >= k {
            return Err(FecError::Malformed(
                "media packet does not fit the frame's shards",
            ));
        }
        shard_of(p, size, &mut shard);
        dec.add_original_shard(i, &shard)
            .map_err(|e| FecError::Rs(e.to_string()))?;
    }
    for f in fec {
        if (f.k as usize, f.m as usize, f.shard.len()) != (k, m, size) {
            return Err(FecError::Malformed("FEC packets of one frame disagree"));
        }
        dec.add_recovery_shard(f.index as usize, f.shard)
            .map_err(|e| FecError::Rs(e.to_string()))?;
    }
    let res = dec.decode().map_err(|e| FecError::Rs(e.to_string()))?;
    let mut out = vec![];
    for (i, s) in res.restored_original_iter() {
        let len = u16::from_be_bytes([s[0], s[1]]) as usize;
        if len + 2 > s.len() || len < RTP_HEADER {
            return Err(FecError::Malformed("rebuilt packet length"));
        }
        out.push((i, s[2..2 + len].to_vec()));
    }
    out.sort_by_key(|x| x.0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{Packetizer, RtpParams};

    fn frame(bytes: usize, seq: u16) -> PacketBuf {
        let mut pk = Packetizer::new(
            RtpParams {
                ssrc: 9,
                payload_type: 96,
                payload_size: 1200,
                capture_time_ext_id: Some(1),
            },
            seq,
        );
        let mut au = vec![0, 0, 0, 1, 0x65];
        au.extend((0..bytes).map(|i| (i * 7 % 251) as u8));
        let mut b = PacketBuf::default();
        pk.packetize(&au, 12345, Some(1), &mut b).unwrap();
        b
    }

    #[test]
    fn counts() {
        assert_eq!(recovery_count(10, 20), 2);
        assert_eq!(recovery_count(11, 20), 3);
        assert_eq!(recovery_count(1, 20), 1);
        assert_eq!(recovery_count(10, 0), 0);
        assert_eq!(recovery_count(0, 20), 0);
    }

    #[test]
    fn any_m_losses_are_rebuilt_byte_for_byte() {
        let media = frame(20_000, 65530); // 17 packets, seq wraps
        let k = media.len();
        let mut fec_out = PacketBuf::default();
        let mut enc = FecEncoder::new(100);
        let m = enc.protect(&media, 20, 127, &mut fec_out).unwrap();
        assert_eq!((k, m, fec_out.len()), (17, 4, 4));
        let fecs: Vec<FecPacket> = fec_out.iter().map(|p| parse_fec(p, 127).unwrap()).collect();
        assert_eq!(fecs[0].base_seq, 65530);
        assert_eq!((fecs[3].index, fecs[3].k, fecs[3].m), (3, 17, 4));
        assert!(
            fec_out.get(3)[1] & 0x80 != 0 && fec_out.get(0)[1] & 0x80 == 0,
            "marker on the last"
        );
        // Lose 4 media packets (first, last = marker, two middle) and one FEC packet too
        // many? No: 4 media lost, 4 FEC present → exactly enough.
        let lost = [0usize, 5, 9, k - 1];
        let have: Vec<(usize, &[u8])> = (0..k)
            .filter(|i| !lost.contains(i))
            .map(|i| (i, media.get(i)))
            .collect();
        let got = recover(&have, &fecs).unwrap();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), lost.to_vec());
        for (i, p) in &got {
            assert_eq!(&p[..], media.get(*i), "packet {i} rebuilt exactly");
        }
        // One loss too many: an error, not garbage.
        let have5: Vec<(usize, &[u8])> = have.iter().copied().skip(1).collect();
        assert!(recover(&have5, &fecs).is_err());
        // Nothing lost: nothing to do.
        let all: Vec<(usize, &[u8])> = (0..k).map(|i| (i, media.get(i))).collect();
        assert!(recover(&all, &fecs[..1]).unwrap().is_empty());
    }

    #[test]
    fn malformed_fec_is_refused() {
        let media = frame(3000, 1);
        let mut out = PacketBuf::default();
        FecEncoder::new(0)
            .protect(&media, 50, 127, &mut out)
            .unwrap();
        let good = out.get(0).to_vec();
        assert!(parse_fec(&good, 126).is_err());
        assert!(parse_fec(&good[..15], 127).is_err());
        let mut bad = good.clone();
        bad[18..20].copy_from_slice(&9u16.to_be_bytes()); // index >= m
        assert!(parse_fec(&bad, 127).is_err());
        let mut odd = good.clone();
        odd.push(0);
        assert!(parse_fec(&odd, 127).is_err());
        assert_eq!(
            FecEncoder::new(0)
                .protect(&media, 0, 127, &mut out)
                .unwrap(),
            0
        );
    }
}
