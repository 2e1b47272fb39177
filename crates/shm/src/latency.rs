//! Per-frame latency records and their percentiles. Pure code: times come in as numbers.
//!
//! Every time is CLOCK_MONOTONIC in ns, taken on the sending machine. Stage spans:
//! camera = capture → published in the frame ring; queue = published → encode start;
//! encode = the x264 call; send = encode end → last RTP packet handed to the kernel;
//! total = capture → last packet sent.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;

/// Timestamps of one frame through the pipeline (ns, CLOCK_MONOTONIC) and its size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameRecord {
    /// Source frame id.
    pub frame_id: u64,
    /// Capture time (camera timestamp, or the file/pattern frame's scheduled time).
    pub capture_ns: u64,
    /// Published into the frame ring.
    pub published_ns: u64,
    /// Encode stage took the frame and called x264.
    pub encode_start_ns: u64,
    /// x264 returned the access unit.
    pub encode_end_ns: u64,
    /// First RTP packet of the frame handed to sendmmsg.
    pub first_sent_ns: u64,
    /// sendmmsg returned for the last RTP packet of the frame.
    pub last_sent_ns: u64,
    /// Access-unit bytes (Annex-B).
    pub bytes: u64,
    /// RTP packets.
    pub packets: u64,
    /// 1 if the access unit is an IDR.
    pub keyframe: u64,
    /// A stereo pair's skew (the two eyes' capture times apart); `None` for one camera
    /// (`u64::MAX` in the shared-memory array, empty in the CSV).
    pub pair_skew_ns: Option<u64>,
}

/// [`FrameRecord::pair_skew_ns`] `None` in [`FrameRecord::to_array`].
const NOT_A_PAIR: u64 = u64::MAX;

/// How a span is computed from a record, ns.
pub type SpanFn = fn(&FrameRecord) -> u64;

/// The spans reported, in order: name and how to compute it from a record (ns).
pub const SPANS: &[(&str, SpanFn)] = &[
    ("camera", |r| r.published_ns.saturating_sub(r.capture_ns)),
    ("queue", |r| {
        r.encode_start_ns.saturating_sub(r.published_ns)
    }),
    ("encode", |r| {
        r.encode_end_ns.saturating_sub(r.encode_start_ns)
    }),
    ("send", |r| r.last_sent_ns.saturating_sub(r.encode_end_ns)),
    ("total", |r| r.last_sent_ns.saturating_sub(r.capture_ns)),
];

impl FrameRecord {
    /// Number of u64 fields (the shared-memory slot width).
    pub const FIELDS: usize = 11;

    /// The fields in declaration order.
    pub fn to_array(&self) -> [u64; Self::FIELDS] {
        [
            self.frame_id,
            self.capture_ns,
            self.published_ns,
            self.encode_start_ns,
            self.encode_end_ns,
            self.first_sent_ns,
            self.last_sent_ns,
            self.bytes,
            self.packets,
            self.keyframe,
            self.pair_skew_ns.unwrap_or(NOT_A_PAIR),
        ]
    }

    /// Inverse of [`FrameRecord::to_array`].
    pub fn from_array(a: [u64; Self::FIELDS]) -> FrameRecord {
        FrameRecord {
            frame_id: a[0],
            capture_ns: a[1],
            published_ns: a[2],
            encode_start_ns: a[3],
            encode_end_ns: a[4],
            first_sent_ns: a[5],
            last_sent_ns: a[6],
            bytes: a[7],
            packets: a[8],
            keyframe: a[9],
            pair_skew_ns: (a[10] != NOT_A_PAIR).then_some(a[10]),
        }
    }

    /// CSV header matching [`FrameRecord::csv_line`].
    pub const CSV_HEADER: &'static str = "frame_id,capture_ns,published_ns,encode_start_ns,encode_end_ns,first_sent_ns,last_sent_ns,bytes,packets,keyframe,pair_skew_ns";

    /// One CSV line (no newline).
    pub fn csv_line(&self) -> String {
        let a = self.to_array();
        let mut s = String::with_capacity(128);
        for (i, v) in a.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            if *v != NOT_A_PAIR || i != Self::FIELDS - 1 {
                let _ = write!(s, "{v}");
            }
        }
        s
    }

    /// Inverse of [`FrameRecord::csv_line`]: `None` unless the line has the
    /// [`FrameRecord::CSV_HEADER`] columns, each a u64 (the last may be empty).
    pub fn parse_csv_line(line: &str) -> Option<FrameRecord> {
        let mut a = [0u64; Self::FIELDS];
        let mut fields = line.split(',');
        for (i, v) in a.iter_mut().enumerate() {
            let f = fields.next()?;
            *v = match f {
                "" if i == Self::FIELDS - 1 => NOT_A_PAIR,
                _ => f.parse().ok()?,
            };
        }
        fields.next().is_none().then(|| FrameRecord::from_array(a))
    }
}

/// Percentile summary of one span, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Of a histogram of ns values.
    fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: us(h.value_at_quantile(0.50)),
            p95: us(h.value_at_quantile(0.95)),
            p99: us(h.value_at_quantile(0.99)),
            max: us(h.max()),
        }
    }
}

/// Percentiles of a set of samples as quick-bench and dashboard report them (`--json`:
/// `{"unit", "samples", "p50", "p99", "max"}`; nearest-rank on the sorted samples, so
/// `p50 <= p99 <= max` always holds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SamplePercentiles {
    /// Unit of `p50`, `p99` and `max`: `"us"` or `"ms"`.
    pub unit: &'static str,
    /// Number of samples.
    pub samples: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

/// Unit for [`SamplePercentiles::from_ns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
}

impl SamplePercentiles {
    /// From samples in ns, converted to `unit`. `None` for no samples.
    pub fn from_ns(samples: &[u64], unit: Unit) -> Option<SamplePercentiles> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_unstable();
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        let (div, name) = match unit {
            Unit::Us => (1e3, "us"),
            Unit::Ms => (1e6, "ms"),
        };
        Some(SamplePercentiles {
            unit: name,
            samples: v.len(),
            p50: rank(0.5) as f64 / div,
            p99: rank(0.99) as f64 / div,
            max: *v.last().unwrap() as f64 / div,
        })
    }

    /// The values in ms (for the budget).
    pub fn in_ms(&self) -> (f64, f64) {
        let f = if self.unit == "us" { 1e-3 } else { 1.0 };
        (self.p50 * f, self.p99 * f)
    }
}

/// Histograms of every span in [`SPANS`] and of the stereo pair skew (ns resolution, 3
/// significant digits).
pub struct LatencyStats {
    hists: Vec<Histogram<u64>>,
    /// [`FrameRecord::pair_skew_ns`] of the frames that are stereo pairs.
    pair_skew: Histogram<u64>,
}

impl Default for LatencyStats {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyStats {
    /// Empty statistics.
    pub fn new() -> LatencyStats {
        // 1 ns .. 100 s, 3 significant digits: valid bounds, cannot fail.
        let h = Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram bounds");
        LatencyStats {
            hists: SPANS.iter().map(|_| h.clone()).collect(),
            pair_skew: h,
        }
    }

    /// Adds one frame (frames without a send time are ignored).
    pub fn add(&mut self, r: &FrameRecord) {
        if r.last_sent_ns == 0 || r.capture_ns == 0 {
            return;
        }
        for (h, (_, f)) in self.hists.iter_mut().zip(SPANS) {
            h.saturating_record(f(r).max(1));
        }
        if let Some(skew) = r.pair_skew_ns {
            self.pair_skew.saturating_record(skew.max(1));
        }
    }

    /// Empties the statistics, keeping the allocated histograms.
    pub fn reset(&mut self) {
        for h in &mut self.hists {
            h.reset();
        }
        self.pair_skew.reset();
    }

    /// Frames added.
    pub fn count(&self) -> u64 {
        self.hists[0].len()
    }

    /// Percentiles of span `name` (one of [`SPANS`]), µs.
    pub fn span(&self, name: &str) -> Option<Percentiles> {
        let i = SPANS.iter().position(|(n, _)| *n == name)?;
        Some(Percentiles::of(&self.hists[i]))
    }

    /// Percentiles of the stereo pair skew, µs; `None` when no frame was a stereo pair.
    pub fn pair_skew(&self) -> Option<Percentiles> {
        (!self.pair_skew.is_empty()).then(|| Percentiles::of(&self.pair_skew))
    }

    /// A table: one line per span with p50/p95/p99/max in ms.
    pub fn report(&self) -> String {
        let mut s = format!(
            "latency over {} frames (ms)      p50      p95      p99      max\n",
            self.count()
        );
        let rows = SPANS
            .iter()
            .map(|(name, _)| (*name, self.span(name)))
            .chain([("pair skew", self.pair_skew())]);
        for (name, p) in rows {
            if let Some(p) = p {
                let label = match name {
                    "camera" => "camera (capture->ring)",
                    "queue" => "ring wait (ring->encoder)",
                    "encode" => "encode (x264)",
                    "send" => "send (AU->last packet)",
                    "pair skew" => "stereo pair skew (left/right)",
                    _ => "total (capture->last packet)",
                };
                let _ = writeln!(
                    s,
                    "  {label:<30} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                    p.p50 / 1000.0,
                    p.p95 / 1000.0,
                    p.p99 / 1000.0,
                    p.max / 1000.0
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_percentiles() {
        let mut st = LatencyStats::new();
        for i in 1..=100u64 {
            st.add(&FrameRecord {
                frame_id: i,
                capture_ns: 1_000_000,
                published_ns: 1_100_000,
                encode_start_ns: 1_200_000,
                encode_end_ns: 1_200_000 + i * 10_000,
                first_sent_ns: 0,
                last_sent_ns: 1_300_000 + i * 10_000,
                ..Default::default()
            });
        }
        let enc = st.span("encode").unwrap();
        assert_eq!(enc.count, 100);
        assert!((enc.p50 - 500.0).abs() < 2.0, "{enc:?}");
        assert!((enc.max - 1000.0).abs() < 2.0);
        let tot = st.span("total").unwrap();
        assert!((tot.p99 - 1290.0).abs() < 3.0, "{tot:?}");
        assert!(st.report().contains("total"));
        // One camera: no pair skew reported.
        assert_eq!(st.pair_skew(), None);
        assert!(!st.report().contains("pair skew"), "{}", st.report());
        let r = FrameRecord {
            frame_id: 3,
            bytes: 9,
            ..Default::default()
        };
        assert_eq!(FrameRecord::from_array(r.to_array()), r);
        assert_eq!(
            r.csv_line().split(',').count(),
            FrameRecord::CSV_HEADER.split(',').count()
        );
        assert!(r.csv_line().ends_with(",0,"), "{}", r.csv_line());
        assert_eq!(FrameRecord::parse_csv_line(&r.csv_line()), Some(r));
        assert_eq!(FrameRecord::parse_csv_line("1,2,3"), None);
        assert_eq!(
            FrameRecord::parse_csv_line(&format!("{},7", r.csv_line())),
            None
        );
    }

    #[test]
    fn stereo_pair_skew() {
        let mut st = LatencyStats::new();
        for i in 0..10u64 {
            st.add(&FrameRecord {
                frame_id: i,
                capture_ns: 1_000_000,
                last_sent_ns: 9_000_000,
                pair_skew_ns: Some(i * 1_000_000),
                ..Default::default()
            });
        }
        let p = st.pair_skew().unwrap();
        assert_eq!(p.count, 10);
        assert!((p.max - 9000.0).abs() < 10.0, "{p:?}");
        assert!((p.p50 - 4000.0).abs() < 10.0, "{p:?}");
        assert!(st.report().contains("stereo pair skew"), "{}", st.report());
        // A skew of 0 (two files scheduled alike) is a pair, and survives the array.
        let r = FrameRecord {
            pair_skew_ns: Some(0),
            ..Default::default()
        };
        assert_eq!(FrameRecord::from_array(r.to_array()), r);
        assert!(r.csv_line().ends_with(",0,0"), "{}", r.csv_line());
        assert_eq!(FrameRecord::parse_csv_line(&r.csv_line()), Some(r));
        let r = FrameRecord {
            pair_skew_ns: Some(1_500),
            ..Default::default()
        };
        assert_eq!(FrameRecord::from_array(r.to_array()), r);
    }
}
