//! Adaptive bitrate: the encoder's target from the receiver's RTCP reports (sans-IO; times
//! are CLOCK_MONOTONIC ns passed in, so it runs on simulated time in tests).
//!
//! Signals, all from standard RFC 3550 receiver report blocks about our SSRC:
//! - **loss**: the block's fraction lost (since the previous report);
//! - **received rate**: packets received between two reports (Δ extended highest sequence
//!   number − Δ cumulative lost) × the mean size of the media packets sent, over the time
//!   between the reports' arrivals — what the path delivered, like the incoming-rate
//!   estimate of Google Congestion Control (draft-ietf-rmcat-gcc-02 §5);
//! - **delay growth**: the round-trip time (A − LSR − DLSR, RFC 3550 §6.4.1) above the
//!   smallest of the recent ones: a queue filling at the bottleneck (the sender report
//!   travels the congested direction).
//!
//! Rules (loss-based part of GCC §6, plus its delay trigger):
//! - congestion (loss ≥ `loss_high_percent`, or RTT ≥ min + `delay_ms` and still growing):
//!   the target drops at once to `backoff_percent` of the received rate (or, before a rate
//!   is known, by half the loss fraction); then no new decision for [`HOLD_NS`], since the
//!   next report still describes the old rate;
//! - clean (loss < `loss_low_percent`, no delay growth): the target grows, at most to
//!   1.5 × the received rate (an encoder producing less than its target proves nothing
//!   about the link). Far from the capacity last seen it grows by `increase_percent` per
//!   second; near it (the received rate within 3 standard deviations of the average rate
//!   received at congestion, GCC §5.5 "near max") it grows additively, by one mean packet
//!   per response time (RTT + 100 ms), so that probing does not overflow the queue that
//!   just overflowed. A received rate above that band means the link got better: the
//!   estimate is forgotten and growth is multiplicative again;
//! - in between: hold.
//!
//! Always within `min_kbps..=max_kbps`.

use crate::rtcp::ReportBlock;

/// After a decrease, reports arriving within this long are not acted on, ns: the
/// receiver's report interval (500 ms for vr-receive) plus a margin.
pub const HOLD_NS: u64 = 600_000_000;
/// Shortest span a received-rate estimate is measured over, ns.
pub const RATE_SPAN_NS: u64 = 250_000_000;
/// Round-trip samples kept for the minimum (about 10 s of reports at 2 per second).
pub const RTT_WINDOW: usize = 20;
/// Weight of a new congestion sample in the capacity average (GCC's 0.05).
const CAPACITY_ALPHA: f64 = 0.05;
/// Bounds of the capacity variance, normalized by the average (kbit/s), as in GCC.
const CAPACITY_VAR_BOUNDS: (f64, f64) = (0.4, 2.5);
/// Added to the round trip for the additive step's response time, ns (GCC §5.5).
const RESPONSE_EXTRA_NS: u64 = 100_000_000;

/// Controller settings (the `[abr]` config section).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbrParams {
    /// Lowest target, kbit/s.
    pub min_kbps: u32,
    /// Highest target (and the start), kbit/s.
    pub max_kbps: u32,
    /// Loss at or above this (per cent of packets in a report interval) is congestion.
    pub loss_high_percent: u32,
    /// Loss below this (per cent) lets the rate grow.
    pub loss_low_percent: u32,
    /// RTT this far above the recent minimum, and growing, is congestion, ms.
    pub delay_ms: u32,
    /// Growth while clean, per cent per second.
    pub increase_percent: u32,
    /// Target after congestion, per cent of the received rate.
    pub backoff_percent: u32,
}

/// One receiver report block about our stream, with when it arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback {
    /// Arrival, CLOCK_MONOTONIC ns.
    pub arrival_ns: u64,
    /// The report block.
    pub block: ReportBlock,
    /// Round trip from its LSR/DLSR, ns (`None`: no sender report seen by the receiver yet).
    pub rtt_ns: Option<u64>,
}

/// Why the target changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Loss at or above the high mark.
    Loss,
    /// Round trip grew past the delay mark.
    Delay,
    /// Clean reports: probing upward.
    Clean,
}

/// A target change, for the encoder and the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// Previous target, kbit/s.
    pub from_kbps: u32,
    /// New target, kbit/s.
    pub to_kbps: u32,
    /// What caused it.
    pub cause: Cause,
    /// Loss in the report, per cent.
    pub loss_percent: f64,
    /// Received-rate estimate, kbit/s (None before two reports).
    pub received_kbps: Option<u32>,
    /// Round trip and its recent minimum, ms.
    pub rtt_ms: Option<(f64, f64)>,
    /// The link capacity estimate after the change, kbit/s (see
    /// [`RateController::capacity_kbps`]); while it is known, growth is additive.
    pub capacity_kbps: Option<u32>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cause = match self.cause {
            Cause::Loss => "loss",
            Cause::Delay => "delay growth",
            Cause::Clean => "clean",
        };
        write!(
            f,
            "bitrate {} -> {} kbit/s ({cause}: loss {:.1}%",
            self.from_kbps, self.to_kbps, self.loss_percent
        )?;
        if let Some(r) = self.received_kbps {
            write!(f, ", received {r} kbit/s")?;
        }
        if let Some((rtt, min)) = self.rtt_ms {
            write!(f, ", rtt {rtt:.1} ms (min {min:.1})")?;
        }
        if let Some(c) = self.capacity_kbps {
            write!(f, ", capacity ~{c} kbit/s")?;
        }
        write!(f, ")")
    }
}

/// The rate controller. Feed it the media packets sent ([`RateController::on_sent`]) and
/// every report block about our SSRC ([`RateController::on_report`]).
#[derive(Debug, Clone)]
pub struct RateController {
    p: AbrParams,
    target: f64,
    sent_packets: u64,
    sent_bytes: u64,
    rate_ref: Option<Feedback>,
    received_kbps: Option<f64>,
    rtts: Vec<u64>,
    hold_until_ns: u64,
    last_update_ns: Option<u64>,
    capacity: Option<Capacity>,
}

/// The rate received when congestion was detected: exponential average (kbit/s) and
/// variance normalized by the average (GCC's link capacity estimate).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Capacity {
    mean_kbps: f64,
    var_norm: f64,
}

impl Capacity {
    /// Three standard deviations, kbit/s.
    fn band_kbps(&self) -> f64 {
        3.0 * (self.var_norm * self.mean_kbps).sqrt()
    }
}

impl RateController {
    /// A controller starting at `max_kbps` (the configured bitrate). `min_kbps` is raised
    /// to `max_kbps` if above it.
    pub fn new(p: AbrParams) -> RateController {
        let p = AbrParams {
            min_kbps: p.min_kbps.min(p.max_kbps),
            ..p
        };
        RateController {
            p,
            target: p.max_kbps as f64,
            sent_packets: 0,
            sent_bytes: 0,
            rate_ref: None,
            received_kbps: None,
            rtts: Vec::new(),
            hold_until_ns: 0,
            last_update_ns: None,
            capacity: None,
        }
    }

    /// The current target, kbit/s.
    pub fn target_kbps(&self) -> u32 {
        self.target.round() as u32
    }

    /// The link capacity estimate, kbit/s: the average rate received when congestion was
    /// detected, `None` before the first congestion and after the link proved better.
    pub fn capacity_kbps(&self) -> Option<u32> {
        self.capacity.map(|c| c.mean_kbps.round() as u32)
    }

    /// Counts media packets sent (`bytes`: whole RTP packets).
    pub fn on_sent(&mut self, packets: u64, bytes: u64) {
        self.sent_packets += packets;
        self.sent_bytes += bytes;
    }

    fn mean_packet_bytes(&self) -> Option<f64> {
        (self.sent_packets > 0).then(|| self.sent_bytes as f64 / self.sent_packets as f64)
    }

    /// Takes one report block; returns the change it causes, if any.
    ///
    /// In order: the received rate and the round trip are measured (always); within
    /// [`HOLD_NS`] of a decrease nothing changes; loss at or above `loss_high_percent`, or
    /// a round trip grown by `delay_ms` over its recent minimum, backs off (to
    /// `backoff_percent` of the received rate) and holds for [`HOLD_NS`]; loss below
    /// `loss_low_percent` grows the target; loss in between keeps it.
    pub fn on_report(&mut self, fb: Feedback) -> Option<Change> {
        let now = fb.arrival_ns;
        let loss = fb.block.fraction_lost as f64 / 256.0;
        self.measure_received_rate(&fb);
        let received_kbps = self.received_kbps;
        let (min_rtt, delay_growth) = self.record_rtt(fb.rtt_ns);
        let dt_s = self
            .last_update_ns
            .map_or(0.0, |t| (now.saturating_sub(t) as f64 / 1e9).min(1.0));
        self.last_update_ns = Some(now);
        if now < self.hold_until_ns {
            return None;
        }
        let from = self.target_kbps();
        let lossy = loss * 100.0 >= self.p.loss_high_percent as f64;
        let cause = if lossy || delay_growth {
            self.back_off(loss, received_kbps);
            self.hold_until_ns = now + HOLD_NS;
            if lossy { Cause::Loss } else { Cause::Delay }
        } else if loss * 100.0 < self.p.loss_low_percent as f64 {
            self.grow(received_kbps, min_rtt, dt_s);
            Cause::Clean
        } else {
            return None;
        };
        let to = self.target_kbps();
        (to != from).then(|| Change {
            from_kbps: from,
            to_kbps: to,
            cause,
            loss_percent: loss * 100.0,
            received_kbps: received_kbps.map(|r| r.round() as u32),
            rtt_ms: fb
                .rtt_ns
                .zip(min_rtt)
                .map(|(r, m)| (r as f64 / 1e6, m as f64 / 1e6)),
            capacity_kbps: self.capacity_kbps(),
        })
    }

    /// Updates `received_kbps` from the packets the receiver got since the reference
    /// report, once that is at least [`RATE_SPAN_NS`] old: receivers also send a report
    /// with each PLI (every 50 ms while broken), too close together to measure a rate
    /// over. A sequence jump outside 0..2^20 (a reset, another stream) clears it.
    fn measure_received_rate(&mut self, fb: &Feedback) {
        let now = fb.arrival_ns;
        let Some(r) = self.rate_ref else {
            self.rate_ref = Some(*fb);
            return;
        };
        if now.saturating_sub(r.arrival_ns) < RATE_SPAN_NS {
            return;
        }
        let dt = now - r.arrival_ns;
        let expected = fb
            .block
            .ext_highest_seq
            .wrapping_sub(r.block.ext_highest_seq) as i64;
        self.received_kbps = if (0..1 << 20).contains(&expected) {
            let lost = (fb.block.cumulative_lost as i64 - r.block.cumulative_lost as i64).max(0);
            let got = (expected - lost).max(0) as f64;
            self.mean_packet_bytes()
                .map(|b| got * b * 8.0 / (dt as f64 / 1e9) / 1000.0)
        } else {
            None // a reset or a different stream
        };
        self.rate_ref = Some(*fb);
    }

    /// Adds a round trip (ns) to the last [`RTT_WINDOW`]; returns their minimum and
    /// whether this one shows delay growth: at least `delay_ms` over the minimum and not
    /// below the previous one.
    fn record_rtt(&mut self, rtt_ns: Option<u64>) -> (Option<u64>, bool) {
        let prev_rtt = self.rtts.last().copied();
        if let Some(r) = rtt_ns {
            if self.rtts.len() == RTT_WINDOW {
                self.rtts.remove(0);
            }
            self.rtts.push(r);
        }
        let min_rtt = self.rtts.iter().copied().min();
        let delay_growth = match (rtt_ns, min_rtt, prev_rtt) {
            (Some(r), Some(m), Some(p)) => r >= m + self.p.delay_ms as u64 * 1_000_000 && r >= p,
            _ => false,
        };
        (min_rtt, delay_growth)
    }

    /// Congestion: folds the received rate into the capacity estimate, then lowers the
    /// target to `backoff_percent` of the received rate (and at least by half the loss
    /// fraction), within the configured bounds.
    fn back_off(&mut self, loss: f64, received_kbps: Option<f64>) {
        if let Some(r) = received_kbps {
            self.capacity = Some(match self.capacity {
                Some(c) if r >= c.mean_kbps - c.band_kbps() => {
                    let mean = (1.0 - CAPACITY_ALPHA) * c.mean_kbps + CAPACITY_ALPHA * r;
                    let var = (1.0 - CAPACITY_ALPHA) * c.var_norm
                        + CAPACITY_ALPHA * (mean - r).powi(2) / mean.max(1.0);
                    Capacity {
                        mean_kbps: mean,
                        var_norm: var.clamp(CAPACITY_VAR_BOUNDS.0, CAPACITY_VAR_BOUNDS.1),
                    }
                }
                // First sample, or far below the old estimate: the link changed.
                _ => Capacity {
                    mean_kbps: r,
                    var_norm: CAPACITY_VAR_BOUNDS.0,
                },
            });
        }
        let to = match received_kbps {
            Some(r) => {
                (r * self.p.backoff_percent as f64 / 100.0).min(self.target * (1.0 - loss / 2.0))
            }
            None => self.target * (1.0 - loss / 2.0),
        };
        self.target = to.clamp(self.p.min_kbps as f64, self.p.max_kbps as f64);
    }

    /// A clean report, `dt_s` seconds after the previous one: additive growth (one packet
    /// per response time) while the capacity estimate holds, `increase_percent` per second
    /// otherwise; a received rate above the estimate's band forgets the estimate. The
    /// target stays within 1.5 × the received rate and the configured bounds.
    fn grow(&mut self, received_kbps: Option<f64>, min_rtt: Option<u64>, dt_s: f64) {
        if let (Some(c), Some(r)) = (self.capacity, received_kbps)
            && r > c.mean_kbps + c.band_kbps()
        {
            self.capacity = None;
        }
        let grown = match (self.capacity, self.mean_packet_bytes()) {
            (Some(_), Some(b)) => {
                let response_s = (min_rtt.unwrap_or(0) + RESPONSE_EXTRA_NS) as f64 / 1e9;
                self.target + (b * 8.0 / 1000.0 / response_s).max(4.0) * dt_s
            }
            _ => self.target * (1.0 + self.p.increase_percent as f64 / 100.0 * dt_s),
        };
        let max = self.p.max_kbps as f64;
        let cap = received_kbps.map_or(max, |r| (1.5 * r).max(self.target));
        self.target = grown.min(cap).clamp(self.p.min_kbps as f64, max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> AbrParams {
        AbrParams {
            min_kbps: 500,
            max_kbps: 8000,
            loss_high_percent: 10,
            loss_low_percent: 2,
            delay_ms: 25,
            increase_percent: 8,
            backoff_percent: 85,
        }
    }

    /// A simulated link: the sender sends at the controller's target in 1200-byte packets;
    /// the bottleneck carries `capacity_kbps` and drops the excess (plus `random_loss`);
    /// the queue adds up to `queue_ms` of delay when full. A report every 500 ms.
    struct Link {
        seq: u32,
        lost: i64,
        now: u64,
        capacity_kbps: f64,
        base_rtt_ns: u64,
        queue_ms: f64,
    }

    impl Link {
        fn step(&mut self, c: &mut RateController) -> Option<Change> {
            let dt = 0.5;
            let sent_kbps = c.target_kbps() as f64;
            let packets = (sent_kbps * 1000.0 * dt / 8.0 / 1200.0).round() as u64;
            c.on_sent(packets, packets * 1200);
            let carried = (self.capacity_kbps / sent_kbps).min(1.0);
            let lost = (packets as f64 * (1.0 - carried)).round() as u64;
            let over = sent_kbps > self.capacity_kbps;
            let rtt = self.base_rtt_ns
                + if over {
                    (self.queue_ms * 1e6) as u64
                } else {
                    0
                };
            self.seq += packets as u32;
            self.lost += lost as i64;
            self.now += (dt * 1e9) as u64;
            let fraction = ((lost as f64 / packets.max(1) as f64) * 256.0).min(255.0) as u8;
            let block = ReportBlock {
                ssrc: 1,
                fraction_lost: fraction,
                cumulative_lost: self.lost as i32,
                ext_highest_seq: self.seq,
                jitter: 0,
                lsr: 0,
                dlsr: 0,
            };
            c.on_report(Feedback {
                arrival_ns: self.now,
                block,
                rtt_ns: Some(rtt),
            })
        }
    }

    fn link(capacity_kbps: f64) -> Link {
        Link {
            seq: 1000,
            lost: 0,
            now: 1_000_000_000,
            capacity_kbps,
            base_rtt_ns: 5_000_000,
            queue_ms: 60.0,
        }
    }

    /// A controller that ran 4 reports on a 20 Mbit/s link, which has just dropped to
    /// 4 Mbit/s (the next report is the first congested one).
    fn congested() -> (RateController, Link) {
        let mut c = RateController::new(params());
        let mut l = link(20_000.0);
        for _ in 0..4 {
            l.step(&mut c);
        }
        l.capacity_kbps = 4000.0;
        (c, l)
    }

    #[test]
    fn clean_link_stays_at_the_maximum() {
        let mut c = RateController::new(params());
        let mut l = link(20_000.0);
        for _ in 0..40 {
            assert_eq!(l.step(&mut c), None);
        }
        assert_eq!(c.target_kbps(), 8000);
    }

    #[test]
    fn halved_link_brings_the_rate_under_it_within_two_reports_then_recovers() {
        let (mut c, mut l) = congested();
        let first = l
            .step(&mut c)
            .expect("a decrease on the first congested report");
        assert_eq!(first.cause, Cause::Loss);
        assert!(first.to_kbps < 4000, "{first}");
        assert!(first.to_kbps > 2500, "not an overreaction: {first}");
        // It probes upward and backs off again: never far above the capacity for long.
        let mut above = 0;
        for _ in 0..60 {
            l.step(&mut c);
            above += (c.target_kbps() > 4000) as u32;
        }
        assert!(above <= 15, "{above} of 60 reports above the capacity");
        // The limit lifted: back to the maximum, slowly (8 %/s from ~3.4 Mbit/s: ~11 s).
        l.capacity_kbps = 20_000.0;
        let mut t = 0;
        while c.target_kbps() < 8000 {
            l.step(&mut c);
            t += 1;
            assert!(t < 60, "stuck at {}", c.target_kbps());
        }
        assert!(t >= 8, "too fast: {t} reports");
    }

    #[test]
    fn near_the_capacity_last_seen_probing_is_additive() {
        let (mut c, mut l) = congested();
        l.step(&mut c).expect("a decrease");
        assert!(
            c.capacity_kbps()
                .is_some_and(|k| (3900..=4100).contains(&k)),
            "{:?}",
            c.capacity_kbps()
        );
        // 30 s on the same link: slow climbs (1200 B per 105 ms ≈ 91 kbit/s per second),
        // each ending a little above the capacity; multiplicative growth at 8 %/s would
        // cross it three times as often.
        let (mut decreases, mut peak) = (0, 0);
        for _ in 0..60 {
            if let Some(ch) = l.step(&mut c) {
                if ch.cause == Cause::Clean {
                    assert!(
                        ch.to_kbps - ch.from_kbps <= 50,
                        "additive steps of ≤ 46 kbit/s per report: {ch}"
                    );
                } else {
                    decreases += 1;
                }
            }
            peak = peak.max(c.target_kbps());
        }
        assert!(decreases <= 6, "{decreases} decreases in 30 s");
        assert!(peak <= 4050, "peak {peak} kbit/s on a 4000 kbit/s link");
        // A better link: the received rate leaves the band, the estimate is forgotten and
        // growth is multiplicative again.
        l.capacity_kbps = 20_000.0;
        let mut t = 0;
        while c.capacity_kbps().is_some() {
            l.step(&mut c);
            t += 1;
            assert!(t < 20, "estimate kept at {:?}", c.capacity_kbps());
        }
        let before = c.target_kbps();
        let ch = l.step(&mut c).expect("growth");
        assert!(
            ch.to_kbps as f64 >= before as f64 * 1.03,
            "multiplicative: {ch}"
        );
    }

    #[test]
    fn delay_growth_without_loss_backs_off() {
        // A deep queue: no loss yet, only delay.
        let mk = |seq, rtt| Feedback {
            arrival_ns: 0,
            block: ReportBlock {
                ssrc: 1,
                fraction_lost: 0,
                cumulative_lost: 0,
                ext_highest_seq: seq,
                jitter: 0,
                lsr: 0,
                dlsr: 0,
            },
            rtt_ns: Some(rtt),
        };
        let mut c2 = RateController::new(params());
        c2.on_sent(1000, 1_200_000);
        assert_eq!(
            c2.on_report(Feedback {
                arrival_ns: 1_000_000_000,
                ..mk(100, 5_000_000)
            }),
            None
        );
        assert_eq!(
            c2.on_report(Feedback {
                arrival_ns: 1_500_000_000,
                ..mk(400, 20_000_000)
            }),
            None
        );
        let ch = c2
            .on_report(Feedback {
                arrival_ns: 2_000_000_000,
                ..mk(700, 45_000_000)
            })
            .expect("delay trigger");
        assert_eq!(ch.cause, Cause::Delay);
        // 300 packets of 1200 B in 0.5 s = 5760 kbit/s received; 85 % of it.
        assert_eq!(ch.received_kbps, Some(5760));
        assert_eq!(ch.to_kbps, 4896);
        assert!(
            ch.to_string().contains("8000 -> 4896 kbit/s (delay growth"),
            "{ch}"
        );
        // Held: the next report is not acted on.
        assert_eq!(
            c2.on_report(Feedback {
                arrival_ns: 2_500_000_000,
                ..mk(1000, 60_000_000)
            }),
            None
        );
    }

    #[test]
    fn moderate_random_loss_holds_and_bounds_are_kept() {
        let mut c = RateController::new(AbrParams {
            min_kbps: 3000,
            ..params()
        });
        let mut l = link(20_000.0);
        for _ in 0..3 {
            l.step(&mut c);
        }
        // 5 % loss (between the marks): no change.
        let b = ReportBlock {
            ssrc: 1,
            fraction_lost: 13,
            cumulative_lost: 0,
            ext_highest_seq: l.seq,
            jitter: 0,
            lsr: 0,
            dlsr: 0,
        };
        assert_eq!(
            c.on_report(Feedback {
                arrival_ns: l.now + 500_000_000,
                block: b,
                rtt_ns: None
            }),
            None
        );
        // 90 % loss on a tiny link: stops at the minimum.
        l.capacity_kbps = 100.0;
        for _ in 0..20 {
            l.step(&mut c);
        }
        assert_eq!(c.target_kbps(), 3000);
    }

    #[test]
    fn reports_sent_with_plis_50_ms_apart_keep_the_rate_estimate() {
        let mut c = RateController::new(params());
        c.on_sent(1000, 1_200_000);
        let b = |seq, lost: u8| ReportBlock {
            ssrc: 1,
            fraction_lost: lost,
            cumulative_lost: 0,
            ext_highest_seq: seq,
            jitter: 0,
            lsr: 0,
            dlsr: 0,
        };
        assert_eq!(
            c.on_report(Feedback {
                arrival_ns: 1_000_000_000,
                block: b(0, 0),
                rtt_ns: None
            }),
            None
        );
        assert_eq!(
            c.on_report(Feedback {
                arrival_ns: 1_500_000_000,
                block: b(250, 0),
                rtt_ns: None
            }),
            None
        );
        // Broken frames: a report with each PLI, 50 ms apart, the first one lossy.
        let ch = c
            .on_report(Feedback {
                arrival_ns: 1_550_000_000,
                block: b(260, 128),
                rtt_ns: None,
            })
            .expect("loss");
        // 250 packets of 1200 B in 0.5 s.
        assert_eq!(ch.received_kbps, Some(4800));
        assert_eq!(ch.to_kbps, 4080);
    }

    #[test]
    fn reset_sequence_numbers_give_no_rate() {
        let mut c = RateController::new(params());
        c.on_sent(10, 12_000);
        let b = |seq| ReportBlock {
            ssrc: 1,
            fraction_lost: 80,
            cumulative_lost: 0,
            ext_highest_seq: seq,
            jitter: 0,
            lsr: 0,
            dlsr: 0,
        };
        let _ = c.on_report(Feedback {
            arrival_ns: 1_000_000_000,
            block: b(50_000),
            rtt_ns: None,
        });
        let ch = c
            .on_report(Feedback {
                arrival_ns: 2_000_000_000,
                block: b(10),
                rtt_ns: None,
            })
            .expect("loss");
        assert_eq!(ch.received_kbps, None);
    }
}
