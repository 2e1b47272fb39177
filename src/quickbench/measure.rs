//! The measured sections of `quick-bench`: timer jitter, frame copy, ring hand-off between
//! two processes, encoder (x264 plus packetize+send), camera. Each runs in its own thread
//! (pinned, SCHED_FIFO where permitted) so the caller's scheduling is left alone.

use super::{
    CameraSection, EncoderSection, JitterRun, JitterSection, MemorySection, Percentiles,
    RingSection, Section, Unit,
};
use crate::config::Config;
use crate::encode::{EncoderParams, open_encoder};
use crate::net::UdpSender;
use crate::rt::{self, monotonic_ns};
use crate::rtp::{PacketBuf, Packetizer, RtpParams};
use crate::shm::frame_ring::{FrameMeta, FrameRing, Producer, RingGeometry, Take};
use crate::source::{self, FrameSource, SourceFormat};
use crate::stage::{StageKind, StagePlan};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Environment variable that turns a `quick-bench` process into the ring producer
/// (`NAME,FRAMES,PERIOD_NS,CPU,PRIORITY,WIDTH,HEIGHT`).
pub const RING_CHILD_ENV: &str = "VR_QUICKBENCH_RING_PRODUCER";

/// Progress callback: fraction done of the current section, 0.0..=1.0.
pub type Progress<'a> = &'a (dyn Fn(f64) + Sync);

/// Restricts the calling thread to `cpus` and, with `priority > 0`, asks for SCHED_FIFO.
/// Returns the placement in force as text (`CPU 1 SCHED_FIFO 80`, `CPUs 1-3 SCHED_FIFO 80`),
/// read back from the kernel, with the policy and priority.
pub fn place(cpus: &[usize], priority: u8) -> (String, i32, i32) {
    if priority > 0 {
        let _ = rt::apply(&rt::RtRequest {
            cpus: cpus.to_vec(),
            priority,
            mlock: false,
        });
    } else {
        let mut set = nix::sched::CpuSet::new();
        for &c in cpus {
            let _ = set.set(c);
        }
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
    // SAFETY: plain syscalls on the calling thread (tid 0) with a valid out-pointer.
    let (policy, prio) = unsafe {
        let mut p = libc::sched_param { sched_priority: 0 };
        libc::sched_getparam(0, &mut p);
        (libc::sched_getscheduler(0), p.sched_priority)
    };
    let name = if policy == libc::SCHED_FIFO {
        format!("SCHED_FIFO {prio}")
    } else {
        "SCHED_OTHER".to_string()
    };
    let now = rt::read_state(0).cpus;
    let cpus = if now.len() == 1 {
        format!("CPU {}", now[0])
    } else {
        format!("CPUs {}", rt::cpu_list_text(&now))
    };
    (format!("{cpus} {name}"), policy, prio)
}

/// CPUs isolated by the running kernel.
pub fn isolated_cpus() -> Vec<usize> {
    std::fs::read_to_string("/sys/devices/system/cpu/isolated")
        .ok()
        .and_then(|s| vr_setup::cpus::CpuList::parse(s.trim()).ok())
        .map(|l| l.iter().map(|c| c as usize).collect())
        .unwrap_or_default()
}

fn timer_loop(
    cpu: usize,
    priority: u8,
    period_ns: u64,
    n: usize,
    progress: Progress,
) -> (JitterRun, bool) {
    let (_, policy, prio) = place(&[cpu], priority);
    rt::prefault_stack();
    let mut lat = Vec::with_capacity(n);
    let mut next = monotonic_ns() + period_ns;
    for i in 0..n {
        rt::sleep_until_ns(next);
        let now = monotonic_ns();
        lat.push(now.saturating_sub(next));
        next += period_ns;
        if next < now {
            // Fell behind by more than a period (a long stall): start again from now.
            next = now + period_ns;
        }
        if i % 100 == 0 {
            progress(i as f64 / n as f64);
        }
    }
    let fifo = policy == libc::SCHED_FIFO;
    let run = JitterRun {
        policy: if fifo {
            "SCHED_FIFO".into()
        } else {
            "SCHED_OTHER".into()
        },
        priority: prio,
        cpu,
        isolated: isolated_cpus().contains(&cpu),
        wakeup: Percentiles::from_ns(&lat, Unit::Us).expect("n > 0"),
    };
    (run, fifo)
}

/// Timer wake-up latency, cyclictest-style: clock_nanosleep(TIMER_ABSTIME) every `period`
/// for `n` periods, first under SCHED_FIFO (priority 99 capped by what is permitted; the
/// camera stage's priority otherwise) on an isolated CPU if there is one (else the encode
/// stage's CPU), then under SCHED_OTHER on the same CPU.
pub fn jitter(cfg: &Config, period: Duration, n: usize, progress: Progress) -> JitterSection {
    let cpu = isolated_cpus().first().copied().unwrap_or_else(|| {
        let enc = StageKind::Encode.placement(cfg).cpus;
        enc.last().copied().unwrap_or(0)
    });
    let period_ns = period.as_nanos() as u64;
    let prio = cfg.stages.camera.priority.max(cfg.stages.encode.priority);
    let (fifo_run, was_fifo) = std::thread::scope(|s| {
        s.spawn(|| timer_loop(cpu, prio, period_ns, n, &|f| progress(f / 2.0)))
            .join()
            .expect("timer thread")
    });
    let (other, _) = std::thread::scope(|s| {
        s.spawn(|| timer_loop(cpu, 0, period_ns, n, &|f| progress(0.5 + f / 2.0)))
            .join()
            .expect("timer thread")
    });
    let fifo = if was_fifo {
        Section::Measured(fifo_run)
    } else {
        Section::not(format!(
            "SCHED_FIFO not permitted (RLIMIT_RTPRIO {}; fix: sudo setup --apply, log in again)",
            rt::rlimit(nix::sys::resource::Resource::RLIMIT_RTPRIO).0
        ))
    };
    JitterSection {
        period_us: period_ns / 1000,
        fifo,
        other,
    }
}

/// Copy of one I420 frame at the configured size, `n` times (buffers touched first).
pub fn memory(cfg: &Config, n: usize) -> MemorySection {
    let fmt = SourceFormat {
        width: cfg.source.width,
        height: cfg.source.height,
        fps_num: cfg.source.fps,
        fps_den: 1,
    };
    let bytes = fmt.frame_bytes();
    let src: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
    let mut dst = vec![0u8; bytes];
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let a = monotonic_ns();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        t.push(monotonic_ns() - a);
    }
    let copy = Percentiles::from_ns(&t, Unit::Ms).expect("n > 0");
    let gb_per_s = bytes as f64 / (copy.p50 * 1e-3) / 1e9;
    MemorySection {
        frame_bytes: bytes,
        copy,
        gb_per_s,
    }
}

/// Producer side of [`ring`], run in a child process (see [`RING_CHILD_ENV`]). Returns
/// the process exit status.
pub fn ring_child(spec: &str) -> i32 {
    let f: Vec<&str> = spec.split(',').collect();
    let parse = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let (Some(n), Some(period), Some(cpu), Some(prio), Some(w), Some(h)) =
        (parse(1), parse(2), parse(3), parse(4), parse(5), parse(6))
    else {
        eprintln!("quick-bench: bad {RING_CHILD_ENV} value {spec:?}");
        return 2;
    };
    let g = RingGeometry {
        format: SourceFormat {
            width: w as u32,
            height: h as u32,
            fps_num: 60,
            fps_den: 1,
        },
        consumers: 1,
    };
    let ring = match FrameRing::open(f[0], g) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quick-bench ring producer: {e}");
            return 2;
        }
    };
    let (placement, _, _) = place(&[cpu as usize], prio as u8);
    println!("{placement}");
    let Ok(mut p) = ring.producer() else { return 2 };
    let t0 = monotonic_ns() + 20_000_000;
    for i in 0..n {
        rt::sleep_until_ns(t0 + i * period);
        produce_probe(&mut p, i);
    }
    ring.set_eos();
    0
}

/// Publishes probe frame `i` of a hand-off measurement (this module's ring section,
/// `benches/ring_handoff.rs`): the frame is written first (here: its first 64 bytes, set to
/// `i`), then stamped, capture and publish time both CLOCK_MONOTONIC now, so that a
/// consumer's time taken − `published_ns` is the hand-off alone. Returns the published
/// position.
pub fn produce_probe(p: &mut Producer<'_>, i: u64) -> u64 {
    let Ok(pos) = p.produce(|buf| {
        buf[..64].fill(i as u8);
        let now = monotonic_ns();
        Ok::<_, std::convert::Infallible>(FrameMeta {
            frame_id: i,
            capture_ns: now,
            published_ns: now,
            len: buf.len() as u64,
            ..Default::default()
        })
    });
    pos
}

/// Hand-off latency of the project's frame ring between two processes: a child (this
/// executable again) produces `n` frames one frame interval apart on the camera stage's CPU;
/// this thread consumes them on the encode stage's CPU and measures publish → taken.
pub fn ring(cfg: &Config, n: usize, progress: Progress) -> Section<RingSection> {
    let name = format!("vrs-quickbench-{}", std::process::id());
    let g = RingGeometry {
        format: SourceFormat {
            width: cfg.source.width,
            height: cfg.source.height,
            fps_num: 60,
            fps_den: 1,
        },
        consumers: 1,
    };
    let ring = match FrameRing::create(&name, g) {
        Ok(r) => r,
        Err(e) => return Section::not(format!("cannot create the ring segment: {e}")),
    };
    ring.prefault();
    let period = 1_000_000_000 / cfg.source.fps.max(1) as u64;
    let (ccpu, _) = rt::map_cpu(cfg.stages.camera.cpu);
    let ecpus = StageKind::Encode.placement(cfg).cpus;
    let spec = format!(
        "{name},{n},{period},{ccpu},{},{},{}",
        cfg.stages.camera.priority, g.format.width, g.format.height
    );
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return Section::not(format!(
                "cannot find this executable to start the producer: {e}"
            ));
        }
    };
    let child = std::process::Command::new(exe)
        .env(RING_CHILD_ENV, spec)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return Section::not(format!("cannot start the producer process: {e}")),
    };
    let prio = cfg.stages.encode.priority;
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let (placement, _, _) = place(&ecpus, prio);
            let mut c = ring.consumer(0).ok()?;
            c.set_spin_window(Duration::from_micros(cfg.rt.spin_window_us as u64));
            let mut lat = Vec::with_capacity(n);
            // Until the end of the stream, or 3 s without a frame (the producer died).
            while let Take::Frame(f) = c.take(Instant::now() + Duration::from_secs(3)) {
                lat.push(monotonic_ns().saturating_sub(f.meta.published_ns));
                if lat.len() % 30 == 0 {
                    progress(lat.len() as f64 / n as f64);
                }
            }
            Some((lat, placement, c.drops()))
        })
        .join()
        .ok()
        .flatten()
    });
    let out = child.wait_with_output();
    let producer = out
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    match (result, out) {
        (Some((lat, consumer, drops)), Ok(o)) if o.status.success() && !lat.is_empty() => {
            Section::Measured(RingSection {
                producer,
                consumer,
                handoff: Percentiles::from_ns(&lat, Unit::Us).expect("non-empty"),
                drops,
            })
        }
        (_, Ok(o)) => Section::not(format!("the producer process failed ({})", o.status)),
        (_, Err(e)) => Section::not(format!("the producer process failed: {e}")),
    }
}

/// The real test clip (`scripts/fetch-assets.sh`) when it is there and has the configured
/// size: `$VR_STREAM_ASSETS/box-720p60.y4m` or `~/.cache/vr-stream/assets/box-720p60.y4m`.
pub fn real_clip(cfg: &Config) -> Option<PathBuf> {
    if let Some(p) = cfg.source.uri.strip_prefix("file:") {
        return Some(PathBuf::from(p));
    }
    let dir = std::env::var_os("VR_STREAM_ASSETS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vr-stream/assets"))
        })?;
    let p = dir.join("box-720p60.y4m");
    let h = source::y4m::probe(&p).ok()?;
    (h.format.width == cfg.source.width && h.format.height == cfg.source.height).then_some(p)
}

/// The test pattern at the configured size and frame rate (when the real clip is missing).
fn configured_pattern(cfg: &Config) -> Box<dyn FrameSource> {
    Box::new(source::pattern::PatternSource::new(SourceFormat {
        width: cfg.source.width,
        height: cfg.source.height,
        fps_num: cfg.source.fps,
        fps_den: 1,
    }))
}

/// Encodes `n` frames at the configured size, rate, bitrate and threads, paced at the
/// frame rate (as the camera delivers them), on the encode stage's CPU and priority; times
/// each x264 call, then packetizes each access unit and sends it with sendmmsg to a UDP
/// socket on 127.0.0.1, timing that too.
pub fn encoder(cfg: &Config, n: usize, progress: Progress) -> Section<EncoderSection> {
    let clip = real_clip(cfg);
    let mut src: Box<dyn FrameSource> = match &clip {
        Some(p) => match source::y4m::Y4mSource::open(p, true) {
            Ok(s) => Box::new(s),
            Err(e) => return Section::not(format!("cannot open the clip: {e}")),
        },
        None => configured_pattern(cfg),
    };
    let fmt = src.format();
    let fmt = SourceFormat {
        fps_num: cfg.source.fps,
        fps_den: 1,
        ..fmt
    };
    let cpus = StageKind::Encode.placement(cfg).cpus;
    let prio = cfg.stages.encode.priority;
    let enc_cfg = crate::stage::encoder_config(cfg);
    let r = std::thread::scope(|s| {
        s.spawn(|| -> Result<EncoderSection, String> {
            // As in the encode stage: placed first, so that x264's slice threads inherit it.
            let (placement, _, _) = place(&cpus, prio);
            let me = std::process::id() as i32;
            let before: Vec<i32> = rt::read_threads(me).iter().map(|t| t.tid).collect();
            let (mut enc, _notes) = open_encoder(&EncoderParams::from_config(&enc_cfg, fmt))
                .map_err(|e| e.to_string())?;
            // x264's own threads: those that appeared when it opened.
            let created: Vec<rt::ThreadState> = rt::read_threads(me)
                .into_iter()
                .filter(|t| !before.contains(&t.tid))
                .collect();
            let placement = if enc.describe() == "x264" {
                format!(
                    "{placement}, {}",
                    x264_threads_text(enc_cfg.threads, &created)
                )
            } else {
                placement
            };
            let backend = enc.describe();
            let sink = std::net::UdpSocket::bind("127.0.0.1:0")
                .map_err(|e| format!("local UDP socket: {e}"))?;
            let mut tx = UdpSender::new(
                sink.local_addr().map_err(|e| e.to_string())?,
                0,
                cfg.stream.sendmmsg_batch as usize,
            )
            .map_err(|e| format!("UDP sender: {e}"))?;
            let mut pk = Packetizer::new(
                RtpParams {
                    ssrc: cfg.stream.ssrc,
                    payload_type: cfg.stream.payload_type,
                    payload_size: cfg.stream.payload_size as usize,
                    capture_time_ext_id: None,
                },
                0,
            );
            let mut pkts = PacketBuf::with_capacity(1 << 20);
            let mut frame = vec![0u8; fmt.frame_bytes()];
            let (mut enc_t, mut send_t) = (Vec::with_capacity(n), Vec::with_capacity(n));
            let mut bytes = 0u64;
            for i in 0..n {
                src.next_frame(&mut frame)
                    .map_err(|e| e.to_string())?
                    .ok_or("the source ended")?;
                let a = monotonic_ns();
                let au = enc.encode(&frame, false).map_err(|e| e.to_string())?;
                let b = monotonic_ns();
                bytes += au.data.len() as u64;
                pkts.clear();
                pk.packetize(au.data, (i as u32).wrapping_mul(1500), None, &mut pkts)
                    .map_err(|e| e.to_string())?;
                tx.send(&pkts);
                let c = monotonic_ns();
                enc_t.push(b - a);
                send_t.push(c - b);
                if i % 30 == 0 {
                    progress(i as f64 / n as f64);
                }
            }
            drop(sink);
            let seconds = n as f64 / cfg.source.fps.max(1) as f64;
            Ok(EncoderSection {
                source: clip
                    .as_ref()
                    .map(|p| format!("file:{}", p.display()))
                    .unwrap_or_else(|| "pattern".into()),
                frames: n,
                encode: Percentiles::from_ns(&enc_t, Unit::Ms).ok_or("no frames")?,
                target_kbps: cfg.encoder.bitrate_kbps,
                achieved_kbps: bytes as f64 * 8.0 / seconds / 1000.0,
                packetize_send: Percentiles::from_ns(&send_t, Unit::Ms).ok_or("no frames")?,
                placement,
                backend,
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the encoder thread panicked".into()))
    });
    match r {
        Ok(s) => Section::Measured(s),
        Err(e) => Section::not(format!("encoder failed: {e}")),
    }
}

/// `2 slice threads (x264 made 2 threads, all SCHED_FIFO 80 on CPUs 0-1)`.
fn x264_threads_text(threads: u32, created: &[rt::ThreadState]) -> String {
    let slices = if threads > 1 {
        format!("{threads} slice threads")
    } else {
        "1 thread".to_string()
    };
    let mut places: Vec<String> = created
        .iter()
        .map(|t| {
            format!(
                "{} {} on CPUs {}",
                if t.state.policy == libc::SCHED_FIFO {
                    "SCHED_FIFO"
                } else {
                    "SCHED_OTHER"
                },
                t.state.priority,
                rt::cpu_list_text(&t.state.cpus)
            )
        })
        .collect();
    places.dedup();
    match places.len() {
        0 => slices,
        1 => format!(
            "{slices} (x264 made {} threads, all {})",
            created.len(),
            places[0]
        ),
        _ => format!(
            "{slices} (x264 made {} threads: {})",
            created.len(),
            places.join(", ")
        ),
    }
}

/// The camera to measure: the configured `libcamera:` or `v4l2:` source, else the first
/// `/dev/video*` that opens as a capture device at the configured size and rate.
fn find_camera(cfg: &Config) -> Result<(String, Box<dyn FrameSource>), String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if cfg.source.uri.starts_with("libcamera:") {
        let mono = crate::config::SourceConfig {
            stereo: false,
            ..cfg.source.clone()
        };
        return source::open(&mono)
            .map(|s| (cfg.source.uri.clone(), s))
            .map_err(|e| e.to_string());
    }
    if let Some(p) = cfg.source.uri.strip_prefix("v4l2:") {
        candidates.push(PathBuf::from(p));
    } else {
        let mut v: Vec<PathBuf> = std::fs::read_dir("/dev")
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("video"))
        });
        v.sort();
        candidates = v;
    }
    if candidates.is_empty() {
        return Err(
            "no /dev/video* capture device (a CSI camera is measured when source.uri is libcamera:N)"
                .into(),
        );
    }
    let mut errors = Vec::new();
    for p in candidates {
        match source::v4l2::V4l2Source::open(
            &p,
            cfg.source.width,
            cfg.source.height,
            cfg.source.fps,
            cfg.source.buffers,
        ) {
            Ok(s) => return Ok((p.display().to_string(), Box::new(s))),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(format!("no usable capture device: {}", errors.join("; ")))
}

/// Camera frame interval, its jitter and capture latency (dequeue time − buffer
/// timestamp, both CLOCK_MONOTONIC) over `n` frames. A `libcamera:` camera is measured
/// in CI against libcamera's virtual camera (tests/libcamera.rs); the V4L2 path is only
/// compiled (no /dev/video* there).
pub fn camera(cfg: &Config, n: usize, progress: Progress) -> Section<CameraSection> {
    let (device, mut cam) = match find_camera(cfg) {
        Ok(c) => c,
        Err(e) => return Section::not(e),
    };
    let mut buf = vec![0u8; cam.format().frame_bytes()];
    let (mut stamps, mut lat) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        match cam.next_frame(&mut buf) {
            Ok(Some(c)) => {
                lat.push(monotonic_ns().saturating_sub(c.capture_ns));
                stamps.push(c.capture_ns);
            }
            Ok(None) => break,
            Err(e) => return Section::not(format!("{device}: {e}")),
        }
        progress(i as f64 / n as f64);
    }
    let intervals: Vec<u64> = stamps
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    let Some(interval) = Percentiles::from_ns(&intervals, Unit::Ms) else {
        return Section::not(format!("{device}: fewer than two frames"));
    };
    let median = (interval.p50 * 1e6) as u64;
    let dev: Vec<u64> = intervals.iter().map(|&i| i.abs_diff(median)).collect();
    Section::Measured(CameraSection {
        device,
        interval,
        jitter: Percentiles::from_ns(&dev, Unit::Ms).expect("non-empty"),
        capture_latency: Percentiles::from_ns(&lat, Unit::Ms).expect("non-empty"),
    })
}

/// Section 6, the detector: letterbox + inference on `n` frames of the real clip (or the
/// pattern) at the configured model and threads, on the detect stage's CPU as SCHED_OTHER
/// (as the stage runs by default), ms per frame. Not measured, with the reason, when ONNX
/// Runtime or the model is missing.
pub fn detector(cfg: &Config, n: usize, progress: Progress) -> Section<Percentiles> {
    let mut det = match crate::detect::assets::open(&cfg.detect) {
        Ok(d) => d,
        Err(e) => return Section::not(e.to_string()),
    };
    let mut src: Box<dyn FrameSource> =
        match real_clip(cfg).and_then(|p| source::y4m::Y4mSource::open(&p, true).ok()) {
            Some(s) => Box::new(s),
            None => configured_pattern(cfg),
        };
    let fmt = src.format();
    let mut frame = vec![0u8; fmt.frame_bytes()];
    let (cpu, _) = rt::map_cpu(cfg.stages.detect.cpu);
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 1 {
        if let Err(e) = src.next_frame(&mut frame) {
            return Section::not(format!("source: {e}"));
        }
        let t0 = monotonic_ns();
        let r = det
            .prepare_i420(&frame, fmt.width, fmt.height)
            .and_then(|lb| det.infer(lb));
        if let Err(e) = r {
            return Section::not(e.to_string());
        }
        // The first run initializes ONNX Runtime's kernels: not a steady-state sample.
        if i > 0 {
            samples.push(monotonic_ns() - t0);
        }
        progress(i as f64 / n as f64);
    }
    match Percentiles::from_ns(&samples, Unit::Ms) {
        Some(p) => Section::Measured(p),
        None => Section::not("no samples"),
    }
}
