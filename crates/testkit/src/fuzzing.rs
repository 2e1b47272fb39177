//! Entry points of the fuzz targets (`fuzz/`, cargo-fuzz + libFuzzer, nightly) and of the
//! stable test that replays their corpora (`tests/fuzz_corpus.rs`). Each takes arbitrary
//! bytes, drives one parser with them, and panics only when an invariant breaks — a panic
//! here is a bug in the code under test, never in the input.
//!
//! - [`depacketizer`]: the bytes as an RFC 4571 stream of packets (2-byte length each),
//!   fed to the RTP parser, the FU-A/STAP-A depacketizer and the [`Receiver`] (packets
//!   whose first length byte is odd go to its FEC input) on a simulated clock.
//! - [`rtcp`]: compound RTCP parsing, RTT from every report block, the clock-probe
//!   parsers.
//! - [`fec`]: FEC packet parsing and recovery from garbage shards; and a round trip: the
//!   bytes make a frame of media packets, the encoder protects it, the bytes choose what
//!   is lost, and whatever [`vr_proto::fec::recover`] rebuilds must equal what was lost.
//! - [`sdp`]: [`vr_proto::sdp::read_sdp`] on the bytes as text.

use vr_proto::receiver::{Receiver, ReceiverConfig};
use vr_proto::rtp::PacketBuf;
use vr_proto::time::MonotonicNs;

/// RTP parsing, depacketizing and the receiver state machine on arbitrary packets.
pub fn depacketizer(data: &[u8]) {
    let mut rx = Receiver::new(ReceiverConfig {
        payload_type: 96,
        capture_time_ext_id: 1,
        reorder_window_ns: 20_000_000,
        fec_payload_type: 127,
    });
    let mut t = 0u64;
    let mut payloads: Vec<Vec<u8>> = vec![];
    vr_proto::framing::rfc4571_packets(data, |p| {
        t += 1_000_000;
        if p.first().is_some_and(|b| b & 1 == 1) && p.len() > 1 && p[1] & 0x7f == 127 {
            rx.on_fec(p, MonotonicNs(t));
        } else {
            rx.on_packet(p, MonotonicNs(t));
        }
        if let Some(r) = vr_proto::rtp::parse_rtp(p, 1) {
            assert!(r.payload.len() <= p.len());
            payloads.push(r.payload.to_vec());
        }
        while let Some(f) = rx.poll(MonotonicNs(t)) {
            assert!(
                f.verdict == vr_proto::receiver::Verdict::Lost || !f.au.is_empty() || f.packets > 0
            );
        }
    });
    while rx.poll(MonotonicNs(u64::MAX / 2)).is_some() {}
    let c = rx.counts();
    assert!(c.complete + c.recovered + c.lost <= data.len() as u64 + 1);
    let mut au = vec![];
    let _ = vr_proto::rtp::depacketize(payloads.iter().map(|p| &p[..]), &mut au);
    let _ = rx.reception().report_block(1, 0);
}

/// Compound RTCP and clock-probe parsing.
pub fn rtcp(data: &[u8]) {
    if let Ok(pkts) = vr_proto::rtcp::parse_compound(data) {
        for p in pkts {
            if let vr_proto::rtcp::Rtcp::SenderReport { reports, .. }
            | vr_proto::rtcp::Rtcp::ReceiverReport { reports, .. } = p
            {
                for b in &reports {
                    let _ = vr_proto::rtcp::rtt_ns(u64::MAX, b);
                    let _ = vr_proto::rtcp::rtt_ns(0, b);
                }
            }
        }
    }
    if let Some((t1, _, t2, t3)) = vr_proto::clock::parse_answer(data) {
        let _ = vr_proto::clock::sample(t1, t2, t3, t3.wrapping_add(1));
    }
    let _ = vr_proto::clock::answer(data, 1, 2);
}

/// FEC parsing, recovery from arbitrary shards, and the rebuild round trip.
pub fn fec(data: &[u8]) {
    // Arbitrary FEC packets (RFC 4571-framed) against arbitrary media.
    let mut fecs = vec![];
    let mut media = vec![];
    vr_proto::framing::rfc4571_packets(data, |p| match vr_proto::fec::parse_fec(p, 127) {
        Ok(f) => fecs.push(f),
        Err(_) => media.push(p),
    });
    if !fecs.is_empty() {
        let have: Vec<(usize, &[u8])> = media.iter().enumerate().map(|(i, p)| (i, *p)).collect();
        let _ = vr_proto::fec::recover(&have, &fecs);
    }
    // Round trip: byte 0 = packet count (1..=16), byte 1 = loss mask seed, then sizes.
    if data.len() < 3 {
        return;
    }
    let k = (data[0] % 16) as usize + 1;
    let mut buf = PacketBuf::default();
    for i in 0..k {
        let len = 12 + data.get(2 + i).map_or(0, |&b| b as usize * 4);
        let mut p = vec![0x80, 96, 0, i as u8, 0, 0, 0, 9, 0, 0, 0, 7];
        p.extend((0..len - 12).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8)));
        if i + 1 == k {
            p[1] |= 0x80;
        }
        buf.push_parts(&p, &[]);
    }
    let mut out = PacketBuf::default();
    let mut enc = vr_proto::fec::FecEncoder::new(0);
    let percent = 10 + (data[1] as u32 % 91);
    let Ok(m) = enc.protect(&buf, percent, 127, &mut out) else {
        return;
    };
    let lost = |i: usize| (data[1] as usize >> (i % 8)) & 1 == 1 && i % 3 != 2;
    let have: Vec<(usize, &[u8])> = (0..k)
        .filter(|&i| !lost(i))
        .map(|i| (i, buf.get(i)))
        .collect();
    let fecs: Vec<_> = out
        .iter()
        .filter_map(|p| vr_proto::fec::parse_fec(p, 127).ok())
        .collect();
    assert_eq!(fecs.len(), m);
    match vr_proto::fec::recover(&have, &fecs) {
        Ok(rebuilt) => {
            for (i, p) in rebuilt {
                assert!(lost(i), "rebuilt packet {i} that was not lost");
                assert_eq!(p, buf.get(i), "rebuilt packet {i} differs");
            }
        }
        Err(e) => assert!(
            have.len() + m < k,
            "{} of {k} media + {m} FEC and still: {e}",
            have.len()
        ),
    }
}

/// The SDP reader on arbitrary text.
pub fn sdp(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(info) = vr_proto::sdp::read_sdp(text)
    {
        assert!(info.port > 0);
        assert!(
            info.capture_time_ext_id
                .is_none_or(|id| (1..=14).contains(&id))
        );
    }
}
