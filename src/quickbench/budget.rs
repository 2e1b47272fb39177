//! The latency budget: per-stage estimates from the measured sections, summed, against the
//! target. Pure code.
//!
//! The total adds the p99 of each stage, an upper estimate (stages rarely have their worst
//! frame together); the p50 sum is the typical frame. Stages not measured are listed and
//! left out of the sums, so the estimate says what it covers.

use super::{EncoderSection, MemorySection, Percentiles, RingSection, Section};
use serde::Serialize;

/// What the sender-side estimate does not include.
pub const EXCLUDES: &str = "decode and display on the headset (a vsync of 11-14 ms at 72-90 Hz plus decode) are not included";

/// One stage of the budget.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetRow {
    /// `capture`, `copy + hand-off`, `encode`, `packetize + send`, `network one-way`.
    pub stage: &'static str,
    /// Typical, ms (`None`: not measured).
    pub p50_ms: Option<f64>,
    /// Bad case, ms.
    pub p99_ms: Option<f64>,
    /// Where the figure comes from, or why it is missing.
    pub basis: String,
}

/// The budget.
#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    /// Stages in pipeline order.
    pub rows: Vec<BudgetRow>,
    /// Sum of the measured p50s, ms.
    pub total_p50_ms: f64,
    /// Sum of the measured p99s, ms.
    pub total_p99_ms: f64,
    /// `stats.target_ms`.
    pub target_ms: u32,
    /// `total_p99_ms <= target_ms`.
    pub within_target: bool,
    /// Stages left out (not measured).
    pub missing: Vec<&'static str>,
    /// [`EXCLUDES`].
    pub excludes: &'static str,
}

fn row(stage: &'static str, p: Option<(f64, f64)>, basis: String) -> BudgetRow {
    BudgetRow {
        stage,
        p50_ms: p.map(|x| x.0),
        p99_ms: p.map(|x| x.1),
        basis,
    }
}

/// Builds the budget from the measured sections.
pub fn budget(
    camera: Option<&Percentiles>,
    memory: &MemorySection,
    ring: &Section<RingSection>,
    encoder: &Section<EncoderSection>,
    rtt: (&Section<Percentiles>, &str),
    target_ms: u32,
) -> Budget {
    let (rtt, basis) = rtt;
    let reason = |s: &str| format!("not measured: {s}");
    let mut rows = vec![match camera {
        Some(p) => row(
            "capture",
            Some(p.in_ms()),
            "camera: buffer timestamp -> dequeued".into(),
        ),
        None => row("capture", None, reason("no camera")),
    }];
    let (c50, c99) = memory.copy.in_ms();
    rows.push(match ring.get() {
        Some(r) => {
            let (h50, h99) = r.handoff.in_ms();
            row(
                "copy + hand-off",
                Some((c50 + h50, c99 + h99)),
                "one frame copy into the ring + ring hand-off".into(),
            )
        }
        None => row(
            "copy + hand-off",
            Some((c50, c99)),
            "one frame copy (ring hand-off not measured)".into(),
        ),
    });
    match encoder {
        Section::Measured(e) => {
            rows.push(row(
                "encode",
                Some(e.encode.in_ms()),
                format!("{}, {} frames", e.backend, e.frames),
            ));
            rows.push(row(
                "packetize + send",
                Some(e.packetize_send.in_ms()),
                "RTP packetizing + sendmmsg".into(),
            ));
        }
        Section::NotMeasured { reason: r } => {
            rows.push(row("encode", None, reason(r)));
            rows.push(row("packetize + send", None, reason(r)));
        }
    }
    rows.push(match rtt {
        Section::Measured(p) => {
            let (a, b) = p.in_ms();
            row("network one-way", Some((a / 2.0, b / 2.0)), basis.into())
        }
        Section::NotMeasured { .. } => row(
            "network one-way",
            None,
            reason("no echo from the receiver, no ICMP echo reply"),
        ),
    });
    let total_p50_ms = rows.iter().filter_map(|r| r.p50_ms).sum();
    let total_p99_ms: f64 = rows.iter().filter_map(|r| r.p99_ms).sum();
    let missing = rows
        .iter()
        .filter(|r| r.p50_ms.is_none())
        .map(|r| r.stage)
        .collect();
    Budget {
        rows,
        total_p50_ms,
        total_p99_ms,
        target_ms,
        within_target: total_p99_ms <= target_ms as f64,
        missing,
        excludes: EXCLUDES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ms50: f64, ms99: f64) -> Percentiles {
        Percentiles {
            unit: "ms",
            samples: 10,
            p50: ms50,
            p99: ms99,
            max: ms99,
        }
    }

    #[test]
    fn sums_measured_stages_and_lists_missing() {
        let mem = MemorySection {
            frame_bytes: 1,
            copy: p(0.1, 0.2),
            gb_per_s: 10.0,
        };
        let ring = Section::Measured(RingSection {
            producer: String::new(),
            consumer: String::new(),
            handoff: Percentiles {
                unit: "us",
                samples: 10,
                p50: 5.0,
                p99: 50.0,
                max: 60.0,
            },
            drops: 0,
        });
        let enc = Section::Measured(EncoderSection {
            source: "pattern".into(),
            frames: 10,
            encode: p(4.0, 6.0),
            target_kbps: 8000,
            achieved_kbps: 7900.0,
            packetize_send: p(0.1, 0.3),
            placement: String::new(),
            backend: "x264".into(),
        });
        let b = budget(None, &mem, &ring, &enc, (&Section::not("x"), "-"), 10);
        assert_eq!(b.missing, vec!["capture", "network one-way"]);
        assert!((b.total_p50_ms - 4.205).abs() < 1e-9, "{}", b.total_p50_ms);
        assert!((b.total_p99_ms - 6.55).abs() < 1e-9, "{}", b.total_p99_ms);
        assert!(b.within_target);
        let b = budget(
            Some(&p(3.0, 5.0)),
            &mem,
            &ring,
            &enc,
            (
                &Section::Measured(p(4.0, 8.0)),
                "half the ICMP echo round trip",
            ),
            10,
        );
        assert!(b.missing.is_empty());
        assert!(!b.within_target, "{}", b.total_p99_ms);
    }
}
