//! The receiving side, sans-IO: RTP packets in (with their arrival times), whole access
//! units out, in order, with a verdict per frame. Used by `vr-receive`; pure code (no
//! sockets, no clock reads), so it runs on simulated time in tests.
//!
//! Frames are the RTP timestamp groups of one SSRC. A frame is **complete** when every
//! sequence number from the packet after the previous frame's marker packet up to its own
//! marker packet is present (RFC 6184: the marker ends an access unit). Frames leave in
//! timestamp order: a complete frame as soon as every earlier one has left; an incomplete
//! one when a later frame is complete and the reorder window has passed since its last
//! packet arrived (then it is **lost**, and the receiver should ask for an IDR: see
//! [`Receiver::wants_keyframe`]). A packet for a frame that has already left is **late**.
//! Sequence numbers and timestamps are unwrapped to 64 bits.

use crate::rtcp::ReceptionStats;
use crate::rtp::{depacketize, parse_rtp};
use crate::time::MonotonicNs;
use std::collections::BTreeMap;

/// How long after a frame's last FEC packet its missing media packets are given up on
/// (media and FEC travel on different ports, so they can be read out of order), ns.
pub const FEC_GRACE_NS: u64 = 2_000_000;

/// What happened to one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// All its packets arrived.
    Complete,
    /// Some packets were missing and forward error correction restored them.
    Recovered,
    /// Missing packets: the frame is dropped (not written to the output).
    Lost,
}

/// A frame leaving the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameOut {
    /// Extended (unwrapped) RTP timestamp, 90 kHz.
    pub ts: u64,
    /// What happened to it.
    pub verdict: Verdict,
    /// Annex-B access unit (empty when lost).
    pub au: Vec<u8>,
    /// Contains an IDR slice.
    pub keyframe: bool,
    /// abs-capture-time from the sender (NTP Q32.32 of the sender's clock), if carried.
    pub capture_ntp: Option<u64>,
    /// Arrival of its first packet.
    pub first_arrival: MonotonicNs,
    /// Arrival of its last packet.
    pub last_arrival: MonotonicNs,
    /// Packets it had.
    pub packets: usize,
}

/// Counters over the whole session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames delivered whole.
    pub complete: u64,
    /// Frames delivered after FEC recovery.
    pub recovered: u64,
    /// Frames dropped.
    pub lost: u64,
    /// Packets that arrived after their frame had left.
    pub late_packets: u64,
    /// Packets that were not RTP, or of another SSRC or payload type.
    pub ignored_packets: u64,
    /// FEC packets received.
    pub fec_packets: u64,
    /// Media packets rebuilt from FEC.
    pub fec_rebuilt: u64,
    /// Duplicate packets.
    pub duplicate_packets: u64,
}

#[derive(Debug, Default)]
struct Pending {
    pkts: BTreeMap<u64, Vec<u8>>, // ext seq → whole RTP packet
    marker: Option<u64>,
    /// FEC packets received for the frame, and what they say: first media ext seq and k.
    fec: Vec<Vec<u8>>,
    fec_span: Option<(u64, usize)>,
    /// Recovery packets the sender made for the frame (m), once a FEC packet told.
    fec_m: usize,
    /// Arrival of the frame's last FEC packet so far.
    last_fec_ns: u64,
    recovered: bool,
    first_arrival_ns: u64,
    last_arrival_ns: u64,
    capture_ntp: Option<u64>,
}

/// Receiver settings.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverConfig {
    /// RTP payload type of the video.
    pub payload_type: u8,
    /// One-byte header extension id of abs-capture-time.
    pub capture_time_ext_id: u8,
    /// How long an incomplete frame waits for late or reordered packets once a later frame
    /// is complete, ns.
    pub reorder_window_ns: u64,
    /// RTP payload type of FEC packets ([`crate::fec`]).
    pub fec_payload_type: u8,
}

/// The receiver state machine.
#[derive(Debug)]
pub struct Receiver {
    cfg: ReceiverConfig,
    ssrc: Option<u32>,
    pending: BTreeMap<u64, Pending>,
    /// Ext seq of the last packet of the last frame that left (its marker), if any.
    last_end_seq: Option<u64>,
    /// Ext ts of the last frame that left.
    last_ts: Option<u64>,
    /// Highest seq of a frame that left without its marker (packets at or below are late).
    late_floor: Option<u64>,
    max_seq: Option<u64>,
    max_ts: Option<u64>,
    stats: ReceptionStats,
    counts: Counts,
    need_keyframe: bool,
}

fn unwrap(prev: Option<u64>, v: u64, bits: u32) -> u64 {
    let Some(p) = prev else {
        return v + (1u64 << bits);
    };
    let m = 1u64 << bits;
    let base = p & !(m - 1);
    // Pick the candidate nearest to the previous value.
    [base.wrapping_sub(m) | v, base | v, (base + m) | v]
        .into_iter()
        .filter(|&c| c >= m || base == 0)
        .min_by_key(|&c| c.abs_diff(p))
        .unwrap_or(base | v)
}

impl Receiver {
    /// A receiver with `cfg`; it locks onto the SSRC of the first valid packet.
    pub fn new(cfg: ReceiverConfig) -> Receiver {
        Receiver {
            cfg,
            ssrc: None,
            pending: BTreeMap::new(),
            last_end_seq: None,
            last_ts: None,
            late_floor: None,
            max_seq: None,
            max_ts: None,
            stats: ReceptionStats::new(),
            counts: Counts::default(),
            need_keyframe: false,
        }
    }

    /// The SSRC being received.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// RFC 3550 reception statistics (for receiver reports).
    pub fn reception(&mut self) -> &mut ReceptionStats {
        &mut self.stats
    }

    /// Session counters.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Whether a frame was lost since the last IDR left: the caller sends a PLI (rate
    /// limited) until an IDR arrives.
    pub fn wants_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// The RTP timestamp (extended) of the oldest pending frame if it is incomplete, cannot
    /// be rebuilt from what arrived, and has had no packet for `silence_ns` at `now`.
    /// Such a frame most likely lost its tail (its verdict still waits for a later frame
    /// and the reorder window): the caller can ask for an IDR now rather than a frame later.
    pub fn stalled(&self, now: MonotonicNs, silence_ns: u64) -> Option<u64> {
        let now_ns = now.0;
        let (&ts, f) = self.pending.first_key_value()?;
        let last = f.last_arrival_ns.max(f.last_fec_ns);
        (!self.complete(f) && now_ns >= last + silence_ns).then_some(ts)
    }

    /// Takes one RTP packet that arrived at `arrival` (the jitter estimate counts it in
    /// 90 kHz ticks). Frames it completes leave through [`Receiver::poll`].
    pub fn on_packet(&mut self, pkt: &[u8], arrival: MonotonicNs) {
        let arrival_ns = arrival.0;
        let Some(p) = parse_rtp(pkt, self.cfg.capture_time_ext_id) else {
            self.counts.ignored_packets += 1;
            return;
        };
        if p.payload_type != self.cfg.payload_type || self.ssrc.is_some_and(|s| s != p.ssrc) {
            self.counts.ignored_packets += 1;
            return;
        }
        self.ssrc = Some(p.ssrc);
        let seq = unwrap(self.max_seq, p.seq as u64, 16);
        let ts = unwrap(self.max_ts, p.timestamp as u64, 32);
        self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        self.stats
            .on_packet(p.seq, p.timestamp, crate::rtp::ticks_90k(arrival_ns));
        if self.last_ts.is_some_and(|l| ts <= l)
            || self
                .last_end_seq
                .or(self.late_floor)
                .is_some_and(|e| seq <= e)
        {
            self.counts.late_packets += 1;
            return;
        }
        let f = self.pending.entry(ts).or_insert_with(|| Pending {
            first_arrival_ns: arrival_ns,
            ..Default::default()
        });
        if f.pkts.contains_key(&seq) {
            self.counts.duplicate_packets += 1;
            return;
        }
        f.pkts.insert(seq, pkt.to_vec());
        f.last_arrival_ns = arrival_ns;
        if p.marker {
            f.marker = Some(seq);
        }
        if p.capture_ntp.is_some() {
            f.capture_ntp = p.capture_ntp;
        }
    }

    /// Takes one FEC packet ([`crate::fec`]) that arrived at `arrival`.
    pub fn on_fec(&mut self, pkt: &[u8], arrival: MonotonicNs) {
        let arrival_ns = arrival.0;
        let Ok(p) = crate::fec::parse_fec(pkt, self.cfg.fec_payload_type) else {
            self.counts.ignored_packets += 1;
            return;
        };
        if self.ssrc.is_some_and(|s| s != p.ssrc) {
            self.counts.ignored_packets += 1;
            return;
        }
        self.counts.fec_packets += 1;
        let ts = unwrap(self.max_ts, p.timestamp as u64, 32);
        if self.last_ts.is_some_and(|l| ts <= l) {
            return; // the frame has left (complete without it, or given up)
        }
        let base = unwrap(self.max_seq, p.base_seq as u64, 16);
        let f = self.pending.entry(ts).or_insert_with(|| Pending {
            first_arrival_ns: arrival_ns,
            ..Default::default()
        });
        f.fec_span = Some((base, p.k as usize));
        f.fec_m = p.m as usize;
        f.last_fec_ns = arrival_ns;
        f.fec.push(pkt.to_vec());
        f.last_arrival_ns = f.last_arrival_ns.max(arrival_ns);
    }

    /// Rebuilds the missing packets of the oldest pending frame from its FEC packets when
    /// enough arrived; true if it did.
    fn try_recover(&mut self, ts: u64) -> bool {
        let pt = self.cfg.fec_payload_type;
        let Some(f) = self.pending.get_mut(&ts) else {
            return false;
        };
        let Some((base, k)) = f.fec_span else {
            return false;
        };
        let have: Vec<(usize, &[u8])> = f
            .pkts
            .range(base..base + k as u64)
            .map(|(&s, p)| ((s - base) as usize, &p[..]))
            .collect();
        if have.len() >= k || have.len() + f.fec.len() < k {
            return false;
        }
        let fecs: Vec<crate::fec::FecPacket> = f
            .fec
            .iter()
            .filter_map(|p| crate::fec::parse_fec(p, pt).ok())
            .collect();
        let Ok(rebuilt) = crate::fec::recover(&have, &fecs) else {
            return false;
        };
        let n = rebuilt.len() as u64;
        for (i, pkt) in rebuilt {
            let seq = base + i as u64;
            if pkt.get(1).is_some_and(|b| b & 0x80 != 0) {
                f.marker = Some(seq);
            }
            f.pkts.insert(seq, pkt);
        }
        f.recovered = true;
        self.counts.fec_rebuilt += n;
        true
    }

    fn complete(&self, f: &Pending) -> bool {
        if let Some((base, k)) = f.fec_span {
            // FEC says exactly which packets make the frame.
            return f.marker == Some(base + k as u64 - 1)
                && f.pkts.range(base..base + k as u64).count() == k;
        }
        let Some(m) = f.marker else { return false };
        let Some((&lo, _)) = f.pkts.first_key_value() else {
            return false;
        };
        // The frame starts right after the previous frame's marker packet; when that end
        // is unknown (first frame, or the previous frame left without its marker), at its
        // lowest packet, which must then begin a NAL unit.
        let start = self.last_end_seq.map_or(lo, |e| e + 1);
        if lo != start || (m - start + 1) as usize != f.pkts.len() {
            return false;
        }
        if self.last_end_seq.is_none() {
            let first = &f.pkts[&lo];
            let Some(p) = parse_rtp(first, self.cfg.capture_time_ext_id) else {
                return false;
            };
            if p.payload.first().is_some_and(|h| h & 0x1f == 28)
                && p.payload.get(1).is_some_and(|fu| fu & 0x80 == 0)
            {
                return false;
            }
        }
        true
    }

    /// The next frame that can leave at `now`, if any (call until `None`).
    pub fn poll(&mut self, now: MonotonicNs) -> Option<FrameOut> {
        let now_ns = now.0;
        let (&ts, f) = self.pending.first_key_value()?;
        if !self.complete(f) {
            self.try_recover(ts);
        }
        let f = &self.pending[&ts];
        if self.complete(f) {
            // FEC told where this frame starts; if that is past the end of the previous
            // frame, whole frames vanished in between (every media and FEC packet lost):
            // one lost verdict for them first, so that the caller asks for an IDR.
            let start = f.fec_span.map(|(b, _)| b);
            if let (Some(e), Some(start)) = (self.last_end_seq, start)
                && start > e + 1
            {
                let gap = Pending {
                    first_arrival_ns: f.first_arrival_ns,
                    last_arrival_ns: f.first_arrival_ns,
                    ..Default::default()
                };
                let out = self.leave(ts - 1, gap, Verdict::Lost);
                self.last_end_seq = Some(start - 1);
                return Some(out);
            }
            let f = self.pending.remove(&ts).unwrap();
            let v = if f.recovered {
                Verdict::Recovered
            } else {
                Verdict::Complete
            };
            return Some(self.leave(ts, f, v));
        }
        // Give up on the oldest frame once a later frame is complete (or has its marker)
        // and the window since the oldest frame's last packet has passed; or at once when
        // all its FEC packets are in (they are sent after its media) and too many media
        // packets are still missing to rebuild it: the PLI goes out a window earlier.
        let later_done = self.pending.iter().skip(1).any(|(_, g)| g.marker.is_some());
        let hopeless = f.fec_span.is_some_and(|(base, k)| {
            f.fec_m > 0
                && f.fec.len() >= f.fec_m
                && now_ns >= f.last_fec_ns + FEC_GRACE_NS
                && f.pkts.range(base..base + k as u64).count() + f.fec.len() < k
        });
        if hopeless || (later_done && now_ns >= f.last_arrival_ns + self.cfg.reorder_window_ns) {
            let f = self.pending.remove(&ts).unwrap();
            return Some(self.leave(ts, f, Verdict::Lost));
        }
        None
    }

    /// At the end of the stream: the next pending frame, whatever its state — complete or
    /// rebuilt if it can be, else lost (the last frame has no later frame to time it out).
    /// Call until `None`.
    pub fn drain(&mut self) -> Option<FrameOut> {
        if let Some(f) = self.poll(MonotonicNs(u64::MAX / 2)) {
            return Some(f);
        }
        let ts = *self.pending.first_key_value()?.0;
        self.try_recover(ts);
        let whole = self.complete(&self.pending[&ts]);
        let f = self.pending.remove(&ts)?;
        let v = match (whole, f.recovered) {
            (true, true) => Verdict::Recovered,
            (true, false) => Verdict::Complete,
            (false, _) => Verdict::Lost,
        };
        Some(self.leave(ts, f, v))
    }

    fn leave(&mut self, ts: u64, f: Pending, verdict: Verdict) -> FrameOut {
        self.last_ts = Some(ts);
        // Without its marker the frame's end is unknown: the next frame then starts at its
        // own first packet.
        self.last_end_seq = f.marker;
        if f.marker.is_none() {
            self.late_floor = f
                .pkts
                .last_key_value()
                .map(|(&hi, _)| hi)
                .or(self.late_floor);
        }
        let mut out = FrameOut {
            ts,
            verdict,
            au: vec![],
            keyframe: false,
            capture_ntp: f.capture_ntp,
            first_arrival: MonotonicNs(f.first_arrival_ns),
            last_arrival: MonotonicNs(f.last_arrival_ns),
            packets: f.pkts.len(),
        };
        if verdict != Verdict::Lost {
            let ext = self.cfg.capture_time_ext_id;
            let ok = depacketize(
                f.pkts
                    .values()
                    .filter_map(|p| parse_rtp(p, ext).map(|r| r.payload)),
                &mut out.au,
            );
            if !ok {
                out.au.clear();
                out.verdict = Verdict::Lost;
            }
        }
        out.keyframe = crate::rtp::nal_units(&out.au).any(|n| n[0] & 0x1f == 5);
        match out.verdict {
            Verdict::Complete => self.counts.complete += 1,
            Verdict::Recovered => self.counts.recovered += 1,
            Verdict::Lost => {
                self.counts.lost += 1;
                self.need_keyframe = true;
            }
        }
        if out.keyframe {
            self.need_keyframe = false;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{PacketBuf, Packetizer, RtpParams};

    fn cfg() -> ReceiverConfig {
        ReceiverConfig {
            payload_type: 96,
            capture_time_ext_id: 1,
            reorder_window_ns: 20_000_000,
            fec_payload_type: 127,
        }
    }

    #[test]
    fn fec_rebuilds_lost_packets_and_a_whole_lost_frame_start() {
        let frames = stream(20, 65000, 0);
        let mut fec = crate::fec::FecEncoder::new(0);
        let mut rx = Receiver::new(cfg());
        let mut t = 0u64;
        let mut out = vec![];
        for (i, f) in frames.iter().enumerate() {
            let mut media = PacketBuf::default();
            for p in f {
                media.push_parts(p, &[]);
            }
            let mut fp = PacketBuf::default();
            fec.protect(&media, 50, 127, &mut fp).unwrap();
            for (k, p) in f.iter().enumerate() {
                t += 10_000;
                // Frame 3 loses its first packet (the frame start), frame 7 its marker,
                // frame 11 two packets: all within 50% FEC; frame 15 loses everything but
                // one media packet: beyond repair.
                let drop = (i == 3 && k == 0)
                    || (i == 7 && k + 1 == f.len())
                    || (i == 11 && k < 2)
                    || (i == 15 && k > 0);
                if !drop {
                    rx.on_packet(p, MonotonicNs(t));
                }
            }
            for (k, p) in fp.iter().enumerate() {
                if !(i == 15 && k > 0) {
                    rx.on_fec(p, MonotonicNs(t + 1000));
                }
            }
            t += 16_000_000;
            while let Some(fr) = rx.poll(MonotonicNs(t)) {
                out.push(fr);
            }
        }
        while let Some(fr) = rx.poll(MonotonicNs(t + 1_000_000_000)) {
            out.push(fr);
        }
        let v: Vec<(usize, Verdict)> = out
            .iter()
            .enumerate()
            .filter(|(_, f)| f.verdict != Verdict::Complete)
            .map(|(i, f)| (i, f.verdict))
            .collect();
        assert_eq!(
            v,
            vec![
                (3, Verdict::Recovered),
                (7, Verdict::Recovered),
                (11, Verdict::Recovered),
                (15, Verdict::Lost)
            ]
        );
        // The rebuilt frames are byte-identical to what the packets carried.
        let mut want = vec![];
        crate::rtp::depacketize(
            frames[11]
                .iter()
                .map(|p| crate::rtp::parse_rtp(p, 1).unwrap().payload),
            &mut want,
        );
        assert_eq!(out[11].au, want);
        assert_eq!(rx.counts().recovered, 3);
        assert_eq!(rx.counts().fec_rebuilt, 4);
        assert_eq!(out.len(), 20);
    }

    #[test]
    fn a_frame_fec_cannot_repair_is_declared_lost_as_soon_as_its_fec_is_in() {
        let frames = stream(3, 0, 0);
        let mut fec = crate::fec::FecEncoder::new(0);
        let mut rx = Receiver::new(cfg());
        let mut media = PacketBuf::default();
        for p in &frames[0] {
            media.push_parts(p, &[]);
        }
        let mut fp = PacketBuf::default();
        fec.protect(&media, 20, 127, &mut fp).unwrap();
        // Frame 0 keeps only its first packet; all its FEC arrives; nothing later yet.
        rx.on_packet(&frames[0][0], MonotonicNs(1_000));
        for p in fp.iter() {
            rx.on_fec(p, MonotonicNs(2_000));
        }
        assert!(
            rx.poll(MonotonicNs(2_000)).is_none(),
            "a grace period for media read after the FEC"
        );
        let f = rx
            .poll(MonotonicNs(2_000 + FEC_GRACE_NS))
            .expect("declared lost without waiting for a later frame");
        assert_eq!(f.verdict, Verdict::Lost);
        assert!(rx.wants_keyframe());
        // With one FEC packet still to come it would wait.
        let mut rx = Receiver::new(cfg());
        rx.on_packet(&frames[0][0], MonotonicNs(1_000));
        rx.on_fec(fp.get(0), MonotonicNs(2_000));
        if fp.len() > 1 {
            assert!(rx.poll(MonotonicNs(2_000)).is_none());
        }
    }

    #[test]
    fn a_frame_that_lost_its_tail_is_stalled_after_the_silence_not_before() {
        let frames = stream(2, 0, 0);
        assert!(
            frames[0].len() >= 2,
            "the test needs a frame of several packets"
        );
        let mut rx = Receiver::new(cfg());
        assert_eq!(
            rx.stalled(MonotonicNs(0), 4_000_000),
            None,
            "nothing pending"
        );
        // Frame 0 without its last packet (the marker).
        for p in &frames[0][..frames[0].len() - 1] {
            rx.on_packet(p, MonotonicNs(1_000_000));
        }
        assert!(rx.poll(MonotonicNs(2_000_000)).is_none());
        assert_eq!(
            rx.stalled(MonotonicNs(4_999_999), 4_000_000),
            None,
            "within the silence"
        );
        let ts = rx
            .stalled(MonotonicNs(5_000_000), 4_000_000)
            .expect("stalled after 4 ms without a packet");
        assert_eq!(
            ts as u32,
            crate::rtp::parse_rtp(&frames[0][0], 1).unwrap().timestamp
        );
        assert!(
            !rx.wants_keyframe(),
            "stalled is a suspicion, not yet a verdict"
        );
        // A complete frame never stalls.
        let mut rx = Receiver::new(cfg());
        for p in &frames[1] {
            rx.on_packet(p, MonotonicNs(1_000_000));
        }
        assert_eq!(rx.stalled(MonotonicNs(100_000_000), 4_000_000), None);
    }

    /// The stream through a simulated link ([`vr_testkit::impair`]): media and its FEC (20%)
    /// in the order sent, 60 fps, packets 50 µs apart; the receiver polled at each arrival
    /// and every ms. Returns the frames out and the original access units.
    fn through_link(
        n: usize,
        p: vr_testkit::impair::ImpairParams,
    ) -> (Vec<FrameOut>, Vec<Vec<u8>>) {
        use vr_testkit::impair::{Fate, Impairment};
        let frames = stream(n, 40_000, 7);
        let mut fec = crate::fec::FecEncoder::new(0);
        let mut link = Impairment::new(p).unwrap();
        let mut arrivals: Vec<(u64, usize, bool, Vec<u8>)> = vec![];
        let mut originals = vec![];
        for (i, f) in frames.iter().enumerate() {
            let mut media = PacketBuf::default();
            for pk in f {
                media.push_parts(pk, &[]);
            }
            let mut au = vec![];
            crate::rtp::depacketize(
                f.iter()
                    .map(|pk| crate::rtp::parse_rtp(pk, 1).unwrap().payload),
                &mut au,
            );
            originals.push(au);
            let mut fp = PacketBuf::default();
            fec.protect(&media, 20, 127, &mut fp).unwrap();
            let mut t = 1_000_000_000 + i as u64 * 16_666_667;
            for (is_fec, pk) in media
                .iter()
                .map(|x| (false, x))
                .chain(fp.iter().map(|x| (true, x)))
            {
                t += 50_000;
                if let Fate::Deliver { at_ns, .. } = link.on_packet(t) {
                    arrivals.push((at_ns, arrivals.len(), is_fec, pk.to_vec()));
                }
            }
        }
        arrivals.sort();
        let mut rx = Receiver::new(cfg());
        let mut out = vec![];
        let mut tick = 0;
        for (at, _, is_fec, pk) in &arrivals {
            while tick < *at {
                while let Some(f) = rx.poll(MonotonicNs(tick)) {
                    out.push(f);
                }
                tick += 1_000_000;
            }
            if *is_fec {
                rx.on_fec(pk, MonotonicNs(*at))
            } else {
                rx.on_packet(pk, MonotonicNs(*at))
            }
        }
        while let Some(f) = rx.poll(MonotonicNs(u64::MAX / 2)) {
            out.push(f);
        }
        (out, originals)
    }

    /// Checks the frames out against the originals: in order, each delivered one exact;
    /// returns (delivered, lost) counted over the originals.
    fn check_integrity(out: &[FrameOut], originals: &[Vec<u8>]) -> (usize, usize) {
        let mut last = None;
        let mut delivered = 0;
        for f in out.iter().filter(|f| f.verdict != Verdict::Lost) {
            // stream(): first timestamp 7, 1500 ticks per frame.
            let i = ((f.ts as u32).wrapping_sub(7) / 1500) as usize;
            assert!(last.is_none_or(|l| i > l), "frame {i} out of order");
            assert_eq!(
                &f.au, &originals[i],
                "frame {i} delivered with wrong content"
            );
            last = Some(i);
            delivered += 1;
        }
        (delivered, originals.len() - delivered)
    }

    #[test]
    fn simulated_wifi_one_percent_loss_jitter_and_reordering_keeps_995_permille() {
        use std::time::Duration;
        let p = vr_testkit::impair::ImpairParams {
            loss_percent: 1.0,
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(2),
            reorder_percent: 1.0,
            reorder_gap: Duration::from_millis(3),
            seed: 42,
            ..Default::default()
        };
        let (out, orig) = through_link(3000, p);
        let (ok, lost) = check_integrity(&out, &orig);
        let recovered = out
            .iter()
            .filter(|f| f.verdict == Verdict::Recovered)
            .count();
        assert!(
            ok * 1000 >= 995 * 3000,
            "{ok} of 3000 whole, {lost} lost, {recovered} recovered"
        );
        assert!(recovered > 50, "FEC did the work: {recovered}");
    }

    #[test]
    fn simulated_burst_loss_loses_frames_but_never_delivers_a_wrong_one() {
        use std::time::Duration;
        // 5% loss in bursts of 4 packets on average: more than one FEC packet per frame
        // can repair, so frames are lost — and every frame delivered is still exact.
        let p = vr_testkit::impair::ImpairParams {
            loss_percent: 5.0,
            burst: 4.0,
            delay: Duration::from_millis(3),
            jitter: Duration::from_millis(1),
            seed: 9,
            ..Default::default()
        };
        let (out, orig) = through_link(3000, p);
        let (ok, lost) = check_integrity(&out, &orig);
        assert!(lost > 30 && ok > 2500, "{ok} whole, {lost} lost");
        // Every loss was noticed (a lost verdict before the next frame out), even a frame
        // whose packets and FEC all vanished: nothing after a loss goes unflagged.
        let verdict_lost = out.iter().filter(|f| f.verdict == Verdict::Lost).count();
        assert!(
            verdict_lost >= 1 && verdict_lost <= lost,
            "{verdict_lost} lost verdicts for {lost} frames"
        );
        let mut i = 0;
        let mut flagged_before = true;
        for f in &out {
            if f.verdict == Verdict::Lost {
                flagged_before = true;
                continue;
            }
            let idx = ((f.ts as u32).wrapping_sub(7) / 1500) as usize;
            if idx != i {
                assert!(
                    flagged_before,
                    "frames {i}..{idx} missing without a lost verdict"
                );
            }
            flagged_before = false;
            i = idx + 1;
        }
    }

    /// `n` frames of the given sizes packetized with 1000-byte payloads: frame i is an IDR
    /// when i % 30 == 0.
    fn stream(n: usize, first_seq: u16, first_ts: u32) -> Vec<Vec<Vec<u8>>> {
        let mut pk = Packetizer::new(
            RtpParams {
                ssrc: 0x55,
                payload_type: 96,
                payload_size: 1000,
                capture_time_ext_id: Some(1),
            },
            first_seq,
        );
        let mut out = vec![];
        for i in 0..n {
            let mut au = vec![];
            if i % 30 == 0 {
                au.extend_from_slice(&[0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 0, 1, 0x68, 4]);
            }
            au.extend_from_slice(&[0, 0, 0, 1, if i % 30 == 0 { 0x65 } else { 0x41 }]);
            au.extend((0..(1500 + 700 * (i % 4))).map(|k| (k % 200 + 1) as u8));
            let mut buf = PacketBuf::default();
            pk.packetize(
                &au,
                first_ts.wrapping_add(1500 * i as u32),
                Some(1 << 32),
                &mut buf,
            )
            .unwrap();
            out.push(buf.iter().map(|p| p.to_vec()).collect());
        }
        out
    }

    fn run(rx: &mut Receiver, order: &[(u64, Vec<u8>)]) -> Vec<FrameOut> {
        let mut out = vec![];
        for (t, p) in order {
            rx.on_packet(p, MonotonicNs(*t));
            while let Some(f) = rx.poll(MonotonicNs(*t)) {
                out.push(f);
            }
        }
        let end = order.last().map(|x| x.0).unwrap_or(0) + 1_000_000_000;
        while let Some(f) = rx.poll(MonotonicNs(end)) {
            out.push(f);
        }
        out
    }

    fn in_order(frames: &[Vec<Vec<u8>>]) -> Vec<(u64, Vec<u8>)> {
        let mut v = vec![];
        for (i, f) in frames.iter().enumerate() {
            for (k, p) in f.iter().enumerate() {
                v.push((i as u64 * 16_666_667 + k as u64 * 10_000, p.clone()));
            }
        }
        v
    }

    #[test]
    fn clean_stream_across_seq_and_timestamp_wrap() {
        let frames = stream(60, 65530, u32::MAX - 3000);
        let mut rx = Receiver::new(cfg());
        let out = run(&mut rx, &in_order(&frames));
        assert_eq!(out.len(), 60);
        assert!(out.iter().all(|f| f.verdict == Verdict::Complete));
        assert!(
            out.windows(2).all(|w| w[1].ts == w[0].ts + 1500),
            "timestamps unwrapped and in order"
        );
        assert!(out[0].keyframe && out[30].keyframe && !out[1].keyframe);
        assert!(out[0].au.starts_with(&[0, 0, 0, 1, 0x67]));
        assert_eq!(out[0].capture_ntp, Some(1 << 32));
        assert_eq!(rx.counts().complete, 60);
        assert!(!rx.wants_keyframe());
        assert_eq!(rx.reception().lost(), 0);
    }

    #[test]
    fn reordering_within_the_window_is_repaired() {
        let frames = stream(10, 100, 0);
        let mut order = in_order(&frames);
        // Swap packets across frame boundaries and inside frames.
        order.swap(3, 5);
        order.swap(10, 11);
        let mut rx = Receiver::new(cfg());
        let out = run(&mut rx, &order);
        assert_eq!(
            out.iter()
                .filter(|f| f.verdict == Verdict::Complete)
                .count(),
            10
        );
        assert!(out.windows(2).all(|w| w[1].ts > w[0].ts));
    }

    #[test]
    fn a_lost_packet_loses_its_frame_asks_for_an_idr_and_late_packets_are_counted() {
        let frames = stream(40, 0, 0);
        let mut order = in_order(&frames);
        // Drop the second packet of frame 5; deliver it 200 ms later (too late).
        let idx = frames[..5].iter().map(|f| f.len()).sum::<usize>() + 1;
        let (t, p) = order.remove(idx);
        order.push((t + 200_000_000 + 40 * 16_666_667, p));
        order.sort_by_key(|x| x.0);
        let mut rx = Receiver::new(cfg());
        let mut wanted_at = vec![];
        let mut out = vec![];
        for (t, p) in &order {
            rx.on_packet(p, MonotonicNs(*t));
            while let Some(f) = rx.poll(MonotonicNs(*t)) {
                out.push(f);
                wanted_at.push(rx.wants_keyframe());
            }
        }
        assert_eq!(out.len(), 40);
        assert_eq!(out[5].verdict, Verdict::Lost);
        assert!(out[5].au.is_empty());
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, f)| i == 5 || f.verdict == Verdict::Complete)
        );
        // Wanted from frame 5 until the IDR of frame 30 left.
        assert!(!wanted_at[4] && wanted_at[5] && wanted_at[29] && !wanted_at[30]);
        assert_eq!(rx.counts().late_packets, 1);
        assert_eq!(rx.counts().lost, 1);
    }

    #[test]
    fn a_lost_marker_packet_is_resolved_by_the_next_frame() {
        let frames = stream(5, 10, 0);
        let mut order = in_order(&frames);
        let idx = frames[..3].iter().map(|f| f.len()).sum::<usize>() - 1; // last of frame 2
        order.remove(idx);
        let mut rx = Receiver::new(cfg());
        let out = run(&mut rx, &order);
        let v: Vec<Verdict> = out.iter().map(|f| f.verdict).collect();
        assert_eq!(
            v,
            vec![
                Verdict::Complete,
                Verdict::Complete,
                Verdict::Lost,
                Verdict::Complete,
                Verdict::Complete
            ]
        );
    }

    #[test]
    fn other_ssrc_payload_type_and_junk_are_ignored_duplicates_counted() {
        let frames = stream(3, 0, 0);
        let mut rx = Receiver::new(cfg());
        let mut order = in_order(&frames);
        let mut other = frames[0][0].clone();
        other[8..12].copy_from_slice(&7u32.to_be_bytes());
        order.insert(1, (5, other));
        let mut pt = frames[0][0].clone();
        pt[1] = (pt[1] & 0x80) | 97;
        order.insert(2, (6, pt));
        order.insert(3, (7, b"junk".to_vec()));
        order.insert(4, (8, frames[0][0].clone()));
        let out = run(&mut rx, &order);
        assert_eq!(
            out.iter()
                .filter(|f| f.verdict == Verdict::Complete)
                .count(),
            3
        );
        assert_eq!(rx.counts().ignored_packets, 3);
        assert_eq!(rx.counts().duplicate_packets, 1);
    }

    #[test]
    fn drain_gives_every_pending_frame_a_verdict() {
        let frames = stream(3, 10, 0);
        let mut rx = Receiver::new(cfg());
        for p in &frames[0] {
            rx.on_packet(p, MonotonicNs(1));
        }
        // The last frame lacks its first packet and nothing comes after it.
        for p in &frames[1][1..] {
            rx.on_packet(p, MonotonicNs(2));
        }
        assert_eq!(
            rx.poll(MonotonicNs(3)).map(|f| f.verdict),
            Some(Verdict::Complete)
        );
        assert!(
            rx.poll(MonotonicNs(u64::MAX / 2)).is_none(),
            "no later frame: poll alone never decides"
        );
        assert_eq!(rx.drain().map(|f| f.verdict), Some(Verdict::Lost));
        assert!(rx.drain().is_none());
        assert_eq!(rx.counts().lost, 1);
    }

    #[test]
    fn unwrap_picks_the_nearest() {
        assert_eq!(unwrap(None, 5, 16), 65536 + 5);
        assert_eq!(unwrap(Some(65536 + 65535), 2, 16), 2 * 65536 + 2);
        assert_eq!(unwrap(Some(2 * 65536 + 2), 65535, 16), 65536 + 65535);
        assert_eq!(unwrap(Some(65536 + 100), 90, 16), 65536 + 90);
    }
}
