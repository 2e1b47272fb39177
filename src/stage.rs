//! The stage processes: camera, encode, network, and the optional detect and web stages.
//! Each is the `vr-stream` executable
//! re-invoked by the supervisor as `vr-stream stage NAME --instance I --geometry WxH@N/D`
//! with the merged configuration in the `VR_STREAM_CONFIG` environment variable.
//!
//! Every stage: opens the control segment and its rings, sets itself up (source, encoder,
//! socket), applies its realtime settings (pin, SCHED_FIFO, mlockall, prefault), writes what
//! is in force into its control slot, reports Ready, waits for the supervisor's go signal,
//! then loops until end of stream or a stop request. A failure is written into its slot
//! (the supervisor prints it) and the process exits 1.

mod error;
mod rtcp_session;
pub use error::StageError;

use crate::config::{Config, StageConfig};
use crate::encode::{EncoderParams, open_encoder};
use crate::latency::FrameRecord;
use crate::net::{SendStats, UdpSender};
use crate::rt::{self, MonotonicNs, monotonic_ns};
use crate::rtp::{PacketBuf, RtpParams};
use crate::shm::bitstream::{AuMeta, BitstreamQueue, FLAG_KEYFRAME, Next, Push};
use crate::shm::control::NetCounters;
use crate::shm::control::{Control, StageSlot, StageState};
use crate::shm::frame_ring::{self, FORMAT_I420, FrameMeta, FrameRing, RingGeometry, SPIN, Take};
use crate::source::{self, SourceFormat};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU64;
use std::time::{Duration, Instant};
use vr_proto::session::{
    AccessUnit, Batch, FecParams, Frame, HeaderResend, PACING_SLACK_NS, SenderSession,
    SessionConfig, next_batch,
};
pub use vr_shm::names::{segment_names, stats_name, web_queue_name};

/// Environment variable carrying the merged configuration (TOML) to the stages.
pub const CONFIG_ENV: &str = "VR_STREAM_CONFIG";
/// Environment variable set by the supervisor when it has already warned about missing
/// realtime privileges (so stages do not repeat the warning).
pub const RT_WARNED_ENV: &str = "VR_STREAM_RT_WARNED";

/// Which stage: the stats segment's [`Stage`](crate::shm::control::Stage) (its slot, its
/// name, whether the stream can go on without it, `parse`); what running it takes is
/// [`StagePlan`].
pub use crate::shm::control::Stage as StageKind;

/// Every stage, in start order (consumers before producers).
pub const START_ORDER: [StageKind; 5] = [
    StageKind::Network,
    StageKind::Web,
    StageKind::Encode,
    StageKind::Detect,
    StageKind::Camera,
];

/// The stages `cfg` runs, in start order (the detect stage only with `detect.enabled`, the
/// web stage only with `web.enabled`).
pub fn active(cfg: &Config) -> Vec<StageKind> {
    START_ORDER
        .into_iter()
        .filter(|k| match k {
            StageKind::Detect => cfg.detect.enabled,
            StageKind::Web => cfg.web.enabled,
            _ => true,
        })
        .collect()
}

/// What running a stage takes: what it adds to the stream, and where it runs.
pub trait StagePlan {
    /// What an optional stage adds to the stream, for "streaming without …" messages.
    fn feature(self) -> &'static str;

    /// Where it runs, from the configuration, mapped onto the CPUs of this machine: the
    /// camera, network and detect stages on one CPU each, the encode stage on the set
    /// `stages.encode.cpus`, the web stage on `stages.web.cpus` at priority 0
    /// (SCHED_OTHER).
    fn placement(self, cfg: &Config) -> Placement;
}

impl StagePlan for StageKind {
    fn feature(self) -> &'static str {
        match self {
            StageKind::Web => "the viewer page",
            StageKind::Detect => "detection",
            _ => "nothing",
        }
    }

    fn placement(self, cfg: &Config) -> Placement {
        let one = |sc: StageConfig| {
            let (c, changed) = rt::map_cpu(sc.cpu);
            Placement {
                cpus: vec![c],
                priority: sc.priority,
                configured: sc.cpu.to_string(),
                mapped: changed,
            }
        };
        match self {
            StageKind::Camera => one(cfg.stages.camera),
            StageKind::Network => one(cfg.stages.network),
            StageKind::Detect => one(cfg.stages.detect),
            StageKind::Encode => {
                let (mut cpus, mapped) = rt::map_cpus(&cfg.stages.encode.cpu_list());
                // On a machine with fewer CPUs than the layout, the mapped set can land on the
                // housekeeping CPUs (the web stage's, the browser's, the OS's): SCHED_FIFO
                // slice threads there starve them. Leave those out while any CPU remains.
                if mapped {
                    let house = web_cpus(cfg);
                    if cpus.iter().any(|c| !house.contains(c)) {
                        cpus.retain(|c| !house.contains(c));
                    }
                }
                Placement {
                    cpus,
                    priority: cfg.stages.encode.priority,
                    configured: cfg.stages.encode.cpus.clone(),
                    mapped,
                }
            }
            StageKind::Web => Placement {
                cpus: web_cpus(cfg),
                priority: 0,
                configured: cfg.stages.web.cpus.clone(),
                mapped: false,
            },
        }
    }
}

/// Where a stage runs ([`StageKind::placement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// CPUs of this machine it may run on (sorted; one for a pinned stage).
    pub cpus: Vec<usize>,
    /// SCHED_FIFO priority, 1..=99; 0 = SCHED_OTHER.
    pub priority: u8,
    /// The CPU or CPU list as configured.
    pub configured: String,
    /// Whether mapping onto this machine's CPUs changed it.
    pub mapped: bool,
}

/// The CPUs `setup` isolates for this configuration (isolcpus, nohz_full, rcu_nocbs), as
/// configured (not mapped): the camera's, the network's, the encode stage's set, and the
/// detector's when it is SCHED_FIFO (priority > 0).
pub fn isolated_cpus(cfg: &Config) -> vr_setup::cpus::CpuList {
    let s = &cfg.stages;
    let mut v = vec![s.camera.cpu, s.network.cpu];
    v.extend(s.encode.cpu_list());
    if s.detect.priority > 0 {
        v.push(s.detect.cpu);
    }
    vr_setup::cpus::CpuList::from_cpus(v)
}

/// The `[encoder]` section with `threads = 0` resolved: one x264 slice thread per CPU of
/// the encode stage's set on this machine ([`StageKind::placement`]).
pub fn encoder_config(cfg: &Config) -> crate::config::EncoderConfig {
    let mut e = cfg.encoder.clone();
    if e.threads == 0 {
        e.threads = StageKind::Encode.placement(cfg).cpus.len().max(1) as u32;
    }
    e
}

/// The CPUs of `stages.web` (validated with the configuration).
pub fn web_cpus(cfg: &Config) -> Vec<usize> {
    vr_setup::cpus::CpuList::parse(&cfg.stages.web.cpus)
        .map(|l| l.iter().map(|c| c as usize).collect())
        .unwrap_or_default()
}

/// Web queue capacity, bytes: about half a second of stream at `bitrate_kbps` (with room
/// for IDRs), at least 2 MiB. The web stage skips to the newest frame after a stall, so
/// more would only be memory.
pub fn web_queue_capacity(bitrate_kbps: u32) -> usize {
    (bitrate_kbps as usize * 1000 / 8).max(2 << 20)
}

/// Bitstream queue capacity for a bitrate: one second of stream plus room for IDRs,
/// at least 4 MiB (bytes).
pub fn queue_capacity(bitrate_kbps: u32) -> usize {
    ((bitrate_kbps as usize * 1000 / 8) * 2).max(4 << 20)
}

/// Ring geometry for a source format: consumer 0 is the encoder, consumer 1 the detect
/// stage when `detect` is on.
pub fn ring_geometry(f: &SourceFormat, detect: bool) -> RingGeometry {
    RingGeometry {
        format: *f,
        consumers: 1 + detect as u32,
    }
}

/// Environment variable with the supervisor's PID, so a stage can tell whether its parent
/// died before it set its parent-death signal.
pub const SUPERVISOR_PID_ENV: &str = "VR_STREAM_SUPERVISOR_PID";

/// Asks for SIGTERM when the supervisor dies. False if it is already gone (the stage was
/// reparented before the prctl call, so the signal would never come).
fn set_parent_death_signal() -> bool {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; no memory is passed.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let expected = std::env::var(SUPERVISOR_PID_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    expected.is_none_or(|p| p == parent)
}

/// Applies the stage's realtime settings and records what is in force in its slot (the
/// web stage: SCHED_OTHER at its nice value on its CPUs, never locked: [`rt::apply_background`]).
/// Errors (only with `rt.strict`): what could not be had.
pub(crate) fn go_realtime(
    kind: StageKind,
    cfg: &Config,
    slot: &StageSlot,
) -> Result<(), StageError> {
    let short = if kind == StageKind::Web {
        let short = rt::apply_background(&web_cpus(cfg), cfg.stages.web.nice);
        let st = rt::read_state(0);
        record_state(slot, &st);
        // Not a realtime stage: what it could not have is worth a note, never a refusal.
        for s in short {
            eprintln!("vr-stream[web]: note: {}", s.0);
        }
        return Ok(());
    } else {
        let p = kind.placement(cfg);
        rt::apply(&rt::RtRequest {
            cpus: p.cpus,
            priority: p.priority,
            mlock: cfg.rt.mlock,
        })
    };
    let st = rt::read_state(0);
    record_state(slot, &st);
    if let Some(msg) = rt::describe(&short) {
        if cfg.rt.strict {
            return Err(StageError::Realtime(msg));
        }
        if std::env::var_os(RT_WARNED_ENV).is_none() {
            eprintln!("vr-stream[{}]: warning: {msg}", kind.name());
        }
    }
    Ok(())
}

/// Writes what is in force (CPU if pinned to one, policy, priority, VmLck) into `slot`.
fn record_state(slot: &StageSlot, st: &rt::RtState) {
    use std::sync::atomic::Ordering::Relaxed;
    slot.cpu.store(
        if st.cpus.len() == 1 {
            st.cpus[0] as i32
        } else {
            -1
        },
        Relaxed,
    );
    slot.policy.store(st.policy as u32, Relaxed);
    slot.priority.store(st.priority as u32, Relaxed);
    slot.vmlck_kb.store(st.vmlck_kb, Relaxed);
}

/// Waits for the supervisor's go signal. False if a stop came first.
pub(crate) fn wait_go(ctl: &Control) -> bool {
    while !ctl.go() {
        if ctl.stop_requested() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    true
}

pub(crate) fn beat(slot: &StageSlot) {
    slot.heartbeat_ns
        .store(monotonic_ns(), std::sync::atomic::Ordering::Relaxed);
}

/// One wait of at most 100 ms for the next frame of a stage that consumes a frame ring,
/// beating the heartbeat when nothing came ([`Take::Timeout`]); [`Take::Eos`] too when a
/// stop was requested.
fn take_or_beat<'a>(
    consumer: &'a mut frame_ring::Consumer<'_>,
    ctl: &Control,
    slot: &StageSlot,
) -> Take<'a> {
    if ctl.stop_requested() {
        return Take::Eos;
    }
    let t = consumer.take(Instant::now() + Duration::from_millis(100));
    if matches!(t, Take::Timeout) {
        beat(slot);
    }
    t
}

/// Runs stage `kind` of instance `inst` to completion. Returns the process exit code.
pub fn run(kind: StageKind, inst: &str, geometry: &str) -> i32 {
    if !set_parent_death_signal() {
        eprintln!(
            "vr-stream[{}]: the supervisor is gone; exiting",
            kind.name()
        );
        return 1;
    }
    let (ctl_name, ring_name, bits_name) = segment_names(inst);
    let ctl = match Control::open(&ctl_name, &stats_name(inst)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vr-stream[{}]: {e}", kind.name());
            return 1;
        }
    };
    let slot = ctl.stage(kind);
    slot.pid
        .store(std::process::id(), std::sync::atomic::Ordering::Relaxed);
    slot.set_state(StageState::Starting);
    beat(slot);
    let result = (|| -> Result<(), StageError> {
        let text = std::env::var(CONFIG_ENV)
            .map_err(|_| StageError::Invocation(format!("{CONFIG_ENV} not set")))?;
        let cfg = Config::from_toml(&text)?;
        let fmt = crate::source::parse_geometry(geometry)
            .ok_or_else(|| StageError::Invocation(format!("bad --geometry {geometry:?}")))?;
        let ring = FrameRing::open(&ring_name, ring_geometry(&fmt, cfg.detect.enabled))?;
        let queue = BitstreamQueue::open(&bits_name, queue_capacity(cfg.encoder.bitrate_kbps))?;
        let web_queue = || {
            BitstreamQueue::open(
                &web_queue_name(inst),
                web_queue_capacity(cfg.encoder.bitrate_kbps),
            )
        };
        let env = StageEnv {
            cfg: &cfg,
            fmt,
            ctl: &ctl,
            slot,
        };
        match kind {
            StageKind::Camera => camera(env, &ring),
            StageKind::Encode => encode(
                env,
                &ring,
                &queue,
                cfg.web.enabled.then(web_queue).transpose()?.as_ref(),
            ),
            StageKind::Network => network(env, &queue),
            StageKind::Detect => detect(env, &ring),
            StageKind::Web => crate::web::stage::run(env, &web_queue()?),
        }
    })();
    match result {
        Ok(()) => {
            slot.set_state(StageState::Done);
            0
        }
        Err(e) if e.is_permanent() => {
            slot.fail_permanent(&e.to_string());
            1
        }
        Err(e) => {
            slot.fail(&e.to_string());
            1
        }
    }
}

/// What every stage function is given: the configuration, the stream's frame format
/// (the supervisor's probe of the source), the control segment and the stage's own slot
/// in it.
#[derive(Clone, Copy)]
pub(crate) struct StageEnv<'a> {
    /// The run's configuration (the supervisor's, passed in `VR_STREAM_CONFIG`).
    pub cfg: &'a Config,
    /// Frame size and rate of the stream (from `--geometry`).
    pub fmt: SourceFormat,
    /// The control segment (stop, go, IDR requests, the stats segment).
    pub ctl: &'a Control,
    /// This stage's slot in it (state, heartbeat, counters, error).
    pub slot: &'a StageSlot,
}

impl<'a> StageEnv<'a> {
    /// (config, format, control segment, slot), for a stage function's first line.
    pub fn parts(self) -> (&'a Config, SourceFormat, &'a Control, &'a StageSlot) {
        (self.cfg, self.fmt, self.ctl, self.slot)
    }
}

enum CamStop {
    Eof,
    Err(source::SourceError),
}

fn camera(env: StageEnv<'_>, ring: &FrameRing) -> Result<(), StageError> {
    let (cfg, fmt, ctl, slot) = env.parts();
    let src_err = |src: &dyn source::FrameSource, error| StageError::Source {
        permanent: src.is_permanent(&error),
        error,
    };
    let mut src = source::open(&cfg.source).map_err(|error| StageError::Source {
        error,
        permanent: false,
    })?;
    check_size(cfg, fmt, src.as_ref())?;
    go_realtime(StageKind::Camera, cfg, slot)?;
    let mut producer = ring.producer()?;
    if let Some(last) = producer.last_published() {
        // A restart: go on after the last frame the previous camera stage published.
        src.resume_at(last.frame_id + 1)
            .map_err(|e| src_err(src.as_ref(), e))?;
    }
    ring.prefault();
    slot.set_state(StageState::Ready);
    if !wait_go(ctl) {
        return Ok(());
    }
    let limit = cfg.source.frames;
    let mut n = producer.last_published().map_or(0, |m| m.frame_id + 1);
    let (w, h) = (fmt.width, fmt.height);
    loop {
        if ctl.stop_requested() || (limit > 0 && n >= limit) {
            break;
        }
        let r = producer.produce(|buf| match src.next_frame(buf) {
            Ok(Some(c)) => Ok(FrameMeta {
                pos: 0,
                frame_id: c.frame_id,
                capture_ns: c.capture_ns,
                published_ns: monotonic_ns(),
                pair_skew_ns: c.pair_skew_ns,
                width: w,
                height: h,
                stride: w,
                format: FORMAT_I420,
                len: buf.len() as u64,
            }),
            Ok(None) => Err(CamStop::Eof),
            Err(e) => Err(CamStop::Err(e)),
        });
        match r {
            Ok(_) => {
                n += 1;
                slot.frames_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                beat(slot);
            }
            Err(CamStop::Eof) => break,
            Err(CamStop::Err(e)) if src.is_permanent(&e) => {
                ring.set_eos();
                return Err(src_err(src.as_ref(), e));
            }
            Err(CamStop::Err(e)) => {
                // The camera went away (unplugged, driver reset): reopen it with backoff,
                // beating all the while, and show it in the slot. The other stages wait
                // on the ring as for any late frame.
                slot.retrying(&format!("{e}; reopening"));
                // Close the old device first (a V4L2 device open for streaming is busy).
                drop(std::mem::replace(&mut src, Box::new(Gone(fmt))));
                match reopen(cfg, fmt, ctl, slot)? {
                    Some(s) => {
                        src = s;
                        slot.retries
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        slot.set_state(StageState::Ready);
                    }
                    None => break,
                }
            }
        }
    }
    ring.set_eos();
    Ok(())
}

/// The source's frame size must be the stream's (the supervisor probed it at the start).
fn check_size(
    cfg: &Config,
    fmt: SourceFormat,
    src: &dyn source::FrameSource,
) -> Result<(), StageError> {
    let f = src.format();
    if (f.width, f.height) == (fmt.width, fmt.height) {
        return Ok(());
    }
    Err(StageError::SizeChanged {
        uri: cfg.source.uri.clone(),
        got_w: f.width,
        got_h: f.height,
        w: fmt.width,
        h: fmt.height,
    })
}

/// Stands in for a camera that went away while it is being reopened.
struct Gone(SourceFormat);

impl source::FrameSource for Gone {
    fn format(&self) -> SourceFormat {
        self.0
    }

    fn next_frame(
        &mut self,
        _dst: &mut [u8],
    ) -> Result<Option<source::Captured>, source::SourceError> {
        Err(source::SourceError::Device {
            device: "camera".into(),
            message: "closed while reopening".into(),
        })
    }
}

/// Reopens the camera until it is back (Some) or a stop is requested (None), waiting
/// 100 ms doubling to 2 s between attempts. Error: it came back with another frame size.
fn reopen(
    cfg: &Config,
    fmt: SourceFormat,
    ctl: &Control,
    slot: &StageSlot,
) -> Result<Option<Box<dyn source::FrameSource>>, StageError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if ctl.stop_requested() {
                return Ok(None);
            }
            beat(slot);
            std::thread::sleep(Duration::from_millis(20));
        }
        match source::open(&cfg.source) {
            Ok(s) => {
                check_size(cfg, fmt, s.as_ref())?;
                return Ok(Some(s));
            }
            Err(e) => {
                slot.retrying(&format!(
                    "{e}; next attempt in {} ms",
                    (backoff * 2).min(Duration::from_secs(2)).as_millis()
                ));
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The encode stage. `web`: the web stage's queue, which gets a copy of each access unit
/// through a lossy writer (a full queue drops the copy, never delays this stage, and asks
/// for no IDR: the web stage asks itself when a viewer needs one).
fn encode(
    env: StageEnv<'_>,
    ring: &FrameRing,
    queue: &BitstreamQueue,
    web: Option<&BitstreamQueue>,
) -> Result<(), StageError> {
    let (cfg, fmt, ctl, slot) = env.parts();
    // Realtime first: x264 creates its slice threads when it opens, and they inherit the
    // CPU set and SCHED_FIFO policy of this thread (and are locked with MCL_FUTURE).
    go_realtime(StageKind::Encode, cfg, slot)?;
    let (mut enc, notes) = open_encoder(&EncoderParams::from_config(&encoder_config(cfg), fmt))?;
    for n in notes {
        eprintln!("vr-stream[encode]: {n}");
    }
    if cfg.encoder.backend != "x264" {
        eprintln!("vr-stream[encode]: encoder {}", enc.describe());
    }
    // Locked memory now includes x264's buffers.
    record_state(slot, &rt::read_state(0));
    let headers = enc.headers()?;
    ctl.set_headers(&headers);
    let mut consumer = ring.consumer(0)?;
    consumer.set_spin_window(Duration::from_micros(cfg.rt.spin_window_us as u64));
    let mut writer = queue.writer();
    queue.prefault();
    let mut web_writer = web.map(|q| {
        q.prefault();
        q.lossy_writer()
    });
    slot.set_state(StageState::Ready);
    if !wait_go(ctl) {
        return Ok(());
    }
    let mut first = true;
    // --yolo-overlay: the newest detections, drawn into a private copy of each frame.
    let overlay = cfg.detect.enabled && cfg.detect.overlay;
    let mut scratch = if overlay {
        vec![0u8; fmt.frame_bytes()]
    } else {
        vec![]
    };
    let (mut det_runs, mut boxes) = (0u64, vec![]);
    loop {
        if let Some(kbps) = ctl.take_bitrate_request() {
            match enc.set_bitrate(kbps) {
                Ok(()) => ctl.stats().set_bitrate(kbps),
                Err(e) => eprintln!("vr-stream[encode]: {e}"),
            }
        }
        let frame = match take_or_beat(&mut consumer, ctl, slot) {
            Take::Frame(f) => f,
            Take::Timeout => continue,
            Take::Eos => break,
        };
        let start = monotonic_ns();
        writer.set_busy(start);
        let force_idr = std::mem::take(&mut first)
            | queue.take_idr_request()
            | web.is_some_and(|q| q.take_idr_request());
        let input: &[u8] = if overlay {
            let runs = ctl.stats().detect().inferences;
            if runs != det_runs
                && let Some(set) = ctl.stats().detections()
            {
                det_runs = runs;
                boxes = set.detections;
            }
            let n = scratch.len();
            scratch.copy_from_slice(&frame.data[..n]);
            crate::detect::overlay::draw_i420(&mut scratch, fmt.width, fmt.height, &boxes);
            &scratch
        } else {
            frame.data
        };
        let out = enc.encode(input, force_idr)?;
        let end = monotonic_ns();
        let mut meta = AuMeta {
            frame_id: frame.meta.frame_id,
            capture_ns: frame.meta.capture_ns,
            published_ns: frame.meta.published_ns,
            encode_start_ns: start,
            encode_end_ns: end,
            flags: if out.keyframe { FLAG_KEYFRAME } else { 0 },
            ..AuMeta::default()
        };
        meta.set_pair_skew(frame.meta.pair_skew_ns);
        let (bytes, key, qp) = (out.data.len() as u64, out.keyframe, out.qp);
        let pushed = writer.push(meta, out.data);
        if let Some(w) = web_writer.as_mut() {
            w.push(meta, out.data);
        }
        drop(frame); // release the ring slot only now: x264 read it in place
        use std::sync::atomic::Ordering::Relaxed;
        slot.frames_in.fetch_add(1, Relaxed);
        slot.drops.store(consumer.drops(), Relaxed);
        if pushed == Push::Queued {
            slot.frames_out.fetch_add(1, Relaxed);
        }
        ctl.stats().add_encoded(bytes, key, qp);
        beat(slot);
    }
    queue.set_eos();
    if let Some(q) = web {
        q.set_eos();
    }
    Ok(())
}

/// The detect stage: the newest frame whenever the detector is free (consumer 1 of the
/// frame ring, latest-wins: frames it is too slow for are skipped, never waited for), at
/// most every `detect.every_nth` frame; letterbox, then the ring slot is released, then
/// inference, decode, NMS; the result and its timing go to the stats segment.
fn detect(env: StageEnv<'_>, ring: &FrameRing) -> Result<(), StageError> {
    let (cfg, fmt, ctl, slot) = env.parts();
    // Onto the detector's CPUs at background priority before ONNX Runtime starts any
    // thread: it starts one when it loads and opens the session, and a thread keeps the
    // CPU mask and nice value of the thread that created it (seen: an ONNX Runtime thread
    // allowed on CPUs 0-1 at nice 0 next to the detector pinned to 0, free to run on the
    // realtime stages' CPU). go_realtime below then sets the stage's own thread.
    let early = rt::apply_background(&StageKind::Detect.placement(cfg).cpus, rt::BACKGROUND_NICE);
    if let Some(s) = early.first() {
        eprintln!("vr-stream[detect]: note: {}", s.0);
    }
    let mut det = crate::detect::assets::open(&cfg.detect)?;
    go_realtime(StageKind::Detect, cfg, slot)?;
    let mut consumer = ring.consumer(1)?;
    slot.set_state(StageState::Ready);
    if !wait_go(ctl) {
        return Ok(());
    }
    let every = cfg.detect.every_nth.max(1) as u64;
    let mut last_id: Option<u64> = None;
    loop {
        let frame = match take_or_beat(&mut consumer, ctl, slot) {
            Take::Frame(f) => f,
            Take::Timeout => continue,
            Take::Eos => break,
        };
        let (id, capture_ns) = (frame.meta.frame_id, frame.meta.capture_ns);
        if last_id.is_some_and(|l| id < l + every) {
            continue;
        }
        last_id = Some(id);
        let t0 = monotonic_ns();
        let lb = det.prepare_i420(frame.data, fmt.width, fmt.height)?;
        drop(frame);
        let t1 = monotonic_ns();
        let dets = det.infer(lb)?;
        let t2 = monotonic_ns();
        let set = crate::shm::stats::DetectionSet {
            frame_id: id,
            capture_ns,
            published_ns: t2,
            detections: dets,
        };
        ctl.stats()
            .publish_detections(&set, ((t1 - t0) / 1000) as u32, ((t2 - t1) / 1000) as u32);
        use std::sync::atomic::Ordering::Relaxed;
        slot.frames_in.fetch_add(1, Relaxed);
        slot.frames_out.fetch_add(1, Relaxed);
        slot.drops.store(consumer.drops(), Relaxed);
        beat(slot);
    }
    Ok(())
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into our buffer.
    let r = unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, b.len(), 0) };
    if r != 4 {
        return (monotonic_ns() as u32) ^ std::process::id().rotate_left(16);
    }
    u32::from_ne_bytes(b)
}

/// Longest the network stage waits for an access unit before reading RTCP again.
const RTCP_POLL: Duration = Duration::from_millis(3);

/// Where the network stage's media packets go: UDP (sendmmsg, optionally paced) or one
/// RFC 4571 TCP connection.
enum MediaOut {
    Udp(UdpSender),
    Tcp(crate::net::TcpSender),
}

/// The network stage's sockets: media to `stream.ip`:`stream.port`, FEC to port + 2 and
/// RTCP with port + 1, and the SSRC they speak for.
struct NetworkIo {
    /// The receiver (`stream.ip`).
    ip: IpAddr,
    /// Its RTP port.
    dest: SocketAddr,
    out: MediaOut,
    /// `None`: no FEC (stream.fec_percent 0, or RTP over TCP).
    fec_tx: Option<UdpSender>,
    rtcp: rtcp_session::SenderRtcp,
    ssrc: u32,
    /// Where the previous network stage stopped ([`Control::rtp_state`]), if this one is
    /// a restart: the session continues from it.
    saved: Option<vr_proto::session::RtpState>,
}

impl NetworkIo {
    /// Opens the sockets. A restarted network stage continues the stream the previous
    /// one was sending ([`Control::rtp_state`]): same SSRC.
    ///
    /// Errors: [`StageError::Address`] for a `stream.ip` that is not an IP address,
    /// [`StageError::Socket`] naming the socket that cannot be made.
    fn open(cfg: &Config, ctl: &Control) -> Result<NetworkIo, StageError> {
        let s = &cfg.stream;
        let ip: IpAddr =
            s.ip.parse()
                .map_err(|_| StageError::Address(s.ip.clone()))?;
        let socket_err = |what: String, dest: SocketAddr| {
            move |error: std::io::Error| StageError::Socket { what, dest, error }
        };
        let dest = SocketAddr::new(ip, s.port);
        let out = if s.tcp {
            // About 100 ms of the bitrate in the socket at most: more is latency, not safety.
            let sndbuf = (cfg.encoder.bitrate_kbps as usize * 1000 / 8 / 10).max(64 << 10);
            MediaOut::Tcp(crate::net::TcpSender::new(dest, s.dscp, sndbuf))
        } else {
            MediaOut::Udp(
                UdpSender::new(dest, s.dscp, s.sendmmsg_batch as usize)
                    .map_err(socket_err("UDP socket".into(), dest))?,
            )
        };
        let saved = ctl.rtp_state();
        let ssrc = saved
            .map(|r| r.ssrc)
            .unwrap_or_else(|| if s.ssrc != 0 { s.ssrc } else { random_u32() });
        // FEC to port + 2 from its own socket: its errors (nobody listening there, e.g.
        // ffmpeg) never count against the stream. Not over TCP: TCP does not lose packets.
        let fec_dest = SocketAddr::new(ip, s.port.saturating_add(2));
        let fec_tx = if s.fec_percent > 0 && !s.tcp {
            Some(
                UdpSender::new(fec_dest, s.dscp, s.sendmmsg_batch as usize)
                    .map_err(socket_err("FEC socket".into(), fec_dest))?,
            )
        } else {
            None
        };
        let rtcp_dest = SocketAddr::new(ip, s.port + 1);
        let rtcp = rtcp_session::SenderRtcp::new(rtcp_dest, s.dscp, s.rtcp_local_port, ssrc)
            .map_err(socket_err(
                format!("RTCP socket (local port {})", s.rtcp_local_port),
                rtcp_dest,
            ))?;
        Ok(NetworkIo {
            ip,
            dest,
            out,
            fec_tx,
            rtcp,
            ssrc,
            saved,
        })
    }

    /// What the session is configured with: `[stream]`, `[encoder]` and `[abr]`, the
    /// state a restarted stage continues from, fresh random values otherwise, and the
    /// SPS/PPS the encoder published (`ctl`).
    fn session_config(&self, cfg: &Config, fmt: &SourceFormat, ctl: &Control) -> SessionConfig {
        let s = &cfg.stream;
        let saved = self.saved;
        // With intra refresh there is no IDR after the first frame, so nothing carries the
        // SPS/PPS in band: the session puts them in front of an access unit once a second
        // (a receiver that joins late, or a decoder that ignores sprop-parameter-sets, can
        // then start). The encoder has written them by now.
        let headers = ctl.headers().unwrap_or_default();
        let once_a_second = NonZeroU64::new(fmt.fps_num.div_ceil(fmt.fps_den.max(1)) as u64);
        let resend_headers = once_a_second
            .filter(|_| cfg.encoder.intra_refresh && !headers.is_empty())
            .map(|every| HeaderResend {
                sps_pps: headers,
                every,
            });
        SessionConfig {
            rtp: RtpParams {
                ssrc: self.ssrc,
                payload_type: s.payload_type,
                payload_size: s.payload_size as usize,
                capture_time_ext_id: Some(s.capture_time_ext_id),
            },
            first_seq: saved.map_or_else(|| random_u32() as u16, |r| r.next_seq),
            ts_offset: saved.map(|r| r.ts_offset).unwrap_or_else(random_u32),
            base: saved.map(|r| r.base),
            fec: self.fec_tx.is_some().then(|| FecParams {
                percent: s.fec_percent,
                payload_type: s.fec_payload_type,
                first_seq: random_u32() as u16,
            }),
            burst_bytes: s.burst_bytes as u64,
            pacing_kbps: s.pacing_kbps,
            frame_interval_ns: fmt.frame_interval_ns(),
            resend_headers,
            abr: cfg
                .abr
                .enabled
                .then(|| cfg.abr.params(cfg.encoder.bitrate_kbps)),
            bitrate_kbps: cfg.encoder.bitrate_kbps,
            receiver: self.ip,
        }
    }

    /// Sends the media packets of `frame` ([`SenderSession::media`]), paced when it has a
    /// pacer; `first_sent`: now. Over TCP a frame is dropped whole when the connection is
    /// congested, and a fresh connection asks for an IDR (`queue`). Pacing and dropped
    /// frames are counted in `net`.
    fn send_media(
        &mut self,
        session: &SenderSession,
        frame: &Frame,
        first_sent: MonotonicNs,
        queue: &BitstreamQueue,
        net: &mut NetCounters,
    ) -> SendStats {
        let pkts = session.media();
        match &mut self.out {
            MediaOut::Udp(tx) => match &frame.pacer {
                None => tx.send(pkts),
                Some(pacer) => {
                    let st = send_paced(tx, pkts, pacer, first_sent);
                    net.paced_frames = 1;
                    net.paced_ns = monotonic_ns() - first_sent.0;
                    st
                }
            },
            MediaOut::Tcp(t) => match t.send_frame(pkts, first_sent.0) {
                crate::net::TcpFrame::Sent { fresh } => {
                    if fresh {
                        eprintln!("vr-stream[network]: TCP connected to {}", self.dest);
                        queue.request_idr();
                    }
                    SendStats {
                        packets: frame.packets as u64,
                        bytes: pkts.bytes() as u64,
                        batches: 1,
                        ..Default::default()
                    }
                }
                crate::net::TcpFrame::Dropped => {
                    // The receiver's picture is broken from here: the next frame that
                    // gets through should be an IDR.
                    net.dropped_frames = 1;
                    queue.request_idr();
                    SendStats::default()
                }
            },
        }
    }

    /// Makes and sends the FEC packets of the frame just sent (after its media: the
    /// Reed-Solomon encoding is not on the media's latency path), counted in `net`.
    fn send_fec(&mut self, session: &mut SenderSession, frame_id: u64, net: &mut NetCounters) {
        let Some(ftx) = self.fec_tx.as_mut() else {
            return;
        };
        match session.protect_last() {
            Ok(_) => net.fec_packets = ftx.send(session.fec()).packets,
            Err(e) => eprintln!("vr-stream[network]: frame {frame_id}: FEC: {e}"),
        }
    }
}

/// Sends the detect stage's newest result to the receiver (RTCP APP "VRDT"), once per
/// inference: `sent_runs` is the inference count last sent.
fn send_detections(
    rtcp: &mut rtcp_session::SenderRtcp,
    session: &SenderSession,
    ctl: &Control,
    fmt: &SourceFormat,
    sent_runs: &mut u64,
) {
    let runs = ctl.stats().detect().inferences;
    if runs != *sent_runs
        && let Some(set) = ctl.stats().detections()
        && let Some(ts) = session.rtp_timestamp(MonotonicNs(set.capture_ns))
    {
        *sent_runs = runs;
        let data = crate::detect::wire::encode(ts, fmt.width, fmt.height, &set.detections);
        rtcp.send_app(
            crate::detect::wire::APP_SUBTYPE,
            crate::detect::wire::APP_NAME,
            &data,
        );
    }
}

fn network(env: StageEnv<'_>, queue: &BitstreamQueue) -> Result<(), StageError> {
    let (cfg, fmt, ctl, slot) = env.parts();
    let mut io = NetworkIo::open(cfg, ctl)?;
    go_realtime(StageKind::Network, cfg, slot)?;
    let mut reader = queue.reader();
    reader.set_spin_window(
        Duration::from_nanos(fmt.frame_interval_ns()),
        Duration::from_micros(cfg.rt.spin_window_us as u64),
    );
    slot.set_state(StageState::Ready);
    if !wait_go(ctl) {
        return Ok(());
    }
    // What the stage decides is the session's (sans-IO, unit-tested in vr-proto): the
    // packets, their FEC and pacing, which feedback to obey, SR timing, the bitrate (the
    // lower of the rate controller's target and the web stage's, whose WebRTC peers each
    // run their own controller: one encoder feeds every output).
    let mut session = SenderSession::new(io.session_config(cfg, &fmt, ctl));
    let mut det_runs_sent = 0u64;
    loop {
        if ctl.stop_requested() {
            break;
        }
        // Wake at least every RTCP_POLL while waiting: a PLI read then is an IDR for the
        // frame being encoded next, not the one after it.
        let au = match reader.next(Instant::now() + RTCP_POLL, SPIN) {
            Next::Au(a) => a,
            Next::Timeout => {
                let changes = io.rtcp.tick(rt::monotonic(), &mut session, ctl, queue);
                ctl.stats().add_net(&NetCounters {
                    abr_changes: changes,
                    ..Default::default()
                });
                if let MediaOut::Tcp(t) = &mut io.out {
                    t.flush();
                }
                beat(slot);
                continue;
            }
            Next::Eos => break,
        };
        let m = au.meta;
        let au_bytes = au.data.len() as u64;
        // abs-capture-time: the capture instant on the wall clock, from its age now.
        let capture = MonotonicNs(m.capture_ns);
        let capture_wall = rt::clock_pair().wall(capture);
        let frame = match session.on_access_unit(AccessUnit {
            data: au.data,
            capture,
            capture_ntp: capture_wall.to_ntp(),
            keyframe: m.flags & FLAG_KEYFRAME != 0,
        }) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("vr-stream[network]: frame {}: {e}", m.frame_id);
                continue;
            }
        };
        drop(au);
        ctl.save_rtp_state(frame.state);
        let first_sent = rt::monotonic();
        let mut net = NetCounters::default();
        let st = io.send_media(&session, &frame, first_sent, queue, &mut net);
        let last_sent = rt::monotonic();
        session.on_sent(st.packets, st.bytes);
        io.send_fec(&mut session, m.frame_id, &mut net);
        net.abr_changes = io.rtcp.tick(last_sent, &mut session, ctl, queue);
        if cfg.detect.enabled {
            send_detections(&mut io.rtcp, &session, ctl, &fmt, &mut det_runs_sent);
        }
        ctl.stats().add_net(&NetCounters {
            packets: st.packets,
            bytes: st.bytes,
            batches: st.batches,
            send_errors: st.errors,
            wouldblock_drops: st.wouldblock,
            refused: st.refused,
            last_refused_ns: if st.refused > 0 { last_sent.0 } else { 0 },
            ..net
        });
        ctl.stats().push_record(&FrameRecord {
            frame_id: m.frame_id,
            capture_ns: m.capture_ns,
            published_ns: m.published_ns,
            encode_start_ns: m.encode_start_ns,
            encode_end_ns: m.encode_end_ns,
            first_sent_ns: first_sent.0,
            last_sent_ns: last_sent.0,
            bytes: au_bytes,
            packets: frame.packets as u64,
            keyframe: (m.flags & FLAG_KEYFRAME != 0) as u64,
            pair_skew_ns: m.pair_skew(),
        });
        use std::sync::atomic::Ordering::Relaxed;
        slot.frames_in.fetch_add(1, Relaxed);
        slot.frames_out.fetch_add(1, Relaxed);
        beat(slot);
    }
    io.rtcp.bye();
    Ok(())
}

/// Sends `pkts` following `pacer`: each sendmmsg takes the packets already due
/// ([`next_batch`]), then the stage waits until the next one is. `start`: when the first
/// packet left.
fn send_paced(
    tx: &mut UdpSender,
    pkts: &PacketBuf,
    pacer: &crate::pacing::Pacer,
    start: MonotonicNs,
) -> SendStats {
    // Waits shorter than this are spun rather than slept.
    const PACE_SPIN_NS: u64 = 500_000;
    let mut st = SendStats::default();
    let (n, mut at) = (pkts.len(), (0usize, 0u64));
    while at.0 < n {
        let now = rt::monotonic();
        match next_batch(pacer, |i| pkts.get(i).len(), n, at, start, now) {
            Batch::Send { end, bytes_before } => {
                st.add(&tx.send_range(pkts, at.0..end));
                at = (end, bytes_before);
            }
            Batch::WaitUntil(MonotonicNs(due)) => {
                // Short waits (the usual ones, a few packets apart) are spun: a sleep
                // would let the CPU idle, and waking it again costs more than the wait
                // (hundreds of µs on a VM). Pacing is a few ms per IDR, so this costs
                // little CPU.
                if due > now.0 + PACE_SPIN_NS {
                    rt::sleep_until_ns(due - PACE_SPIN_NS);
                }
                while monotonic_ns() < due.saturating_sub(PACING_SLACK_NS) {
                    std::hint::spin_loop();
                }
            }
        }
    }
    st
}
