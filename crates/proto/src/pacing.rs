//! Pacing of large access units (pure: no clock, no I/O).
//!
//! An IDR at 720p is 50–150 kB: sent in one sendmmsg burst it lands in the Wi-Fi driver's
//! and the access point's queues at once, and on a busy channel the tail is dropped. The
//! first `burst_bytes` of a frame leave at once (a P frame usually fits: no delay for it);
//! packets after that leave at the pacing rate — but never so slowly that the frame is
//! still leaving when the next one is due: the rate is raised so the paced part takes at
//! most [`MAX_SPREAD`] of a frame interval.

/// Largest part of a frame interval a frame's packets may be spread over.
pub const MAX_SPREAD: f64 = 0.75;

/// When the packets of one access unit may leave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    burst_bytes: u64,
    /// Pacing rate, bytes per ns.
    bytes_per_ns: f64,
}

impl Pacer {
    /// A plan for a frame of `total_bytes` (all its RTP packets), sent with burst
    /// `burst_bytes` and rate `pacing_kbps` (kbit/s), at one frame per `frame_interval_ns`.
    /// `None` when no packet needs to wait (pacing off with `burst_bytes` 0, or the frame
    /// fits in the burst).
    pub fn plan(
        total_bytes: u64,
        burst_bytes: u64,
        pacing_kbps: u32,
        frame_interval_ns: u64,
    ) -> Option<Pacer> {
        if burst_bytes == 0 || total_bytes <= burst_bytes || pacing_kbps == 0 {
            return None;
        }
        let configured = pacing_kbps as f64 * 1000.0 / 8.0 / 1e9;
        let needed =
            (total_bytes - burst_bytes) as f64 / (frame_interval_ns.max(1) as f64 * MAX_SPREAD);
        Some(Pacer {
            burst_bytes,
            bytes_per_ns: configured.max(needed),
        })
    }

    /// The rate in force, kbit/s.
    pub fn rate_kbps(&self) -> f64 {
        self.bytes_per_ns * 8.0 * 1e9 / 1000.0
    }

    /// When a packet that follows `bytes_before` bytes of the same frame may leave, ns
    /// after the frame's first packet.
    pub fn due_ns(&self, bytes_before: u64) -> u64 {
        if bytes_before < self.burst_bytes {
            return 0;
        }
        ((bytes_before - self.burst_bytes) as f64 / self.bytes_per_ns) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F60: u64 = 16_666_667;

    #[test]
    fn small_frames_and_pacing_off_leave_at_once() {
        assert_eq!(Pacer::plan(20_000, 24_000, 100_000, F60), None);
        assert_eq!(Pacer::plan(200_000, 0, 100_000, F60), None);
    }

    #[test]
    fn an_idr_is_spread_at_the_pacing_rate() {
        // 100 kB at 100 Mbit/s after a 24 kB burst: 76 kB take 6.08 ms.
        let p = Pacer::plan(100_000, 24_000, 100_000, F60).unwrap();
        assert_eq!(p.due_ns(0), 0);
        assert_eq!(p.due_ns(23_999), 0);
        assert_eq!(p.due_ns(24_000), 0);
        assert_eq!(p.due_ns(24_000 + 12_500), 1_000_000);
        assert_eq!(p.due_ns(100_000), 6_080_000);
        assert!((p.rate_kbps() - 100_000.0).abs() < 1e-6);
    }

    #[test]
    fn the_rate_rises_so_a_frame_never_overlaps_the_next() {
        // 500 kB at 10 Mbit/s would take 380 ms; it must end within 3/4 of 16.7 ms.
        let p = Pacer::plan(500_000, 24_000, 10_000, F60).unwrap();
        let end = p.due_ns(500_000);
        assert!(end <= (F60 as f64 * MAX_SPREAD) as u64 + 1, "{end}");
        assert!(end >= (F60 as f64 * MAX_SPREAD) as u64 - 1000, "{end}");
        assert!(p.rate_kbps() > 10_000.0);
    }
}
