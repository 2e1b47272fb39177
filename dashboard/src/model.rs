//! What the dashboard shows: one [`Snapshot`] per tick, collected by a [`Collector`] from
//! the stats segment of a vr-stream instance, /proc and /sys. Rates (fps, CPU %, bytes/s)
//! come from the difference to the previous tick.

use serde::Serialize;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};
use vr_shm::latency::SPANS;
use vr_shm::latency::{SamplePercentiles, Unit};
use vr_shm::stats::{EncCounters, NetCounters, RECORDS, STAGES, Stage, StageState, Stats};

/// One CPU core.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuView {
    /// CPU number.
    pub id: u32,
    /// Busy share since the last tick, percent.
    pub usage_pct: f64,
    /// Isolated by the kernel (`/sys/devices/system/cpu/isolated`).
    pub isolated: bool,
}

/// One stage row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageView {
    /// `camera`, `encode`, `network`.
    pub name: &'static str,
    /// `starting`, `ready`, `retrying`, `failed`, `done`, `idle`.
    pub state: &'static str,
    /// Process id (0 when none).
    pub pid: u32,
    /// CPU time share since the last tick, percent of one core.
    pub cpu_pct: f64,
    /// Resident memory, KiB.
    pub rss_kb: u64,
    /// CPUs the process may run on.
    pub affinity: String,
    /// Policy of its threads, read back per thread (/proc/PID/task): `FIFO 90` for one
    /// thread, `FIFO 80 x3` when all three agree (the encode stage with two x264 slice
    /// threads), `FIFO 80 x2, OTHER x1` when they do not.
    pub policy: String,
    /// Locked memory, KiB.
    pub vmlck_kb: u64,
    /// Frames handed on per second.
    pub fps: f64,
    /// Frames dropped by the stage (total).
    pub drops: u64,
    /// Restarts by the supervisor (total).
    pub restarts: u64,
    /// Time since the last heartbeat, ms (None before the first).
    pub heartbeat_age_ms: Option<u64>,
    /// Error or retry reason, if any.
    pub error: Option<String>,
}

/// `FIFO 80`, `FIFO 80 x3`, or `FIFO 80 x2, OTHER x1` ([`StageView::policy`]) from the
/// threads read back (`main`: the process's own thread, when no thread could be read).
fn policy_text(threads: &[vr_sys::proc::ThreadState], main: &vr_sys::proc::RtState) -> String {
    let one = |policy: i32, prio: i32| {
        if policy == libc::SCHED_FIFO {
            format!("FIFO {prio}")
        } else {
            "OTHER".to_string()
        }
    };
    if threads.len() <= 1 {
        return one(main.policy, main.priority);
    }
    let mut groups: Vec<(String, usize)> = vec![];
    for t in threads {
        let k = one(t.state.policy, t.state.priority);
        match groups.iter_mut().find(|g| g.0 == k) {
            Some(g) => g.1 += 1,
            None => groups.push((k, 1)),
        }
    }
    groups
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// p50/p99 of one latency span over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpanView {
    /// `camera`, `queue`, `encode`, `send`, `total`; `pair skew` (how far apart the two
    /// eyes' capture times were) for `--stereo`.
    pub name: &'static str,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// One network interface.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct IfaceView {
    /// Interface name.
    pub name: String,
    /// Totals from /sys/class/net/IF/statistics.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Receive + transmit errors.
    pub errors: u64,
    /// Receive + transmit drops.
    pub dropped: u64,
    /// Receive rate, bytes/s.
    pub rx_bps: f64,
    /// Transmit rate, bytes/s.
    pub tx_bps: f64,
    /// Transmit rate, packets/s.
    pub tx_pps: f64,
}

/// Encoder figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EncView {
    /// Counters from the stats segment.
    pub frames: u64,
    /// IDR frames.
    pub idr: u64,
    /// Bitrate in force, kbit/s.
    pub bitrate_kbps: u32,
    /// Bits produced per second since the last tick, kbit/s.
    pub measured_kbps: f64,
    /// Size of the last access unit, bytes.
    pub last_bytes: u64,
    /// QP of the last frame (-1 unknown).
    pub last_qp: i32,
}

/// The stream's network counters and rates.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamNetView {
    /// Totals.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// sendmmsg calls.
    pub batches: u64,
    /// Send errors.
    pub send_errors: u64,
    /// Would-block drops.
    pub wouldblock_drops: u64,
    /// Packets per second.
    pub pps: f64,
}

/// A running stream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamView {
    /// Receiver `ADDR:PORT`.
    pub destination: String,
    /// Frame size and rate.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frames per second (configured).
    pub fps: u32,
    /// `--profile`, or empty.
    pub profile: String,
    /// `stats.target_ms`.
    pub target_ms: u32,
    /// Supervisor PID.
    pub supervisor_pid: u32,
    /// Seconds since the stream started.
    pub uptime_s: u64,
    /// Stages.
    pub stages: Vec<StageView>,
    /// Latency spans over the window.
    pub latency: Vec<SpanView>,
    /// Frames in the window.
    pub window_frames: usize,
    /// Capture -> last packet of the most recent frames, µs (oldest first).
    pub recent_total_us: Vec<u64>,
    /// Encoder.
    pub encoder: EncView,
    /// Network counters of the stream.
    pub net: StreamNetView,
    /// RTCP receiver figures; None until a receiver reports.
    pub rtcp: Option<String>,
    /// The detect stage (`--yolo`): rates, inference time, the newest result's age; None
    /// when it does not run.
    pub detector: Option<String>,
    /// The viewer page (`--web`); None when vr-stream runs without it.
    pub page: Option<PageView>,
}

/// The viewer page: the server's counters and what the newest page report measured on
/// the headset.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PageView {
    /// Viewers connected now.
    pub viewers: u64,
    /// Access units handed to viewers.
    pub sent: u64,
    /// Access units viewers missed.
    pub skipped: u64,
    /// Refused logins and connections.
    pub refused: u64,
    /// `"webrtc"`, `"ws"` or `"unknown"`; None before a page reported.
    pub transport: Option<String>,
    /// The newest report of any page (its keys sit beside the counters in the JSON).
    #[serde(flatten)]
    pub report: ReportView,
    /// Every viewer connected now (at most 8), each with its page's last report.
    pub list: Vec<ViewerView>,
}

/// What one page report measured on the headset (`vr_shm::stats::PageStats`, in ms and s
/// for the screen and the JSON). Every figure is None before the page's first report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReportView {
    /// Capture → decoded on the page, p50, ms.
    pub latency_p50_ms: Option<f64>,
    /// The same, p99, ms.
    pub latency_p99_ms: Option<f64>,
    /// Capture → expected display on the page, p50, ms.
    pub display_p50_ms: Option<f64>,
    /// The same, p99, ms.
    pub display_p99_ms: Option<f64>,
    /// Decode time, p50, ms.
    pub decode_ms: Option<f64>,
    /// Frames decoded per second on the page.
    pub fps: Option<f64>,
    /// Frames decoded by the page so far.
    pub decoded: Option<u64>,
    /// Connections the page made again after drops.
    pub reconnects: Option<u32>,
    /// Age of the report at `now_ns`, s.
    pub report_age_s: Option<f64>,
}

impl ReportView {
    /// The figures of `report` (None: no report yet), its age taken at `now_ns`
    /// (CLOCK_MONOTONIC, the clock of `PageStats::report_ns`).
    pub fn new(report: Option<&vr_shm::stats::PageStats>, now_ns: u64) -> ReportView {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let Some(r) = report else {
            return ReportView::default();
        };
        ReportView {
            latency_p50_ms: Some(ms(r.latency_p50)),
            latency_p99_ms: Some(ms(r.latency_p99)),
            display_p50_ms: Some(ms(r.display_p50)),
            display_p99_ms: Some(ms(r.display_p99)),
            decode_ms: Some(ms(r.decode)),
            fps: Some(r.fps_milli as f64 / 1000.0),
            decoded: Some(r.decoded),
            reconnects: Some(r.reconnects),
            report_age_s: Some(now_ns.saturating_sub(r.report_ns) as f64 / 1e9),
        }
    }
}

/// One viewer connected now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ViewerView {
    /// `"webrtc"` or `"ws"`.
    pub transport: String,
    /// The page's address, `IP:PORT`.
    pub address: String,
    /// That page's last report (its keys sit beside these two in the JSON).
    #[serde(flatten)]
    pub report: ReportView,
}

impl ViewerView {
    /// One line for the screen.
    pub fn text(&self) -> String {
        let r = &self.report;
        match (r.latency_p50_ms, r.latency_p99_ms) {
            (Some(p50), Some(p99)) => format!(
                "{} {}: decoded p50 {p50:.1} p99 {p99:.1} ms, display p50 {:.1} p99 {:.1} ms, {:.1} fps, {} reconnects",
                self.transport,
                self.address,
                r.display_p50_ms.unwrap_or(f64::NAN),
                r.display_p99_ms.unwrap_or(f64::NAN),
                r.fps.unwrap_or(0.0),
                r.reconnects.unwrap_or(0)
            ),
            _ => format!("{} {}: no report yet", self.transport, self.address),
        }
    }
}

impl PageView {
    /// One line for the screen: the page's report first, then the server's counters.
    pub fn text(&self) -> String {
        let tail = format!(
            "{} viewer(s), {} sent, {} skipped, {} refused",
            self.viewers, self.sent, self.skipped, self.refused
        );
        let r = &self.report;
        match (
            self.transport.as_deref(),
            r.latency_p50_ms,
            r.latency_p99_ms,
        ) {
            (Some(t), Some(p50), Some(p99)) => format!(
                "{t}, capture->decoded p50 {p50:.1} p99 {p99:.1} ms, decode {:.1} ms, {:.1} fps ({:.1} s ago); {tail}",
                r.decode_ms.unwrap_or(f64::NAN),
                r.fps.unwrap_or(0.0),
                r.report_age_s.unwrap_or(f64::NAN)
            ),
            _ => format!("no page report yet; {tail}"),
        }
    }
}

fn page_view(w: &vr_shm::stats::WebStats, now_ns: u64) -> PageView {
    let list = w
        .list
        .iter()
        .map(|v| ViewerView {
            transport: v.transport.as_str().to_string(),
            address: v.addr.to_string(),
            report: ReportView::new(v.report.as_ref(), now_ns),
        })
        .collect();
    PageView {
        viewers: w.viewers,
        sent: w.sent,
        skipped: w.skipped,
        refused: w.refused,
        transport: w.page.as_ref().map(|p| p.transport.as_str().to_string()),
        report: ReportView::new(w.page.as_ref(), now_ns),
        list,
    }
}

/// Everything shown in one tick.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    /// Instance name.
    pub instance: String,
    /// The stream, or None while waiting.
    pub stream: Option<StreamView>,
    /// Why there is no stream (shown as "waiting for vr-stream: ...").
    pub waiting: Option<String>,
    /// CPU cores.
    pub cpus: Vec<CpuView>,
    /// Network interfaces.
    pub interfaces: Vec<IfaceView>,
    /// Interface the route to the receiver uses (index into `interfaces`).
    pub route_interface: Option<usize>,
    /// SoC temperature, °C.
    pub temperature_c: Option<f64>,
    /// Throttling state (decoded get_throttled), or None where there is none (not a Pi).
    pub throttled: Option<String>,
}

struct Attached {
    stats: Stats,
    ino: u64,
}

/// Collects snapshots of one instance.
pub struct Collector {
    instance: String,
    attached: Option<Attached>,
    window: Duration,
    last: Option<Instant>,
    prev_cpu: Vec<(u64, u64)>,
    prev_proc: HashMap<u32, u64>,
    prev_frames: [u64; STAGES],
    prev_enc: Option<EncCounters>,
    prev_net: Option<NetCounters>,
    prev_det: Option<vr_shm::stats::DetectCounters>,
    prev_if: HashMap<String, (u64, u64, u64)>,
    throttled_source: crate::sys::ThrottledSource,
}

impl Collector {
    /// A collector for instance `instance`; latency percentiles over the last `window`.
    pub fn new(instance: &str, window: Duration) -> Collector {
        Collector {
            instance: instance.to_string(),
            attached: None,
            window,
            last: None,
            prev_cpu: Vec::new(),
            prev_proc: HashMap::new(),
            prev_frames: [0; STAGES],
            prev_enc: None,
            prev_net: None,
            prev_det: None,
            prev_if: HashMap::new(),
            throttled_source: crate::sys::ThrottledSource::detect(),
        }
    }

    fn seg_path(&self) -> String {
        format!(
            "{}/{}",
            vr_shm::SHM_DIR,
            vr_shm::names::stats_name(&self.instance)
        )
    }

    /// Attaches to the stats segment if needed; detaches from one that was removed or
    /// replaced (vr-stream ended or restarted) or whose supervisor died. Returns why there
    /// is no stream, if there is none.
    fn attach(&mut self) -> Option<String> {
        let path = self.seg_path();
        let ino = std::fs::metadata(&path).map(|m| m.ino()).ok();
        if let Some(a) = &self.attached {
            let alive = crate::sys::pid_alive(a.stats.info().supervisor_pid);
            if Some(a.ino) != ino || !alive {
                tracing::info!("stream ended or restarted: detaching from {path}");
                self.attached = None;
                self.prev_enc = None;
                self.prev_net = None;
                self.prev_frames = [0; STAGES];
            }
        }
        if self.attached.is_none() {
            let Some(ino) = ino else {
                return Some(format!("no {path}"));
            };
            match Stats::open(&vr_shm::names::stats_name(&self.instance)) {
                Ok(stats) => {
                    let pid = stats.info().supervisor_pid;
                    if pid == 0 {
                        return Some("starting".into());
                    }
                    if !crate::sys::pid_alive(pid) {
                        return Some(format!(
                            "{path} is left over from a run that ended (supervisor PID {pid} is gone)"
                        ));
                    }
                    tracing::info!("attached to {path} (supervisor {pid})");
                    self.attached = Some(Attached { stats, ino });
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    let hint = match e {
                        vr_shm::ShmError::VersionMismatch { .. } => {
                            " (vr-stream and dashboard come from different builds: install both from one)"
                        }
                        _ => "",
                    };
                    return Some(format!("{e}{hint}"));
                }
            }
        }
        None
    }

    /// Collects one snapshot.
    pub fn collect(&mut self) -> Snapshot {
        let now = Instant::now();
        let dt = self
            .last
            .map(|l| now.duration_since(l).as_secs_f64())
            .filter(|d| *d > 0.0);
        self.last = Some(now);
        let waiting = self.attach();
        let cpus = self.cpus();
        let interfaces = self.interfaces(dt);
        let stream = if self.attached.is_some() {
            Some(self.stream(dt))
        } else {
            None
        };
        let route_interface = stream.as_ref().and_then(|s| {
            let iface = crate::sys::route_interface(&s.destination)?;
            interfaces.iter().position(|i| i.name == iface)
        });
        Snapshot {
            instance: self.instance.clone(),
            waiting: if stream.is_some() {
                None
            } else {
                waiting.or(Some("no stream".into()))
            },
            stream,
            cpus,
            interfaces,
            route_interface,
            temperature_c: crate::sys::temperature_c(),
            throttled: self.throttled_source.read(),
        }
    }

    fn cpus(&mut self) -> Vec<CpuView> {
        let isolated = crate::sys::isolated();
        let now = crate::sys::cpu_times();
        let out = now
            .iter()
            .enumerate()
            .map(|(i, &(id, total, idle))| {
                let usage_pct = match self.prev_cpu.get(i) {
                    Some(&(pt, pi)) if total > pt => {
                        100.0 * (1.0 - (idle.saturating_sub(pi)) as f64 / (total - pt) as f64)
                    }
                    _ => 0.0,
                };
                CpuView {
                    id,
                    usage_pct: usage_pct.clamp(0.0, 100.0),
                    isolated: isolated.contains(&id),
                }
            })
            .collect();
        self.prev_cpu = now.iter().map(|&(_, t, i)| (t, i)).collect();
        out
    }

    fn interfaces(&mut self, dt: Option<f64>) -> Vec<IfaceView> {
        let mut v = crate::sys::interfaces();
        for i in &mut v {
            if let (Some(dt), Some(&(rx, tx, txp))) = (dt, self.prev_if.get(&i.name)) {
                i.rx_bps = i.rx_bytes.saturating_sub(rx) as f64 / dt;
                i.tx_bps = i.tx_bytes.saturating_sub(tx) as f64 / dt;
                i.tx_pps = i.tx_packets.saturating_sub(txp) as f64 / dt;
            }
        }
        self.prev_if = v
            .iter()
            .map(|i| (i.name.clone(), (i.rx_bytes, i.tx_bytes, i.tx_packets)))
            .collect();
        v
    }

    /// A row per stage slot (optional stages only when they have a process), with the
    /// rates since the last tick (`dt`, s) and the heartbeat age at `now_ns`.
    fn stage_views(&mut self, dt: Option<f64>, now_ns: u64) -> Vec<StageView> {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.attached.as_ref().expect("attached").stats;
        let mut stages = Vec::new();
        let mut seen = HashMap::new();
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            let s = stats.stage(stage);
            let pid = s.pid.load(Relaxed);
            if pid == 0 && stage.optional() {
                continue;
            }
            let out = s.frames_out.load(Relaxed);
            let fps = match dt {
                Some(dt) if self.prev_frames[i] <= out && self.prev_frames[i] > 0 => {
                    (out - self.prev_frames[i]) as f64 / dt
                }
                _ => 0.0,
            };
            self.prev_frames[i] = out;
            let p = if pid != 0 && crate::sys::pid_alive(pid) {
                ProcessView::read(pid, dt, &self.prev_proc, &mut seen)
            } else {
                ProcessView::default()
            };
            let hb = s.heartbeat_ns.load(Relaxed);
            let state = match s.state() {
                StageState::Idle => "idle",
                StageState::Starting => "starting",
                StageState::Ready => "running",
                StageState::Done => "done",
                StageState::Failed => "failed",
                StageState::Retrying => "retrying",
            };
            stages.push(StageView {
                name: stage.name(),
                state,
                pid,
                cpu_pct: p.cpu_pct,
                rss_kb: p.rss_kb,
                affinity: p.affinity,
                policy: p.policy,
                vmlck_kb: p.vmlck_kb,
                fps,
                drops: s.drops.load(Relaxed),
                restarts: s.restarts.load(Relaxed),
                heartbeat_age_ms: (hb != 0).then(|| now_ns.saturating_sub(hb) / 1_000_000),
                error: s.error(),
            });
        }
        self.prev_proc = seen;
        stages
    }

    fn stream(&mut self, dt: Option<f64>) -> StreamView {
        let now_ns = vr_sys::time::monotonic_ns();
        let stages = self.stage_views(dt, now_ns);
        let stats = &self.attached.as_ref().expect("attached").stats;
        let info = stats.info();
        let since = now_ns.saturating_sub(self.window.as_nanos() as u64);
        let (latency, window_frames) = latency_views(stats, since);
        let recent = recent_totals_us(stats, 240);

        let enc = stats.encoded();
        let measured_kbps = match (dt, self.prev_enc) {
            (Some(dt), Some(p)) if enc.bytes >= p.bytes => {
                (enc.bytes - p.bytes) as f64 * 8.0 / dt / 1000.0
            }
            _ => 0.0,
        };
        self.prev_enc = Some(enc);
        let net = stats.net();
        let pps = match (dt, self.prev_net) {
            (Some(dt), Some(p)) if net.packets >= p.packets => {
                (net.packets - p.packets) as f64 / dt
            }
            _ => 0.0,
        };
        self.prev_net = Some(net);
        let det = stats.detect();
        let det_rates = match (dt, self.prev_det) {
            (Some(dt), Some(p)) if det.inferences >= p.inferences => Some((
                (det.inferences - p.inferences) as f64 / dt,
                (det.detections - p.detections) as f64 / dt,
            )),
            _ => None,
        };
        self.prev_det = Some(det);
        let detector = detector_text(
            &det,
            det_rates,
            stats
                .detections()
                .map(|s| (s.detections.len(), s.capture_ns)),
            now_ns,
        );
        StreamView {
            destination: info.destination,
            width: info.width,
            height: info.height,
            fps: info.fps,
            profile: info.profile,
            target_ms: info.target_ms,
            supervisor_pid: info.supervisor_pid,
            uptime_s: now_ns.saturating_sub(info.started_ns) / 1_000_000_000,
            stages,
            latency,
            window_frames,
            recent_total_us: recent,
            encoder: EncView {
                frames: enc.frames,
                idr: enc.idr,
                bitrate_kbps: info.bitrate_kbps,
                measured_kbps,
                last_bytes: enc.last_bytes,
                last_qp: enc.last_qp,
            },
            net: StreamNetView {
                packets: net.packets,
                bytes: net.bytes,
                batches: net.batches,
                send_errors: net.send_errors,
                wouldblock_drops: net.wouldblock_drops,
                pps,
            },
            rtcp: rtcp_text(&stats.rtcp(), now_ns),
            detector,
            page: stats.web().map(|w| page_view(&w, now_ns)),
        }
    }
}

/// What /proc says about a stage's process.
struct ProcessView {
    /// CPU time since the last tick, percent of one core.
    cpu_pct: f64,
    rss_kb: u64,
    /// CPUs it may run on; every thread's set, `|`-separated, when they differ.
    affinity: String,
    policy: String,
    vmlck_kb: u64,
}

impl Default for ProcessView {
    fn default() -> ProcessView {
        ProcessView {
            cpu_pct: 0.0,
            rss_kb: 0,
            affinity: "-".into(),
            policy: "-".into(),
            vmlck_kb: 0,
        }
    }
}

impl ProcessView {
    /// Reads process `pid`: its CPU share since the last tick (`dt` s; `prev`: CPU ticks
    /// per pid then; its ticks now go into `seen`), memory, affinity and policy.
    fn read(
        pid: u32,
        dt: Option<f64>,
        prev: &HashMap<u32, u64>,
        seen: &mut HashMap<u32, u64>,
    ) -> ProcessView {
        let mut v = ProcessView::default();
        if let Ok(st) = procfs::process::Process::new(pid as i32).and_then(|p| p.stat()) {
            let t = st.utime + st.stime;
            if let (Some(dt), Some(&pt)) = (dt, prev.get(&pid)) {
                let ticks = procfs::ticks_per_second() as f64;
                v.cpu_pct = (t.saturating_sub(pt)) as f64 / ticks / dt * 100.0;
            }
            seen.insert(pid, t);
            v.rss_kb = st.rss * (procfs::page_size() / 1024);
        }
        let rt = vr_sys::proc::read_state(pid as i32);
        let threads = vr_sys::proc::read_threads(pid as i32);
        let list = |cpus: &[usize]| {
            vr_setup::cpus::CpuList::from_cpus(cpus.iter().map(|&c| c as u32)).to_string()
        };
        v.affinity = list(&rt.cpus);
        if threads.iter().any(|t| t.state.cpus != rt.cpus) {
            // Some thread runs elsewhere: show every set.
            let mut sets: Vec<String> = threads.iter().map(|t| list(&t.state.cpus)).collect();
            sets.sort();
            sets.dedup();
            v.affinity = sets.join("|");
        }
        v.policy = policy_text(&threads, &rt);
        v.vmlck_kb = rt.vmlck_kb;
        v
    }
}

/// The latency spans (p50, p99) over the records whose last packet left at or after
/// `since_ns` (newest first, back to the ring's size), then (`--stereo`) the pair skew of
/// the frames that are stereo pairs; and how many records that was.
fn latency_views(stats: &Stats, since_ns: u64) -> (Vec<SpanView>, usize) {
    let written = stats.records_written();
    let mut recs = Vec::new();
    let mut n = written;
    while n > 0 && written - n < RECORDS as u64 {
        n -= 1;
        match stats.record_at(n) {
            Some(r) if r.last_sent_ns >= since_ns => recs.push(r),
            _ => break,
        }
    }
    recs.reverse();
    let pair_skew: Vec<u64> = recs.iter().filter_map(|r| r.pair_skew_ns).collect();
    let spans = SPANS
        .iter()
        .map(|(name, f)| (*name, recs.iter().map(f).collect::<Vec<u64>>()))
        .chain([("pair skew", pair_skew)])
        .filter_map(|(name, v)| {
            let p = SamplePercentiles::from_ns(&v, Unit::Ms)?;
            Some(SpanView {
                name,
                p50_ms: p.p50,
                p99_ms: p.p99,
            })
        })
        .collect();
    (spans, recs.len())
}

/// The capture → last packet latency of the newest `max` records, µs, oldest first.
fn recent_totals_us(stats: &Stats, max: usize) -> Vec<u64> {
    let total = SPANS
        .iter()
        .find(|(n, _)| *n == "total")
        .map(|(_, f)| *f)
        .expect("total span");
    let mut recent: Vec<u64> = Vec::new();
    let mut n = stats.records_written();
    while n > 0 && recent.len() < max {
        n -= 1;
        match stats.record_at(n) {
            Some(r) => recent.push(total(&r) / 1000),
            None => break,
        }
    }
    recent.reverse();
    recent
}

/// One line about the detect stage, or `None` when it has not run: runs/s, detections/s,
/// the last and mean inference times, and the newest result (boxes, age since its frame's
/// capture). `rates` = (runs/s, detections/s) over the last tick; `newest` = (boxes,
/// capture ns).
fn detector_text(
    d: &vr_shm::stats::DetectCounters,
    rates: Option<(f64, f64)>,
    newest: Option<(usize, u64)>,
    now_ns: u64,
) -> Option<String> {
    if d.inferences == 0 {
        return None;
    }
    let (rps, dps) = rates.unwrap_or((0.0, 0.0));
    let newest = newest
        .map(|(n, cap)| {
            format!(
                "newest {n} boxes, {:.0} ms after capture",
                now_ns.saturating_sub(cap) as f64 / 1e6
            )
        })
        .unwrap_or_default();
    Some(format!(
        "{rps:.1} runs/s, {dps:.1} detections/s, inference {:.1} ms (mean {:.1}), letterbox {:.1} ms; {newest}",
        d.last_infer_us as f64 / 1000.0,
        d.infer_us_total as f64 / d.inferences as f64 / 1000.0,
        d.last_prep_us as f64 / 1000.0
    ))
}

/// One line about what the receivers report over RTCP, or `None` before the first report.
fn rtcp_text(r: &vr_shm::stats::RtcpCounters, now_ns: u64) -> Option<String> {
    if r.reports == 0 && r.pli == 0 && r.nack_packets == 0 {
        return None;
    }
    let rtt = r
        .rtt_us
        .map(|u| format!("{:.1} ms", u as f64 / 1000.0))
        .unwrap_or_else(|| "n/a".into());
    let age = if r.last_report_ns == 0 {
        "no report yet".to_string()
    } else {
        format!(
            "last {:.1} s ago",
            now_ns.saturating_sub(r.last_report_ns) as f64 / 1e9
        )
    };
    Some(format!(
        "loss {:.1}% (total {}), jitter {:.1} ms, RTT {rtt}, PLI {}, NACK {}; {age}",
        r.fraction_lost as f64 * 100.0 / 256.0,
        r.cumulative_lost,
        r.jitter_90k as f64 / 90.0,
        r.pli,
        r.nack_packets
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vr_shm::stats::RtcpCounters;

    #[test]
    fn page_line() {
        use std::time::Duration;
        use vr_shm::stats::{PageStats, PageTransport, WebStats};
        let mut w = WebStats {
            viewers: 1,
            sent: 600,
            skipped: 2,
            refused: 1,
            page: None,
            list: vec![],
        };
        assert_eq!(
            page_view(&w, 0).text(),
            "no page report yet; 1 viewer(s), 600 sent, 2 skipped, 1 refused"
        );
        w.page = Some(PageStats {
            transport: PageTransport::WebRtc,
            report_ns: 1_000_000_000,
            decoded: 590,
            latency_p50: Duration::from_micros(11_500),
            latency_p99: Duration::from_micros(25_200),
            decode: Duration::from_micros(1_200),
            fps_milli: 59_500,
            display_p50: Duration::from_micros(20_000),
            display_p99: Duration::from_micros(33_000),
            reconnects: 2,
        });
        w.list = vec![vr_shm::stats::ViewerStats {
            addr: "192.168.1.100:50432".parse().unwrap(),
            transport: PageTransport::WebRtc,
            report: w.page,
        }];
        let v = page_view(&w, 1_400_000_000);
        assert_eq!(v.report.latency_p99_ms, Some(25.2));
        assert_eq!(
            v.text(),
            "webrtc, capture->decoded p50 11.5 p99 25.2 ms, decode 1.2 ms, 59.5 fps (0.4 s ago); 1 viewer(s), 600 sent, 2 skipped, 1 refused"
        );
        assert_eq!(
            v.list[0].text(),
            "webrtc 192.168.1.100:50432: decoded p50 11.5 p99 25.2 ms, display p50 20.0 p99 33.0 ms, 59.5 fps, 2 reconnects"
        );
    }

    #[test]
    fn detector_line() {
        use vr_shm::stats::DetectCounters;
        assert_eq!(
            detector_text(&DetectCounters::default(), None, None, 0),
            None
        );
        let d = DetectCounters {
            inferences: 10,
            detections: 25,
            last_prep_us: 800,
            last_infer_us: 24_300,
            infer_us_total: 346_000,
        };
        assert_eq!(
            detector_text(
                &d,
                Some((13.9, 20.0)),
                Some((3, 1_000_000_000)),
                1_054_000_000
            )
            .unwrap(),
            "13.9 runs/s, 20.0 detections/s, inference 24.3 ms (mean 34.6), letterbox 0.8 ms; newest 3 boxes, 54 ms after capture"
        );
    }

    #[test]
    fn rtcp_line() {
        assert_eq!(rtcp_text(&RtcpCounters::default(), 5), None);
        let r = RtcpCounters {
            reports: 3,
            fraction_lost: 64,
            cumulative_lost: 12,
            jitter_90k: 45,
            rtt_us: Some(3100),
            last_report_ns: 1_000_000_000,
            pli: 2,
            nack_packets: 0,
        };
        assert_eq!(
            rtcp_text(&r, 1_300_000_000).unwrap(),
            "loss 25.0% (total 12), jitter 0.5 ms, RTT 3.1 ms, PLI 2, NACK 0; last 0.3 s ago"
        );
        let r = RtcpCounters { rtt_us: None, ..r };
        assert!(rtcp_text(&r, 1_300_000_000).unwrap().contains("RTT n/a"));
    }
}
