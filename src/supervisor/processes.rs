//! The stage processes of one run and the segments they share: starting them (the same
//! executable as `vr-stream stage NAME`), waiting until each is ready, watching them while
//! the stream runs (exit, heartbeat, restart after a backoff, [`super::restart`]), and
//! stopping them all. What to do about a death is [`restart::Restarts`]'s decision; this
//! module carries it out and says it on stderr.

use super::restart;
use super::{OpenPipe, READY_TIMEOUT, RunOptions, STOP_GRACE, policy_name, status_text};
use crate::config::Config;
use crate::rt;
use crate::shm::bitstream::BitstreamQueue;
use crate::shm::control::{Control, StageState, StreamInfo};
use crate::shm::frame_ring::FrameRing;
use crate::source::{self, SourceFormat};
use crate::stage::{self, StageKind, StagePlan};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The shared-memory segments of a run: the control/stats segment, the frame ring, the
/// bitstream queue and (with the viewer page) the web queue. Dropping them unlinks them.
pub(super) struct Segments {
    /// Control and stats ([`Control`]).
    pub ctl: Control,
    ring: FrameRing,
    /// Encoder → network stage.
    pub queue: BitstreamQueue,
    web_queue: Option<BitstreamQueue>,
}

impl Segments {
    /// Creates the segments of instance `opts.instance` sized for `fmt` and `cfg`, and
    /// writes the stream description `dashboard` shows.
    ///
    /// Errors: a segment that exists and is in use by a live run, or `/dev/shm` refusing.
    pub fn create(opts: &RunOptions, cfg: &Config, fmt: &SourceFormat) -> Result<Segments> {
        let (ctl_name, ring_name, bits_name) = stage::segment_names(&opts.instance);
        let ctl = Control::create(&ctl_name, &stage::stats_name(&opts.instance))?;
        ctl.prefault();
        let dest = match cfg.stream.ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(a)) => format!("[{a}]:{}", cfg.stream.port),
            _ => format!("{}:{}", cfg.stream.ip, cfg.stream.port),
        };
        ctl.stats().set_info(&StreamInfo {
            destination: dest,
            width: fmt.width,
            height: fmt.height,
            fps: (fmt.fps_num / fmt.fps_den.max(1)),
            bitrate_kbps: cfg.encoder.bitrate_kbps,
            profile: opts.profile.clone().unwrap_or_default(),
            target_ms: cfg.stats.target_ms,
            supervisor_pid: std::process::id(),
            started_ns: crate::rt::monotonic_ns(),
        });
        let ring = FrameRing::create(&ring_name, stage::ring_geometry(fmt, cfg.detect.enabled))?;
        let kbps = cfg.encoder.bitrate_kbps;
        let queue = BitstreamQueue::create(&bits_name, stage::queue_capacity(kbps))?;
        let web_queue = if cfg.web.enabled {
            let name = stage::web_queue_name(&opts.instance);
            Some(BitstreamQueue::create(
                &name,
                stage::web_queue_capacity(kbps),
            )?)
        } else {
            None
        };
        Ok(Segments {
            ctl,
            ring,
            queue,
            web_queue,
        })
    }

    /// Asks every stage to stop and wakes any that waits on a ring or queue.
    fn request_stop(&self) {
        self.ctl.request_stop();
        self.ring.wake_all();
        self.queue.wake_all();
        if let Some(q) = &self.web_queue {
            q.wake_all();
        }
    }
}

/// How a stage process is started: this executable as `stage NAME`, with the run's
/// instance, source geometry and stage configuration (TOML in [`stage::CONFIG_ENV`]).
pub(super) struct Launcher<'a> {
    exe: PathBuf,
    instance: &'a str,
    geometry: String,
    cfg_text: String,
    /// The pipe source, handed to every camera stage (also after a restart).
    pipe: Option<&'a OpenPipe>,
    /// The supervisor already warned about missing realtime privileges.
    rt_warned: bool,
    /// The run's session key for the web stage (hex; empty without the viewer page).
    web_key: String,
}

impl<'a> Launcher<'a> {
    /// A launcher for the stages of `opts`' instance with `stage_cfg`.
    ///
    /// Errors: the path of this executable cannot be found.
    pub fn new(
        opts: &'a RunOptions,
        stage_cfg: &Config,
        fmt: &SourceFormat,
        pipe: Option<&'a OpenPipe>,
        rt_warned: bool,
        web_key: String,
    ) -> Result<Launcher<'a>> {
        Ok(Launcher {
            exe: std::env::current_exe().context("cannot find the vr-stream executable")?,
            instance: &opts.instance,
            geometry: source::format_geometry(fmt),
            cfg_text: stage_cfg.to_toml(),
            pipe,
            rt_warned,
            web_key,
        })
    }

    /// Starts the process of stage `kind`.
    fn spawn(&self, kind: StageKind) -> std::io::Result<Child> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["stage", kind.name(), "--instance", self.instance])
            .args(["--geometry", &self.geometry])
            .env(stage::CONFIG_ENV, &self.cfg_text)
            .env(stage::SUPERVISOR_PID_ENV, std::process::id().to_string())
            .stdin(Stdio::null());
        if let (StageKind::Camera, Some((f, _, header_len))) = (kind, self.pipe) {
            // The pipe, opened once and past its header, is the camera stage's input.
            cmd.stdin(Stdio::from(f.try_clone()?)).env(
                source::pipe::STDIN_ENV,
                format!("{},{header_len}", self.geometry),
            );
        }
        if self.rt_warned {
            cmd.env(stage::RT_WARNED_ENV, "1");
        }
        if kind == StageKind::Web {
            cmd.env(crate::web::stage::KEY_ENV, &self.web_key);
        }
        cmd.spawn()
    }
}

/// One stage process and what the supervisor knows about it.
struct StageProcess {
    kind: StageKind,
    child: Child,
    exited: Option<ExitStatus>,
    /// When a restart is due (after a backoff).
    restart_at: Option<Instant>,
    /// Its restart count and backoff ([`restart`]).
    restarts: restart::Restarts,
    /// Given up on without ending the stream (an optional stage: detect, web).
    abandoned: bool,
    /// Its heartbeat, watched for a hang.
    hang: restart::HangWatch,
}

/// How the stages stand after [`Stages::tick`].
pub(super) enum Tick {
    /// Streaming (or restarts pending).
    Running,
    /// Every stage ended cleanly or was abandoned: the end of the stream.
    Done,
    /// A required stage was given up on, or could not be restarted: why.
    Failed(String),
}

/// The stage processes of a run.
pub(super) struct Stages {
    list: Vec<StageProcess>,
}

impl Stages {
    /// Starts the `active` stages, each with restart `policy`.
    ///
    /// Errors: a process that cannot be started (the ones already started are stopped).
    pub fn start(
        active: &[StageKind],
        launcher: &Launcher,
        policy: restart::Policy,
        segs: &Segments,
    ) -> Result<Stages> {
        let mut all = Stages { list: vec![] };
        for &kind in active {
            match launcher.spawn(kind) {
                Ok(child) => all.list.push(StageProcess {
                    kind,
                    child,
                    exited: None,
                    restart_at: None,
                    restarts: restart::Restarts::new(policy, kind.optional(), Instant::now()),
                    abandoned: false,
                    hang: restart::HangWatch::default(),
                }),
                Err(e) => {
                    all.stop(segs);
                    bail!("stage {} failed to start: {e}", kind.name());
                }
            }
        }
        Ok(all)
    }

    /// Asks every stage to stop, waits [`STOP_GRACE`] for them and kills the rest.
    pub fn stop(&mut self, segs: &Segments) {
        segs.request_stop();
        let deadline = Instant::now() + STOP_GRACE;
        for s in self.list.iter_mut() {
            while s.exited.is_none() {
                match s.child.try_wait() {
                    Ok(Some(st)) => s.exited = Some(st),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    _ => {
                        let _ = s.child.kill();
                        s.exited = s.child.wait().ok();
                        break;
                    }
                }
            }
        }
    }

    /// Waits until every stage reports ready; an optional stage that fails to start is
    /// abandoned with a note. `Ok(false)`: a stop signal came first.
    ///
    /// Errors: a required stage failed or exited while starting (its reason), or not all
    /// were ready within [`READY_TIMEOUT`]. The caller stops the stages.
    pub fn wait_ready(&mut self, ctl: &Control) -> Result<bool> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut all = true;
            for s in self.list.iter_mut().filter(|s| !s.abandoned) {
                all &= s.ready(ctl)?;
            }
            if all {
                return Ok(true);
            }
            if rt::stop_signal() != 0 {
                return Ok(false);
            }
            if Instant::now() > deadline {
                bail!("stages not ready within {} s", READY_TIMEOUT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// One line per running stage on stderr: its pid, where and how it runs against its
    /// configured placement, its locked memory, and the encoder's threads.
    pub fn print_placement(&self, cfg: &Config, ctl: &Control) {
        for s in self.list.iter().filter(|s| !s.abandoned) {
            let slot = ctl.stage(s.kind);
            let p = s.kind.placement(cfg);
            let cpu = slot.cpu.load(Ordering::Relaxed);
            let pid = s.child.id();
            let running_on = if cpu >= 0 {
                format!("cpu {cpu}")
            } else {
                format!(
                    "cpus {}",
                    rt::cpu_list_text(&rt::read_state(pid as i32).cpus)
                )
            };
            let several = matches!(s.kind, StageKind::Encode | StageKind::Web);
            let threads = if s.kind == StageKind::Encode {
                let t = rt::read_threads(pid as i32);
                format!("; {}", super::threads_text(&t, &stage::encoder_config(cfg)))
            } else {
                String::new()
            };
            eprintln!(
                "vr-stream: stage {} pid {pid} {running_on} policy {} priority {} (configured cpu{} {} priority {}) VmLck {} kB{threads}",
                s.kind.name(),
                policy_name(slot.policy.load(Ordering::Relaxed)),
                slot.priority.load(Ordering::Relaxed),
                if several { "s" } else { "" },
                p.configured,
                p.priority,
                slot.vmlck_kb.load(Ordering::Relaxed),
            );
        }
    }

    /// Looks at every stage once at `now`: notes exits (and decides restarts), kills a
    /// hung stage, starts the restarts that are due.
    pub fn tick(&mut self, ctl: &Control, launcher: &Launcher, cfg: &Config, now: Instant) -> Tick {
        let mut failure: Option<String> = None;
        let mut done = 0;
        for s in self.list.iter_mut() {
            let slot = ctl.stage(s.kind);
            if s.exited.is_none() {
                match s.child.try_wait() {
                    Ok(Some(st)) => {
                        s.exited = Some(st);
                        if let Some(why) = s.on_exit(st, ctl, cfg, now) {
                            failure.get_or_insert(why);
                        }
                    }
                    _ => s.kill_if_hung(ctl, cfg),
                }
            }
            if let Some(at) = s.restart_at {
                if now >= at && failure.is_none() {
                    slot.reset();
                    slot.restarts.fetch_add(1, Ordering::Relaxed);
                    match launcher.spawn(s.kind) {
                        Ok(child) => {
                            s.child = child;
                            s.exited = None;
                            s.restart_at = None;
                            s.hang = restart::HangWatch::default();
                            s.restarts.on_restarted(Instant::now());
                        }
                        Err(e) => {
                            let name = s.kind.name();
                            failure = Some(format!("stage {name} could not be restarted: {e}"))
                        }
                    }
                }
            } else if s.abandoned
                || s.exited
                    .is_some_and(|st| st.success() && slot.state() != StageState::Failed)
            {
                done += 1;
            }
        }
        match failure {
            Some(why) => Tick::Failed(why),
            None if done == self.list.len() => Tick::Done,
            None => Tick::Running,
        }
    }
}

impl StageProcess {
    /// Whether this stage is ready; an optional stage that failed is abandoned (and counts
    /// as ready). Errors: a required stage failed or exited.
    fn ready(&mut self, ctl: &Control) -> Result<bool> {
        let slot = ctl.stage(self.kind);
        let name = self.kind.name();
        // An optional stage (detection, the viewer page) that cannot start costs the
        // stream nothing: say so and go on without it.
        let failed =
            slot.state() == StageState::Failed || matches!(self.child.try_wait(), Ok(Some(_)));
        if failed && self.kind.optional() {
            let st = self.child.wait().ok();
            self.exited = st;
            let msg = slot
                .error()
                .or_else(|| st.map(|st| status_text(&st)))
                .unwrap_or_default();
            self.abandoned = true;
            let without = self.kind.feature();
            eprintln!(
                "vr-stream: stage {name} failed to start ({msg}); streaming without {without}"
            );
            return Ok(true);
        }
        match slot.state() {
            StageState::Ready => return Ok(true),
            StageState::Failed => {
                let msg = slot.error().unwrap_or_default();
                bail!("stage {name} failed to start: {msg}");
            }
            _ => {}
        }
        if let Ok(Some(st)) = self.child.try_wait() {
            self.exited = Some(st);
            let msg = slot.error().unwrap_or_else(|| status_text(&st));
            bail!("stage {name} failed to start: {msg}");
        }
        Ok(false)
    }

    /// The process ended with `st` at `now`: nothing to do when it ended cleanly;
    /// otherwise a restart is scheduled, or the stage abandoned (optional), or the stream
    /// must end: then why.
    fn on_exit(
        &mut self,
        st: ExitStatus,
        ctl: &Control,
        cfg: &Config,
        now: Instant,
    ) -> Option<String> {
        let slot = ctl.stage(self.kind);
        if st.success() && slot.state() != StageState::Failed {
            return None;
        }
        let msg = slot.error().unwrap_or_else(|| status_text(&st));
        let name = self.kind.name();
        if self.kind == StageKind::Web {
            // Its WebRTC peers' bitrate target dies with it.
            ctl.set_web_target(None);
        }
        match self.restarts.on_failure(now, slot.is_permanent()) {
            restart::Decision::Abandon => {
                // Detection and the viewer page are optional: the video goes on.
                self.abandoned = true;
                let without = self.kind.feature();
                eprintln!("vr-stream: stage {name} failed ({msg}); streaming on without {without}");
                None
            }
            restart::Decision::GiveUp { times } if times > 1 => Some(format!(
                "stage {name} failed {times} times in a row, last: {msg}"
            )),
            restart::Decision::GiveUp { .. } => Some(format!("stage {name} failed: {msg}")),
            restart::Decision::Restart { at, delay, nth } => {
                self.restart_at = Some(at);
                eprintln!(
                    "vr-stream: stage {name} died ({msg}); restarting in {} ms (restart {nth} of at most {} in a row)",
                    delay.as_millis(),
                    cfg.supervise.max_restarts
                );
                None
            }
        }
    }

    /// Kills the stage when it is ready but hung: no heartbeat for
    /// `supervise.heartbeat_timeout_ms` (0: never), still so on a later look
    /// ([`restart::HangWatch`]). [`Stages::tick`] then sees the exit and restarts it.
    fn kill_if_hung(&mut self, ctl: &Control, cfg: &Config) {
        let slot = ctl.stage(self.kind);
        let timeout_ms = cfg.supervise.heartbeat_timeout_ms as u64;
        if timeout_ms == 0 || slot.state() != StageState::Ready {
            return;
        }
        let beat = slot.heartbeat_ns.load(Ordering::Relaxed);
        let now = rt::monotonic_ns();
        if self.hang.look(beat, now, Duration::from_millis(timeout_ms)) {
            let name = self.kind.name();
            let age_ms = now.saturating_sub(beat) / 1_000_000;
            eprintln!("vr-stream: stage {name} stopped beating ({age_ms} ms): killing it");
            let _ = self.child.kill();
        }
    }
}
