//! `quick-bench`: is this box ready, and what sender-side latency will it give?
//!
//! Sections, each measured on this machine and printed as it finishes: system checks (the
//! same module as `setup --check`), timer wake-up jitter (SCHED_FIFO beside SCHED_OTHER),
//! frame copy bandwidth, shared-memory ring hand-off between two pinned processes, x264
//! encode time, detector (with --yolo: letterbox + inference per frame), camera, network (route, Wi-Fi, UDP echo round
//! trip), and a latency budget against `stats.target_ms`. The report is one [`Report`]
//! (`--json` prints it; `schemas/quick-bench.schema.json` describes it).

pub mod budget;
pub mod measure;
pub mod network;
pub mod render;

use serde::Serialize;

/// Report format version (`version` in the JSON document).
pub const VERSION: u32 = 1;

/// Percentiles of a set of samples (`vr-shm`'s [`vr_shm::latency::SamplePercentiles`]: the
/// same JSON shape in quick-bench's and dashboard's reports) and their unit.
pub use vr_shm::latency::{SamplePercentiles as Percentiles, Unit};

/// A section that was measured, or why it was not.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Section<T> {
    /// Measured here.
    Measured(T),
    /// Not measured, and why (no camera, no echo, not built).
    NotMeasured {
        /// Why, one line.
        reason: String,
    },
}

impl<T> Section<T> {
    /// The measured value.
    pub fn get(&self) -> Option<&T> {
        match self {
            Section::Measured(t) => Some(t),
            Section::NotMeasured { .. } => None,
        }
    }

    /// Not measured, because `reason`.
    pub fn not(reason: impl Into<String>) -> Self {
        Section::NotMeasured {
            reason: reason.into(),
        }
    }
}

/// What was measured against (from the configuration and the flags).
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// x264 threads (0 = x264 decides).
    pub encoder_threads: u32,
    /// Profile (`--profile`), if any.
    pub profile: Option<String>,
    /// Receiver address (`--ip`).
    pub ip: String,
    /// RTP port; the echo is on the RTCP port (port + 1).
    pub port: u16,
    /// Sender-side latency target, ms (`stats.target_ms`).
    pub target_ms: u32,
    /// `--quick`.
    pub quick: bool,
}

/// The system section: the rows of `setup --check`.
#[derive(Debug, Clone, Serialize)]
pub struct SystemSection {
    /// Whether every row is tuned or does not apply.
    pub tuned: bool,
    /// The root checked (`/` unless `--root`).
    pub root: String,
    /// The rows (`vr_setup::checks::Row`).
    pub rows: Vec<vr_setup::checks::Row>,
}

/// One timer loop of the jitter section.
#[derive(Debug, Clone, Serialize)]
pub struct JitterRun {
    /// `SCHED_FIFO` or `SCHED_OTHER`.
    pub policy: String,
    /// SCHED_FIFO priority (0 for SCHED_OTHER).
    pub priority: i32,
    /// CPU the loop ran on.
    pub cpu: usize,
    /// Whether that CPU is isolated (`/sys/devices/system/cpu/isolated`).
    pub isolated: bool,
    /// Wake-up latency: actual wake-up minus the absolute deadline.
    pub wakeup: Percentiles,
}

/// Scheduling jitter: a cyclictest-style loop (clock_nanosleep TIMER_ABSTIME, fixed period).
#[derive(Debug, Clone, Serialize)]
pub struct JitterSection {
    /// Period, µs.
    pub period_us: u64,
    /// Under SCHED_FIFO, or why not.
    pub fifo: Section<JitterRun>,
    /// Under SCHED_OTHER on the same CPU.
    pub other: JitterRun,
}

/// Memory: copying one frame.
#[derive(Debug, Clone, Serialize)]
pub struct MemorySection {
    /// Bytes of one I420 frame at the configured size.
    pub frame_bytes: usize,
    /// Time per frame copy.
    pub copy: Percentiles,
    /// Bandwidth at the median, GB/s (10^9 bytes).
    pub gb_per_s: f64,
}

/// The project's frame ring between two pinned processes.
#[derive(Debug, Clone, Serialize)]
pub struct RingSection {
    /// Producer placement (`CPU 2 SCHED_FIFO 90`).
    pub producer: String,
    /// Consumer placement.
    pub consumer: String,
    /// Publish → consumer has the frame.
    pub handoff: Percentiles,
    /// Frames the consumer missed (latest-wins drops).
    pub drops: u64,
}

/// The configured encoder (x264 or V4L2 M2M) at the configured size, rate and bitrate.
#[derive(Debug, Clone, Serialize)]
pub struct EncoderSection {
    /// `file:PATH` (the real clip) or `pattern`.
    pub source: String,
    /// Frames encoded.
    pub frames: usize,
    /// Time of each encode call (one frame in, its NAL units out).
    pub encode: Percentiles,
    /// Configured bitrate, kbit/s.
    pub target_kbps: u32,
    /// Bits produced per second of video, kbit/s.
    pub achieved_kbps: f64,
    /// Packetizing (RFC 6184) and sendmmsg of each access unit to a local UDP socket.
    pub packetize_send: Percentiles,
    /// Where the encoder ran (`CPU 3 SCHED_FIFO 80`).
    pub placement: String,
    /// Which encoder (`x264`, `v4l2m2m /dev/video11 (bcm2835-codec)`).
    pub backend: String,
}

/// Camera: frame interval, jitter and capture latency.
#[derive(Debug, Clone, Serialize)]
pub struct CameraSection {
    /// The device.
    pub device: String,
    /// Time between frames (buffer timestamps).
    pub interval: Percentiles,
    /// Deviation of the interval from its median.
    pub jitter: Percentiles,
    /// Dequeue time minus buffer timestamp.
    pub capture_latency: Percentiles,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`VERSION`].
    pub version: u32,
    /// What was measured against.
    pub setting: Setting,
    /// System checks.
    pub system: SystemSection,
    /// Scheduling jitter.
    pub jitter: Section<JitterSection>,
    /// Frame copy.
    pub memory: MemorySection,
    /// Ring hand-off.
    pub ring: Section<RingSection>,
    /// Encoder.
    pub encoder: Section<EncoderSection>,
    /// Detector (`--yolo`).
    pub detector: Section<Percentiles>,
    /// Camera.
    pub camera: Section<CameraSection>,
    /// Network.
    pub network: network::NetworkSection,
    /// Latency budget.
    pub budget: budget::Budget,
    /// Exit status: 0 tuned and within target, 1 not.
    pub exit: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ordered_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        let p = Percentiles::from_ns(&v, Unit::Us).unwrap();
        assert_eq!((p.p50, p.p99, p.max, p.samples), (50.0, 99.0, 100.0, 100));
        let p = Percentiles::from_ns(&[3_000_000], Unit::Ms).unwrap();
        assert_eq!((p.p50, p.p99, p.max), (3.0, 3.0, 3.0));
        assert_eq!(p.in_ms(), (3.0, 3.0));
        assert!(Percentiles::from_ns(&[], Unit::Ms).is_none());
    }
}
