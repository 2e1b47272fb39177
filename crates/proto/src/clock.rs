//! Clock offset between the sender and a receiver on another machine, NTP-style (RFC 5905
//! §8 on-wire exchange): the receiver sends its time t1, the sender answers with t1, its
//! time t2 when the request arrived (the kernel's receive timestamp, SO_TIMESTAMPNS) and
//! t3 when it sends the answer, the receiver notes t4 at the answer's arrival. Offset
//! θ = ((t2 − t1) + (t3 − t4)) / 2, round trip δ = (t4 − t1) − (t3 − t2): the time the
//! request waited in the sender (it polls its RTCP socket once per frame) cancels out. The
//! sample with the smallest δ in a window is the most trustworthy (least queueing), as
//! NTP's clock filter does. The receiver then maps the sender's capture times (abs-capture-time, the
//! sender's wall clock) onto its own clock: capture_local = capture_sender − θ.
//!
//! Wire format, on the sender's RTCP port (it is not RTCP: the first byte is not version
//! 2, so RTCP parsers reject it): request `VRSTCLCK` + t1 (NTP Q32.32, 8 bytes) + probe
//! number (4 bytes) = 20 bytes; answer = the request + t2 + t3 (8 bytes each) = 36 bytes. All
//! big-endian. Pure code: the caller reads the clocks.

/// Magic of a clock probe.
pub const CLOCK_MAGIC: &[u8; 8] = b"VRSTCLCK";
/// Size of a request, bytes.
pub const REQUEST_LEN: usize = 20;
/// Size of an answer, bytes.
pub const ANSWER_LEN: usize = 36;

/// Builds a request carrying the receiver's time `t1_ntp` and probe number `n`.
pub fn request(t1_ntp: u64, n: u32) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[..8].copy_from_slice(CLOCK_MAGIC);
    b[8..16].copy_from_slice(&t1_ntp.to_be_bytes());
    b[16..20].copy_from_slice(&n.to_be_bytes());
    b
}

/// Whether `b` is a clock request.
pub fn is_request(b: &[u8]) -> bool {
    b.len() == REQUEST_LEN && &b[..8] == CLOCK_MAGIC
}

/// The answer to `req` (a valid request): the responder's times `t2_ntp` (request
/// received) and `t3_ntp` (answer sent); `None` if `req` is not a clock request.
pub fn answer(req: &[u8], t2_ntp: u64, t3_ntp: u64) -> Option<[u8; ANSWER_LEN]> {
    if !is_request(req) {
        return None;
    }
    let mut b = [0u8; ANSWER_LEN];
    b[..REQUEST_LEN].copy_from_slice(req);
    b[20..28].copy_from_slice(&t2_ntp.to_be_bytes());
    b[28..36].copy_from_slice(&t3_ntp.to_be_bytes());
    Some(b)
}

/// A parsed answer: (t1, probe number, t2, t3), NTP Q32.32.
pub fn parse_answer(b: &[u8]) -> Option<(u64, u32, u64, u64)> {
    if b.len() != ANSWER_LEN || &b[..8] != CLOCK_MAGIC {
        return None;
    }
    let w = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    Some((
        w(8),
        u32::from_be_bytes(b[16..20].try_into().ok()?),
        w(20),
        w(28),
    ))
}

/// One offset sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Sender clock minus receiver clock, ns.
    pub offset_ns: i64,
    /// Round trip of the exchange, ns.
    pub rtt_ns: u64,
}

/// Computes the sample of one exchange: t1 and t4 on the receiver's clock, t2 and t3 on
/// the sender's. `None` if the round trip comes out negative (a clock stepped).
pub fn sample(t1_ntp: u64, t2_ntp: u64, t3_ntp: u64, t4_ntp: u64) -> Option<Sample> {
    let ns = crate::rtp::unix_ns_from_ntp;
    let (t1, t2, t3, t4) = (ns(t1_ntp), ns(t2_ntp), ns(t3_ntp), ns(t4_ntp));
    let rtt = (t4 - t1) - (t3 - t2);
    if rtt < 0 || t3 < t2 {
        return None;
    }
    Some(Sample {
        offset_ns: (((t2 - t1) + (t3 - t4)) / 2) as i64,
        rtt_ns: rtt as u64,
    })
}

/// Keeps the last `window` samples and answers with the one of smallest round trip.
#[derive(Debug, Clone)]
pub struct OffsetEstimator {
    window: usize,
    samples: std::collections::VecDeque<Sample>,
}

impl OffsetEstimator {
    /// An estimator over the last `window` samples (at least 1).
    pub fn new(window: usize) -> OffsetEstimator {
        OffsetEstimator {
            window: window.max(1),
            samples: Default::default(),
        }
    }

    /// Adds a sample.
    pub fn add(&mut self, s: Sample) {
        if self.samples.len() == self.window {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// The minimum-RTT sample of the window, if any.
    pub fn best(&self) -> Option<Sample> {
        self.samples.iter().copied().min_by_key(|s| s.rtt_ns)
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No sample yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntp(ns: u64) -> u64 {
        crate::rtp::ntp_from_unix_ns(ns)
    }

    #[test]
    fn wire_round_trip() {
        let r = request(ntp(1_000), 7);
        let a = answer(&r, ntp(5_000), ntp(6_000)).unwrap();
        assert_eq!(
            parse_answer(&a),
            Some((ntp(1_000), 7, ntp(5_000), ntp(6_000)))
        );
        assert!(answer(b"VRSTECHO\0\0\0\0\0\0\0\0", 1, 2).is_none());
        assert!(parse_answer(&r).is_none());
        assert!(
            crate::rtcp::parse_compound(&r).is_err(),
            "not mistaken for RTCP"
        );
    }

    #[test]
    fn asymmetric_queueing_is_filtered_by_min_rtt() {
        // True offset: sender 3 ms ahead. One-way base delay 2 ms each way; the sender
        // holds each request 0..16 ms before answering (cancels out); some probes queue
        // 0..8 ms on the way back, which biases their offset by half of it.
        let true_offset = 3_000_000i64;
        let base = 1_700_000_000_000_000_000u64;
        let mut est = OffsetEstimator::new(8);
        for (i, extra) in [6_000_000u64, 8_000_000, 0, 4_000_000, 2_000_000]
            .iter()
            .enumerate()
        {
            let t1 = base + i as u64 * 100_000_000;
            let t2 = (t1 as i64 + 2_000_000 + true_offset) as u64;
            let hold = (i as u64 * 7_000_000) % 16_000_000;
            let t3 = t2 + hold;
            let t4 = t1 + 4_000_000 + hold + extra;
            est.add(sample(ntp(t1), ntp(t2), ntp(t3), ntp(t4)).unwrap());
        }
        let b = est.best().unwrap();
        assert_eq!(b.rtt_ns / 1000, 4_000);
        assert!((b.offset_ns - true_offset).abs() < 5, "{b:?}");
        assert_eq!(est.len(), 5);
        assert!(sample(ntp(10), ntp(10), ntp(10), ntp(5)).is_none());
    }
}
