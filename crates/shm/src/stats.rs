//! The stats segment: what every stage reports about itself, the per-frame latency
//! records, encoder and network counters, and what the stream is. Written by the stages
//! and the supervisor; read by the supervisor, `dashboard` and `quick-bench`; readers never
//! block writers (atomics, and a seqlock per record).
//!
//! Layout after the 64-byte segment header ([`super::LAYOUT_VERSION`], kind
//! [`Kind::Stats`]): `StatsHeader` (stream description, counters), [`STAGES`] ×
//! [`StageSlot`], then [`RECORDS`] × record slots. Text that may change while read (the
//! stream description, a stage's error) is a [`SeqBytes`] (shm::seqtext). Each record slot
//! is a seqlock: `seq` odd while the (single) writer fills it, even when done; a reader
//! retries or skips a record whose `seq` changed under it.

use super::seqtext::SeqBytes;
use super::{KIND_HEADER_OFFSET, Kind, Layout, Segment, ShmError};
use crate::latency::FrameRecord;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering, fence};

/// Stage slots.
pub const STAGES: usize = 5;
/// Per-frame records kept (a ring; about 68 s at 60 fps).
pub const RECORDS: usize = 4096;
/// Largest stage error message, bytes.
pub const MAX_ERROR: usize = 512;

/// A stage's slot in the stats segment: the slot index is the discriminant, in declaration
/// order (0..[`STAGES`]); reordering the variants is a layout change ([`super::LAYOUT_VERSION`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Source → frame ring.
    Camera,
    /// Frame ring → encoder (x264 or V4L2 M2M) → bitstream queue.
    Encode,
    /// Bitstream queue → RTP/UDP.
    Network,
    /// Frame ring (newest frame) → YOLO → detections in the stats segment (optional).
    Detect,
    /// The web queue (the encoder's copy of each access unit) → the viewer page's WebSocket
    /// and WebRTC viewers (optional, not realtime).
    Web,
}

impl Stage {
    /// Every slot, in slot order.
    pub const ALL: [Stage; STAGES] = [
        Stage::Camera,
        Stage::Encode,
        Stage::Network,
        Stage::Detect,
        Stage::Web,
    ];

    /// The stage's name, as `--stage`, the supervisor's messages and `dashboard` print it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Camera => "camera",
            Stage::Encode => "encode",
            Stage::Network => "network",
            Stage::Detect => "detect",
            Stage::Web => "web",
        }
    }

    /// The stage named `name` (as [`Stage::name`] gives it); `None` for any other text.
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the stream can go on without it (detection and the viewer page are extras
    /// the configuration turns on; the RTP stream's stages are not): `dashboard` lists an
    /// optional stage only once it has started.
    pub fn optional(self) -> bool {
        matches!(self, Stage::Detect | Stage::Web)
    }
}

/// Most detections published per frame (`vr-proto`'s limit, which the wire format shares).
pub use vr_proto::detection::MAX_DETECTIONS;

/// The newest detection result, as the detect stage publishes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectionSet {
    /// Frame the detections belong to.
    pub frame_id: u64,
    /// Its capture time, CLOCK_MONOTONIC ns.
    pub capture_ns: u64,
    /// When the result was published, CLOCK_MONOTONIC ns.
    pub published_ns: u64,
    /// The detections, boxes in frame pixels, best first (at most [`MAX_DETECTIONS`]).
    pub detections: Vec<vr_proto::detection::Detection>,
}

/// Detect-stage counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectCounters {
    /// Frames run through the detector.
    pub inferences: u64,
    /// Detections published in all.
    pub detections: u64,
    /// Time of the last run: preparation (letterbox) and inference, µs.
    pub last_prep_us: u32,
    /// Inference of the last run, µs.
    pub last_infer_us: u32,
    /// Sum of inference times, µs (mean = this / inferences).
    pub infer_us_total: u64,
}

#[repr(C)]
struct DetBlock {
    seq: AtomicU64,
    frame_id: AtomicU64,
    capture_ns: AtomicU64,
    published_ns: AtomicU64,
    count: AtomicU32,
    /// Per detection: class | score bits << 32, then the four box corners as f32 bits.
    items: [[AtomicU64; 3]; MAX_DETECTIONS],
}

/// Largest text field of the stream description (destination, profile), bytes.
pub const MAX_TEXT: usize = 64;

/// Life cycle of a stage, as stored in its slot.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    /// Not started.
    Idle = 0,
    /// Process started, setting up.
    Starting = 1,
    /// Set up, waiting for or past the go signal.
    Ready = 2,
    /// Finished cleanly.
    Done = 3,
    /// Failed; the error text is in the slot.
    Failed = 4,
    /// Running, but its input is gone (camera unplugged) and it is reopening it with
    /// backoff; the reason is in the slot's error text.
    Retrying = 5,
}

impl StageState {
    fn from_u32(v: u32) -> StageState {
        match v {
            1 => StageState::Starting,
            2 => StageState::Ready,
            3 => StageState::Done,
            4 => StageState::Failed,
            5 => StageState::Retrying,
            _ => StageState::Idle,
        }
    }
}

/// What the stream is (written by the supervisor before the stages start; the bitrate is
/// updated by the encode stage when it changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// Receiver, `ADDR:PORT`.
    pub destination: String,
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Encoder bitrate in force, kbit/s.
    pub bitrate_kbps: u32,
    /// `--profile` name, or empty.
    pub profile: String,
    /// `stats.target_ms`.
    pub target_ms: u32,
    /// Supervisor process id.
    pub supervisor_pid: u32,
    /// When the stream started, CLOCK_MONOTONIC ns.
    pub started_ns: u64,
}

/// Network counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// RTP packets the kernel accepted.
    pub packets: u64,
    /// Their bytes (UDP payload).
    pub bytes: u64,
    /// sendmmsg calls.
    pub batches: u64,
    /// Packets lost to send errors (ICMP unreachable, no route).
    pub send_errors: u64,
    /// Packets dropped because the socket stayed full (EAGAIN past the wait).
    pub wouldblock_drops: u64,
    /// FEC packets sent (to port + 2).
    pub fec_packets: u64,
    /// Access units whose packets beyond `stream.burst_bytes` were paced.
    pub paced_frames: u64,
    /// Time spent pacing, summed over those frames, ns.
    pub paced_ns: u64,
    /// Whole access units not sent because the TCP connection was down or its buffer
    /// full (`stream.tcp`).
    pub dropped_frames: u64,
    /// Changes to the encoder's bitrate (asked by the RTP receiver's rate controller or a
    /// WebRTC peer's: the encoder runs at the lowest target).
    pub abr_changes: u64,
    /// Of `send_errors`, RTP packets refused (ECONNREFUSED: ICMP port unreachable from
    /// the receiver's host, nothing listens on the RTP port).
    pub refused: u64,
    /// CLOCK_MONOTONIC ns of the last send that was refused (0 = none); merged with max.
    pub last_refused_ns: u64,
}

/// What receivers said over RTCP (RFC 3550 receiver reports, RFC 4585 feedback), as the
/// network stage records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpCounters {
    /// Report blocks about our SSRC received (in RRs or SRs).
    pub reports: u64,
    /// Fraction lost in the last report, 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost in the last report.
    pub cumulative_lost: i32,
    /// Interarrival jitter in the last report, 90 kHz ticks.
    pub jitter_90k: u32,
    /// Round-trip time from the last report's LSR/DLSR, µs (`None`: no SR answered yet).
    pub rtt_us: Option<u32>,
    /// When the last report arrived, CLOCK_MONOTONIC ns (0: never).
    pub last_report_ns: u64,
    /// PLIs received (each makes the encoder send an IDR).
    pub pli: u64,
    /// Packets asked for by generic NACKs.
    pub nack_packets: u64,
}

/// Encoder counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncCounters {
    /// Frames encoded.
    pub frames: u64,
    /// Access-unit bytes.
    pub bytes: u64,
    /// IDR frames.
    pub idr: u64,
    /// Size of the last access unit, bytes.
    pub last_bytes: u64,
    /// QP of the last frame (x264's `i_qpplus1 - 1`), -1 when unknown.
    pub last_qp: i32,
}

#[repr(C, align(64))]
struct StatsHeader {
    destination: SeqBytes<{ MAX_TEXT / 8 }>,
    profile: SeqBytes<{ MAX_TEXT / 8 }>,
    width: AtomicU32,
    height: AtomicU32,
    fps: AtomicU32,
    bitrate_kbps: AtomicU32,
    target_ms: AtomicU32,
    supervisor_pid: AtomicU32,
    started_ns: AtomicU64,
    records_written: AtomicU64,
    net_packets: AtomicU64,
    net_bytes: AtomicU64,
    net_batches: AtomicU64,
    net_send_errors: AtomicU64,
    net_wouldblock: AtomicU64,
    net_fec: AtomicU64,
    net_paced_frames: AtomicU64,
    net_paced_ns: AtomicU64,
    net_dropped_frames: AtomicU64,
    net_abr_changes: AtomicU64,
    net_refused: AtomicU64,
    net_last_refused_ns: AtomicU64,
    enc_frames: AtomicU64,
    enc_bytes: AtomicU64,
    enc_idr: AtomicU64,
    enc_last_bytes: AtomicU64,
    enc_last_qp: AtomicI32,
    rtcp_fraction_lost: AtomicU32,
    rtcp_cumulative_lost: AtomicI32,
    rtcp_jitter: AtomicU32,
    rtcp_rtt_us: AtomicU32,
    rtcp_reports: AtomicU64,
    rtcp_last_ns: AtomicU64,
    rtcp_pli: AtomicU64,
    rtcp_nack: AtomicU64,
    det_inferences: AtomicU64,
    det_detections: AtomicU64,
    det_last_prep_us: AtomicU32,
    det_last_infer_us: AtomicU32,
    det_infer_us_total: AtomicU64,
    det: DetBlock,
    web: WebBlock,
}

/// Viewers listed one by one in the stats segment (more are counted, not listed).
pub const MAX_VIEWER_ROWS: usize = 8;

/// One page's report as stored (the newest of any page, and one per viewer row).
#[repr(C)]
#[derive(Default)]
struct ReportBlock {
    transport: AtomicU32,
    reconnects: AtomicU32,
    report_ns: AtomicU64,
    decoded: AtomicU64,
    p50_us: AtomicU32,
    p99_us: AtomicU32,
    display_p50_us: AtomicU32,
    display_p99_us: AtomicU32,
    decode_us: AtomicU32,
    fps_milli: AtomicU32,
}

/// One viewer connected now: a seqlock (`seq` odd while the web stage writes it), its
/// address (IPv6, IPv4-mapped, big-endian halves; port) and its page's last report.
#[repr(C)]
struct ViewerRow {
    seq: AtomicU64,
    used: AtomicU32,
    port: AtomicU32,
    addr_hi: AtomicU64,
    addr_lo: AtomicU64,
    report: ReportBlock,
}

/// The viewer page's figures (`--web`), written by the web stage.
#[repr(C)]
struct WebBlock {
    enabled: AtomicU32,
    rows_seq: AtomicU32,
    viewers: AtomicU64,
    sent: AtomicU64,
    skipped: AtomicU64,
    refused: AtomicU64,
    /// The newest report of any page (kept after that page left).
    last: ReportBlock,
    rows: [ViewerRow; MAX_VIEWER_ROWS],
}

impl ReportBlock {
    fn store(&self, p: &PageStats) {
        let us = |d: std::time::Duration| d.as_micros().min(u32::MAX as u128) as u32;
        self.transport.store(p.transport as u32, Ordering::Relaxed);
        self.reconnects.store(p.reconnects, Ordering::Relaxed);
        self.decoded.store(p.decoded, Ordering::Relaxed);
        self.p50_us.store(us(p.latency_p50), Ordering::Relaxed);
        self.p99_us.store(us(p.latency_p99), Ordering::Relaxed);
        self.display_p50_us
            .store(us(p.display_p50), Ordering::Relaxed);
        self.display_p99_us
            .store(us(p.display_p99), Ordering::Relaxed);
        self.decode_us.store(us(p.decode), Ordering::Relaxed);
        self.fps_milli.store(p.fps_milli, Ordering::Relaxed);
        self.report_ns.store(p.report_ns, Ordering::Release);
    }

    /// The report, `None` before one arrived (report_ns 0).
    fn load(&self) -> Option<PageStats> {
        let report_ns = self.report_ns.load(Ordering::Acquire);
        let us = |a: &AtomicU32| std::time::Duration::from_micros(a.load(Ordering::Relaxed) as u64);
        (report_ns != 0).then(|| PageStats {
            transport: match self.transport.load(Ordering::Relaxed) {
                1 => PageTransport::WebSocket,
                2 => PageTransport::WebRtc,
                _ => PageTransport::Unknown,
            },
            report_ns,
            decoded: self.decoded.load(Ordering::Relaxed),
            latency_p50: us(&self.p50_us),
            latency_p99: us(&self.p99_us),
            display_p50: us(&self.display_p50_us),
            display_p99: us(&self.display_p99_us),
            decode: us(&self.decode_us),
            fps_milli: self.fps_milli.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        })
    }
}

/// One viewer connected now, as listed in the stats segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewerStats {
    /// Its page's address (the HTTP peer that opened the WebSocket or sent the offer).
    pub addr: std::net::SocketAddr,
    /// How it receives the stream (known before its first report).
    pub transport: PageTransport,
    /// Its page's last report, `None` before the first (one a second).
    pub report: Option<PageStats>,
}

/// The viewer page (`--web`): the server's counters and the newest report of a page
/// (what it measured on the headset). Fields of one report are stored one by one: a
/// reader may see two consecutive reports mixed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebStats {
    /// Viewers connected now (WebRTC peers and WebSockets).
    pub viewers: u64,
    /// Access units handed to viewers, summed over viewers.
    pub sent: u64,
    /// Access units a viewer missed (queue full, waiting for an IDR).
    pub skipped: u64,
    /// Refused logins and connections (wrong PIN, blocked address, bad token).
    pub refused: u64,
    /// The newest page report, if any.
    pub page: Option<PageStats>,
    /// The viewers connected now (at most [`MAX_VIEWER_ROWS`]), each with its page's report.
    pub list: Vec<ViewerStats>,
}

/// One page's report (once a second).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PageStats {
    /// How the page receives the stream.
    pub transport: PageTransport,
    /// When the report arrived, CLOCK_MONOTONIC ns.
    pub report_ns: u64,
    /// Frames the page decoded since it started.
    pub decoded: u64,
    /// Capture → decoded on the page (clock-offset corrected), last ≤ 600 frames.
    pub latency_p50: std::time::Duration,
    /// The same, 99th percentile.
    pub latency_p99: std::time::Duration,
    /// Capture → expected display (WebRTC: `requestVideoFrameCallback`'s
    /// `expectedDisplayTime`; WebSocket: the drawing frame's time + one display refresh),
    /// median.
    pub display_p50: std::time::Duration,
    /// The same, 99th percentile.
    pub display_p99: std::time::Duration,
    /// Decode time (WebCodecs: chunk in → frame out; WebRTC: the browser's processing
    /// duration), median.
    pub decode: std::time::Duration,
    /// Frames per second decoded over the last second, thousandths of a frame.
    pub fps_milli: u32,
    /// Connections the page made again after a drop (Wi-Fi, a restarted web stage).
    pub reconnects: u32,
}

/// The page's transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PageTransport {
    /// Not said.
    #[default]
    Unknown,
    /// WebSocket + WebCodecs.
    WebSocket,
    /// WebRTC.
    WebRtc,
}

impl PageTransport {
    /// `"ws"`, `"webrtc"` or `"unknown"`: the page's `transport` value.
    pub fn as_str(self) -> &'static str {
        match self {
            PageTransport::Unknown => "unknown",
            PageTransport::WebSocket => "ws",
            PageTransport::WebRtc => "webrtc",
        }
    }

    /// From the page's `transport` value.
    pub fn parse(s: &str) -> PageTransport {
        match s {
            "ws" => PageTransport::WebSocket,
            "webrtc" => PageTransport::WebRtc,
            _ => PageTransport::Unknown,
        }
    }
}

/// What one stage reports about itself.
#[repr(C, align(64))]
pub struct StageSlot {
    state: AtomicU32,
    /// Process id.
    pub pid: AtomicU32,
    /// CPU the affinity mask allows (-1 = several / unknown).
    pub cpu: AtomicI32,
    /// Scheduling policy in force (SCHED_OTHER = 0, SCHED_FIFO = 1).
    pub policy: AtomicU32,
    /// Realtime priority in force.
    pub priority: AtomicU32,
    /// Locked memory (VmLck), KiB.
    pub vmlck_kb: AtomicU64,
    /// Last heartbeat, CLOCK_MONOTONIC ns.
    pub heartbeat_ns: AtomicU64,
    /// Frames taken in.
    pub frames_in: AtomicU64,
    /// Frames handed on.
    pub frames_out: AtomicU64,
    /// Frames dropped by this stage.
    pub drops: AtomicU64,
    /// Times the supervisor restarted this stage.
    pub restarts: AtomicU64,
    /// Times the stage reopened its input after losing it (camera unplugged).
    pub retries: AtomicU64,
    /// 1 if the failure is permanent (a broken input file): not worth a restart.
    permanent: AtomicU32,
    /// What `error` holds: [`REASON_NONE`], [`REASON_RETRYING`] or [`REASON_FAILED`].
    reason: AtomicU32,
    /// Written by the stage while the supervisor and dashboard may read it: seqlocked.
    error: SeqBytes<{ MAX_ERROR / 8 }>,
}

const REASON_NONE: u32 = 0;
const REASON_RETRYING: u32 = 1;
const REASON_FAILED: u32 = 2;

#[repr(C)]
struct RecordSlot {
    seq: AtomicU64,
    fields: [AtomicU64; FrameRecord::FIELDS],
}

const KIND_HEADER_SIZE: usize = std::mem::size_of::<StatsHeader>()
    + STAGES * std::mem::size_of::<StageSlot>()
    + RECORDS * std::mem::size_of::<RecordSlot>();

fn layout() -> Layout {
    Layout {
        kind: Kind::Stats,
        kind_header_size: KIND_HEADER_SIZE as u32,
        slot_size: std::mem::size_of::<RecordSlot>() as u64,
        slot_count: RECORDS as u64,
        total_size: super::align_up(KIND_HEADER_OFFSET + KIND_HEADER_SIZE, 4096) as u64,
    }
}

/// The mapped stats segment.
pub struct Stats {
    seg: Segment,
}

// SAFETY: every shared field is an atomic (the text fields are atomic words under a
// sequence lock, shm::seqtext); the mapping lives as long as `seg`.
unsafe impl Send for Stats {}
// SAFETY: as above.
unsafe impl Sync for Stats {}

impl Stats {
    /// Creates stats segment `name`.
    pub fn create(name: &str) -> Result<Stats, ShmError> {
        let seg = Segment::create(name, layout())?;
        seg.finish_init();
        Ok(Stats { seg })
    }

    /// Opens stats segment `name`, checking its header (magic, layout version, kind,
    /// sizes). Errors: [`ShmError`] naming the segment and what differs.
    pub fn open(name: &str) -> Result<Stats, ShmError> {
        Ok(Stats {
            seg: Segment::open(name, layout())?,
        })
    }

    /// The segment's file name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    fn hdr(&self) -> &StatsHeader {
        // SAFETY: checked layout: the StatsHeader lies at KIND_HEADER_OFFSET.
        unsafe { &*(self.seg.base().add(KIND_HEADER_OFFSET) as *const StatsHeader) }
    }

    /// The slot of stage `s`.
    pub fn stage(&self, s: Stage) -> &StageSlot {
        // SAFETY: `s as usize` < STAGES (every discriminant is, `Stage::ALL` has STAGES
        // entries); the STAGES slots follow the header inside the checked kind header.
        unsafe {
            &*self
                .seg
                .array_after::<StatsHeader, StageSlot>()
                .add(s as usize)
        }
    }

    fn record(&self, i: usize) -> &RecordSlot {
        // SAFETY: i % RECORDS < RECORDS; the records follow the stage slots.
        unsafe {
            &*(self.seg.base().add(
                KIND_HEADER_OFFSET
                    + std::mem::size_of::<StatsHeader>()
                    + STAGES * std::mem::size_of::<StageSlot>(),
            ) as *const RecordSlot)
                .add(i % RECORDS)
        }
    }

    /// Touches every page (the record ring is 360 KB): resident from the start, so the
    /// reader's memory does not grow as records wrap around.
    pub fn prefault(&self) {
        self.seg.prefault();
    }

    /// Writes the stream description (the supervisor, once, before the stages start).
    pub fn set_info(&self, i: &StreamInfo) {
        let h = self.hdr();
        h.destination.write(i.destination.as_bytes());
        h.profile.write(i.profile.as_bytes());
        h.width.store(i.width, Ordering::Relaxed);
        h.height.store(i.height, Ordering::Relaxed);
        h.fps.store(i.fps, Ordering::Relaxed);
        h.target_ms.store(i.target_ms, Ordering::Relaxed);
        h.supervisor_pid.store(i.supervisor_pid, Ordering::Relaxed);
        h.started_ns.store(i.started_ns, Ordering::Relaxed);
        // Release: the fields above are visible with the bitrate (read first by `info`).
        h.bitrate_kbps.store(i.bitrate_kbps, Ordering::Release);
    }

    /// Records the bitrate in force (the encode stage, after a change), kbit/s.
    pub fn set_bitrate(&self, kbps: u32) {
        self.hdr().bitrate_kbps.store(kbps, Ordering::Release);
    }

    /// The stream description.
    pub fn info(&self) -> StreamInfo {
        let h = self.hdr();
        let bitrate_kbps = h.bitrate_kbps.load(Ordering::Acquire);
        StreamInfo {
            destination: h.destination.read_text(),
            width: h.width.load(Ordering::Relaxed),
            height: h.height.load(Ordering::Relaxed),
            fps: h.fps.load(Ordering::Relaxed),
            bitrate_kbps,
            profile: h.profile.read_text(),
            target_ms: h.target_ms.load(Ordering::Relaxed),
            supervisor_pid: h.supervisor_pid.load(Ordering::Relaxed),
            started_ns: h.started_ns.load(Ordering::Relaxed),
        }
    }

    /// Adds to the network counters.
    pub fn add_net(&self, c: &NetCounters) {
        let h = self.hdr();
        let add = |counter: &AtomicU64, n: u64| counter.fetch_add(n, Ordering::Relaxed);
        add(&h.net_packets, c.packets);
        add(&h.net_bytes, c.bytes);
        add(&h.net_batches, c.batches);
        add(&h.net_send_errors, c.send_errors);
        add(&h.net_wouldblock, c.wouldblock_drops);
        add(&h.net_fec, c.fec_packets);
        add(&h.net_paced_frames, c.paced_frames);
        add(&h.net_paced_ns, c.paced_ns);
        add(&h.net_dropped_frames, c.dropped_frames);
        add(&h.net_abr_changes, c.abr_changes);
        add(&h.net_refused, c.refused);
        h.net_last_refused_ns
            .fetch_max(c.last_refused_ns, Ordering::Relaxed);
    }

    /// Network counters.
    pub fn net(&self) -> NetCounters {
        let h = self.hdr();
        NetCounters {
            packets: h.net_packets.load(Ordering::Relaxed),
            bytes: h.net_bytes.load(Ordering::Relaxed),
            batches: h.net_batches.load(Ordering::Relaxed),
            send_errors: h.net_send_errors.load(Ordering::Relaxed),
            wouldblock_drops: h.net_wouldblock.load(Ordering::Relaxed),
            fec_packets: h.net_fec.load(Ordering::Relaxed),
            paced_frames: h.net_paced_frames.load(Ordering::Relaxed),
            paced_ns: h.net_paced_ns.load(Ordering::Relaxed),
            dropped_frames: h.net_dropped_frames.load(Ordering::Relaxed),
            abr_changes: h.net_abr_changes.load(Ordering::Relaxed),
            refused: h.net_refused.load(Ordering::Relaxed),
            last_refused_ns: h.net_last_refused_ns.load(Ordering::Relaxed),
        }
    }

    /// Adds one encoded frame of `bytes` (IDR or not; `qp` -1 when unknown).
    pub fn add_encoded(&self, bytes: u64, idr: bool, qp: i32) {
        let h = self.hdr();
        h.enc_frames.fetch_add(1, Ordering::Relaxed);
        h.enc_bytes.fetch_add(bytes, Ordering::Relaxed);
        h.enc_idr.fetch_add(idr as u64, Ordering::Relaxed);
        h.enc_last_bytes.store(bytes, Ordering::Relaxed);
        h.enc_last_qp.store(qp, Ordering::Relaxed);
    }

    /// Encoder counters.
    pub fn encoded(&self) -> EncCounters {
        let h = self.hdr();
        EncCounters {
            frames: h.enc_frames.load(Ordering::Relaxed),
            bytes: h.enc_bytes.load(Ordering::Relaxed),
            idr: h.enc_idr.load(Ordering::Relaxed),
            last_bytes: h.enc_last_bytes.load(Ordering::Relaxed),
            last_qp: h.enc_last_qp.load(Ordering::Relaxed),
        }
    }

    /// Records a report block about our SSRC received at `now_ns` (CLOCK_MONOTONIC), with
    /// the RTT it gave (if its LSR named one of our SRs).
    pub fn add_rtcp_report(
        &self,
        fraction_lost: u8,
        cumulative_lost: i32,
        jitter_90k: u32,
        rtt_us: Option<u32>,
        now_ns: u64,
    ) {
        let h = self.hdr();
        h.rtcp_fraction_lost
            .store(fraction_lost as u32, Ordering::Relaxed);
        h.rtcp_cumulative_lost
            .store(cumulative_lost, Ordering::Relaxed);
        h.rtcp_jitter.store(jitter_90k, Ordering::Relaxed);
        if let Some(r) = rtt_us {
            h.rtcp_rtt_us
                .store(r.min(u32::MAX - 1) + 1, Ordering::Relaxed);
        }
        h.rtcp_last_ns.store(now_ns, Ordering::Relaxed);
        h.rtcp_reports.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a PLI.
    pub fn add_pli(&self) {
        self.hdr().rtcp_pli.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` NACKed packets.
    pub fn add_nack(&self, n: u64) {
        self.hdr().rtcp_nack.fetch_add(n, Ordering::Relaxed);
    }

    /// RTCP counters.
    pub fn rtcp(&self) -> RtcpCounters {
        let h = self.hdr();
        RtcpCounters {
            reports: h.rtcp_reports.load(Ordering::Relaxed),
            fraction_lost: h.rtcp_fraction_lost.load(Ordering::Relaxed) as u8,
            cumulative_lost: h.rtcp_cumulative_lost.load(Ordering::Relaxed),
            jitter_90k: h.rtcp_jitter.load(Ordering::Relaxed),
            rtt_us: h.rtcp_rtt_us.load(Ordering::Relaxed).checked_sub(1),
            last_report_ns: h.rtcp_last_ns.load(Ordering::Relaxed),
            pli: h.rtcp_pli.load(Ordering::Relaxed),
            nack_packets: h.rtcp_nack.load(Ordering::Relaxed),
        }
    }

    /// Publishes the newest detection result (single writer: the detect stage) and
    /// counts the run.
    pub fn publish_detections(&self, set: &DetectionSet, prep_us: u32, infer_us: u32) {
        let h = self.hdr();
        let b = &h.det;
        let s = b.seq.load(Ordering::Relaxed);
        b.seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        b.frame_id.store(set.frame_id, Ordering::Relaxed);
        b.capture_ns.store(set.capture_ns, Ordering::Relaxed);
        b.published_ns.store(set.published_ns, Ordering::Relaxed);
        let n = set.detections.len().min(MAX_DETECTIONS);
        b.count.store(n as u32, Ordering::Relaxed);
        for (slot, d) in b.items.iter().zip(&set.detections[..n]) {
            slot[0].store(
                d.class as u64 | (d.score.to_bits() as u64) << 32,
                Ordering::Relaxed,
            );
            slot[1].store(
                d.bbox[0].to_bits() as u64 | (d.bbox[1].to_bits() as u64) << 32,
                Ordering::Relaxed,
            );
            slot[2].store(
                d.bbox[2].to_bits() as u64 | (d.bbox[3].to_bits() as u64) << 32,
                Ordering::Relaxed,
            );
        }
        b.seq.store(s + 2, Ordering::Release);
        h.det_inferences.fetch_add(1, Ordering::Relaxed);
        h.det_detections.fetch_add(n as u64, Ordering::Relaxed);
        h.det_last_prep_us.store(prep_us, Ordering::Relaxed);
        h.det_last_infer_us.store(infer_us, Ordering::Relaxed);
        h.det_infer_us_total
            .fetch_add(infer_us as u64, Ordering::Relaxed);
    }

    /// The newest detection result (None before the first; retried while being written).
    pub fn detections(&self) -> Option<DetectionSet> {
        let b = &self.hdr().det;
        for _ in 0..100 {
            let s0 = b.seq.load(Ordering::Acquire);
            if s0 == 0 {
                return None;
            }
            if s0 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let n = (b.count.load(Ordering::Relaxed) as usize).min(MAX_DETECTIONS);
            let f = |v: u64| (f32::from_bits(v as u32), f32::from_bits((v >> 32) as u32));
            let detections = b.items[..n]
                .iter()
                .map(|slot| {
                    let a = slot[0].load(Ordering::Relaxed);
                    let (x0, y0) = f(slot[1].load(Ordering::Relaxed));
                    let (x1, y1) = f(slot[2].load(Ordering::Relaxed));
                    vr_proto::detection::Detection {
                        class: a as u16,
                        score: f32::from_bits((a >> 32) as u32),
                        bbox: [x0, y0, x1, y1],
                    }
                })
                .collect();
            let set = DetectionSet {
                frame_id: b.frame_id.load(Ordering::Relaxed),
                capture_ns: b.capture_ns.load(Ordering::Relaxed),
                published_ns: b.published_ns.load(Ordering::Relaxed),
                detections,
            };
            fence(Ordering::Acquire);
            if b.seq.load(Ordering::Relaxed) == s0 {
                return Some(set);
            }
        }
        None
    }

    /// Detect-stage counters.
    pub fn detect(&self) -> DetectCounters {
        let h = self.hdr();
        DetectCounters {
            inferences: h.det_inferences.load(Ordering::Relaxed),
            detections: h.det_detections.load(Ordering::Relaxed),
            last_prep_us: h.det_last_prep_us.load(Ordering::Relaxed),
            last_infer_us: h.det_last_infer_us.load(Ordering::Relaxed),
            infer_us_total: h.det_infer_us_total.load(Ordering::Relaxed),
        }
    }

    /// Stores the viewer page's figures (single writer: the web stage); `None` page
    /// keeps the last report.
    pub fn set_web(&self, w: &WebStats) {
        let b = &self.hdr().web;
        b.enabled.store(1, Ordering::Relaxed);
        b.viewers.store(w.viewers, Ordering::Relaxed);
        b.sent.store(w.sent, Ordering::Relaxed);
        b.skipped.store(w.skipped, Ordering::Relaxed);
        b.refused.store(w.refused, Ordering::Relaxed);
        if let Some(p) = &w.page {
            b.last.store(&PageStats {
                report_ns: p.report_ns.max(1),
                ..*p
            });
        }
        for (i, row) in b.rows.iter().enumerate() {
            let v = w.list.get(i);
            let s = row.seq.load(Ordering::Relaxed);
            // SYNC POINT W (seqlock): odd seq, Release fence, fields, even seq with
            // Release; pairs with the reader's Acquire load / Acquire fence in `web`.
            row.seq.store(s | 1, Ordering::Relaxed);
            fence(Ordering::Release);
            row.used.store(v.is_some() as u32, Ordering::Relaxed);
            if let Some(v) = v {
                let ip = match v.addr.ip() {
                    std::net::IpAddr::V4(a) => a.to_ipv6_mapped(),
                    std::net::IpAddr::V6(a) => a,
                };
                let bits = u128::from(ip);
                row.addr_hi.store((bits >> 64) as u64, Ordering::Relaxed);
                row.addr_lo.store(bits as u64, Ordering::Relaxed);
                row.port.store(v.addr.port() as u32, Ordering::Relaxed);
                match &v.report {
                    Some(p) => row.report.store(&PageStats {
                        report_ns: p.report_ns.max(1),
                        transport: v.transport,
                        ..*p
                    }),
                    None => row.report.store(&PageStats {
                        transport: v.transport,
                        report_ns: 0,
                        ..Default::default()
                    }),
                }
            }
            row.seq.store((s | 1) + 1, Ordering::Release);
        }
    }

    /// The viewer page's figures; `None` when vr-stream runs without `--web`.
    pub fn web(&self) -> Option<WebStats> {
        let b = &self.hdr().web;
        if b.enabled.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut list = vec![];
        for row in &b.rows {
            // A row being rewritten is read again (a few times), then skipped.
            for _ in 0..4 {
                // SYNC POINT R (seqlock): pairs with the Release store of seq in set_web.
                let s0 = row.seq.load(Ordering::Acquire);
                if s0 & 1 == 1 {
                    std::hint::spin_loop();
                    continue;
                }
                let used = row.used.load(Ordering::Relaxed) != 0;
                let bits = ((row.addr_hi.load(Ordering::Relaxed) as u128) << 64)
                    | row.addr_lo.load(Ordering::Relaxed) as u128;
                let v6 = std::net::Ipv6Addr::from(bits);
                let ip = v6
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4);
                let addr = std::net::SocketAddr::new(ip, row.port.load(Ordering::Relaxed) as u16);
                let transport = match row.report.transport.load(Ordering::Relaxed) {
                    1 => PageTransport::WebSocket,
                    2 => PageTransport::WebRtc,
                    _ => PageTransport::Unknown,
                };
                let report = row.report.load();
                fence(Ordering::Acquire);
                if row.seq.load(Ordering::Relaxed) == s0 {
                    if used {
                        list.push(ViewerStats {
                            addr,
                            transport,
                            report,
                        });
                    }
                    break;
                }
            }
        }
        Some(WebStats {
            viewers: b.viewers.load(Ordering::Relaxed),
            sent: b.sent.load(Ordering::Relaxed),
            skipped: b.skipped.load(Ordering::Relaxed),
            refused: b.refused.load(Ordering::Relaxed),
            page: b.last.load(),
            list,
        })
    }

    /// Appends a per-frame record (single writer: the network stage).
    pub fn push_record(&self, r: &FrameRecord) {
        let h = self.hdr();
        let n = h.records_written.load(Ordering::Relaxed);
        let slot = self.record(n as usize);
        let s = slot.seq.load(Ordering::Relaxed);
        // SYNC POINT W (seqlock): odd seq, Release fence, fields, even seq with Release;
        // pairs with the reader's Acquire load / Acquire fence in `record_at`.
        slot.seq.store(s | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (f, v) in slot.fields.iter().zip(r.to_array()) {
            f.store(v, Ordering::Relaxed);
        }
        slot.seq.store((s | 1) + 1, Ordering::Release);
        h.records_written.store(n + 1, Ordering::Release);
    }

    /// Records written so far (the next record's index).
    pub fn records_written(&self) -> u64 {
        self.hdr().records_written.load(Ordering::Acquire)
    }

    /// Record number `n` if it is still in the ring and was not being rewritten.
    pub fn record_at(&self, n: u64) -> Option<FrameRecord> {
        let written = self.records_written();
        if n >= written || written - n > RECORDS as u64 {
            return None;
        }
        let slot = self.record(n as usize);
        for _ in 0..4 {
            let s1 = slot.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut a = [0u64; FrameRecord::FIELDS];
            for (v, f) in a.iter_mut().zip(&slot.fields) {
                *v = f.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) == s1 {
                // The slot may have been reused for a newer record meanwhile.
                let still = self.records_written() - n <= RECORDS as u64;
                return still.then(|| FrameRecord::from_array(a));
            }
        }
        None
    }
}

impl StageSlot {
    /// Current state.
    pub fn state(&self) -> StageState {
        StageState::from_u32(self.state.load(Ordering::Acquire))
    }

    /// Sets the state (Release: everything the stage wrote before is visible with it).
    pub fn set_state(&self, s: StageState) {
        self.state.store(s as u32, Ordering::Release);
    }

    /// Records a failure message and sets [`StageState::Failed`]. The first failure wins
    /// (what follows from it is not the cause), but it replaces a reason left by
    /// [`StageSlot::retrying`]: that one is not why the stage failed.
    pub fn fail(&self, msg: &str) {
        if self.reason.load(Ordering::Acquire) != REASON_FAILED {
            self.error.write(msg.as_bytes());
            self.reason.store(REASON_FAILED, Ordering::Release);
        }
        self.set_state(StageState::Failed);
    }

    /// Records why the stage is [`StageState::Retrying`] (replacing any earlier reason).
    pub fn retrying(&self, msg: &str) {
        self.error.write(msg.as_bytes());
        self.reason.store(REASON_RETRYING, Ordering::Release);
        self.set_state(StageState::Retrying);
    }

    /// Like [`StageSlot::fail`], and marks the failure permanent (no restart helps).
    pub fn fail_permanent(&self, msg: &str) {
        self.permanent.store(1, Ordering::Release);
        self.fail(msg);
    }

    /// Whether the recorded failure is permanent.
    pub fn is_permanent(&self) -> bool {
        self.permanent.load(Ordering::Acquire) != 0
    }

    /// The failure or retry reason, if any (a consistent copy while the stage rewrites it).
    pub fn error(&self) -> Option<String> {
        if self.reason.load(Ordering::Acquire) == REASON_NONE {
            return None;
        }
        Some(self.error.read_text()).filter(|e| !e.is_empty())
    }

    /// Resets the slot for a new process (keeps the counters and the restart count).
    pub fn reset(&self) {
        self.permanent.store(0, Ordering::Release);
        self.reason.store(REASON_NONE, Ordering::Release);
        self.error.clear();
        self.heartbeat_ns.store(0, Ordering::Relaxed);
        self.set_state(StageState::Idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_in_slot_order_and_parse_by_name() {
        for (i, s) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i);
            assert_eq!(Stage::parse(s.name()), Some(s));
        }
        assert_eq!(Stage::parse("encoder"), None);
        let optional: Vec<Stage> = Stage::ALL.into_iter().filter(|s| s.optional()).collect();
        assert_eq!(optional, [Stage::Detect, Stage::Web]);
    }

    #[test]
    fn records_roundtrip_and_age_out() {
        let name = format!("vr-stream-test-stats-{}", std::process::id());
        let c = Stats::create(&name).unwrap();
        for i in 0..(RECORDS as u64 + 10) {
            c.push_record(&FrameRecord {
                frame_id: i,
                capture_ns: i * 10,
                ..Default::default()
            });
        }
        assert!(c.record_at(0).is_none());
        assert_eq!(c.detections(), None);
        let set = DetectionSet {
            frame_id: 7,
            capture_ns: 70,
            published_ns: 90,
            detections: vec![vr_proto::detection::Detection {
                class: 16,
                score: 0.5,
                bbox: [1.0, 2.5, 30.0, 40.25],
            }],
        };
        c.publish_detections(&set, 800, 15_000);
        assert_eq!(c.detections(), Some(set));
        assert_eq!(c.detect().inferences, 1);
        assert_eq!(c.detect().last_infer_us, 15_000);
        assert_eq!(
            c.record_at(RECORDS as u64 + 9).unwrap().frame_id,
            RECORDS as u64 + 9
        );
        assert_eq!(c.record_at(10).unwrap().capture_ns, 100);
        c.stage(Stage::Encode).fail("boom");
        assert_eq!(c.stage(Stage::Encode).error().as_deref(), Some("boom"));
        assert_eq!(c.stage(Stage::Encode).state(), StageState::Failed);
        // A retry reason is replaced by the failure that follows it; the first failure
        // stays; a reset clears it.
        let s2 = c.stage(Stage::Network);
        s2.retrying("camera gone; reopening");
        assert_eq!(s2.error().as_deref(), Some("camera gone; reopening"));
        s2.fail("camera open failed");
        s2.fail("broken pipe");
        assert_eq!(s2.error().as_deref(), Some("camera open failed"));
        s2.reset();
        assert_eq!(s2.error(), None);
        let info = StreamInfo {
            destination: "192.168.1.100:5004".into(),
            width: 1280,
            height: 720,
            fps: 60,
            bitrate_kbps: 8000,
            profile: "low".into(),
            target_ms: 20,
            supervisor_pid: 7,
            started_ns: 9,
        };
        c.set_info(&info);
        let r = Stats::open(&name).unwrap();
        assert_eq!(r.info(), info);
        c.add_encoded(100, true, 23);
        assert_eq!(
            r.encoded(),
            EncCounters {
                frames: 1,
                bytes: 100,
                idr: 1,
                last_bytes: 100,
                last_qp: 23
            }
        );
    }
}
