//! Inputs and figures shared by the benches: two real access units, the real clip, a
//! vr-stream run with its latency log, and p50/p99/max of a set of samples. Each bench
//! uses some of them.
#![allow(dead_code)]

use hdrhistogram::Histogram;
use std::path::Path;
use std::process::{Command, Stdio};
use vr_stream::encode::{EncoderParams, VideoEncoder, X264Encoder};
use vr_stream::latency::FrameRecord;

#[path = "../../tests/support/clip.rs"]
mod clip;
#[allow(unused_imports)] // each test or bench uses some of these helpers
pub use clip::clip;
use vr_stream::source::{SourceFormat, pattern};

/// Two real x264 access units of the 1280x720 pattern with the built-in default
/// `[encoder]` section (8000 kbit/s, keyint 60, ultrafast): ("idr", bytes), ("p", bytes).
pub fn access_units() -> Vec<(&'static str, Vec<u8>)> {
    let fmt = SourceFormat {
        width: 1280,
        height: 720,
        fps_num: 60,
        fps_den: 1,
    };
    let mut e = X264Encoder::new(&EncoderParams {
        format: fmt,
        // The built-in default [encoder] section: 8000 kbit/s, keyint 60, ultrafast.
        enc: vr_stream::config::load(&[]).unwrap().encoder,
    })
    .unwrap();
    let mut buf = vec![0u8; fmt.frame_bytes()];
    let mut out = vec![];
    for i in 0..2 {
        pattern::draw(&mut buf, 1280, 720, i);
        let au = e.encode(&buf, false).unwrap();
        out.push((if au.keyframe { "idr" } else { "p" }, au.data.to_vec()));
    }
    out
}

/// p50, p99 and max of `ns` (nanoseconds, e.g. per-frame latencies), in ms, from an
/// HdrHistogram of 3 significant digits (1 ns to 100 s; 0 counts as 1 ns).
pub fn pct_ms(ns: &[u64]) -> (f64, f64, f64) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).unwrap();
    for &x in ns {
        h.saturating_record(x.max(1));
    }
    let ms = |x: u64| x as f64 / 1e6;
    (
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    )
}

/// A `vr-stream` command (the binary built with the benches): `frames` frames of `clip` at
/// 8000 kbit/s to 127.0.0.1:`port`, settings from `config` (a TOML file), the per-frame
/// latency records to `latency_log` (read them with [`latency_records`]), instance
/// `vrs-bench-{tag}-{pid}`, no SDP file, stderr piped.
pub fn sender(
    clip: &Path,
    port: u16,
    frames: usize,
    tag: &str,
    config: &Path,
    latency_log: &Path,
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vr-stream"));
    c.arg("--source")
        .arg(format!("file:{}", clip.display()))
        .args(["--bitrate", "8000", "--sdp", ""])
        .args(["--port", &port.to_string(), "--frames", &frames.to_string()])
        .arg("--instance")
        .arg(format!("vrs-bench-{tag}-{}", std::process::id()))
        .arg("--latency-log")
        .arg(latency_log)
        .arg("--config")
        .arg(config)
        .stderr(Stdio::piped());
    c
}

/// The records of a `--latency-log` CSV file (header line skipped). Panics on a line that
/// is not a record: the file is vr-stream's own output.
pub fn latency_records(csv: &Path) -> Vec<FrameRecord> {
    let text = std::fs::read_to_string(csv).unwrap();
    text.lines()
        .skip(1)
        .map(|l| FrameRecord::parse_csv_line(l).expect("a --latency-log line"))
        .collect()
}
