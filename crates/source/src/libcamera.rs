//! CSI cameras through libcamera (cargo feature `libcamera`; needs libcamera ≥ 0.4, as on
//! Raspberry Pi OS). `--source libcamera:0` (index) or `libcamera:ID` (the id libcamera
//! lists, e.g. `/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a`).
//!
//! One thread per process owns libcamera's camera manager (libcamera allows one) and the
//! cameras acquired from it (their lifetimes are tied together; two with `--stereo`) and
//! queues their requests; completed requests travel to each [`LibcameraSource`] through a
//! channel, which copies the frame once out of the dmabuf mapping into the ring slot
//! (`dst`) and sends the request back. Configuration: YUV420 at the configured size
//! (or NV12, converted to I420 in that copy, where the pipeline handler only gives NV12:
//! [`crate::camera_format`]), `source.buffers` buffers (2 in `ultra_low`), `FrameDurationLimits` fixed at 1/fps and,
//! with `source.exposure_us`, auto exposure off and a fixed `ExposureTime` (the low-latency
//! controls of the original design's `ultra_low`); a camera that does not honour the limits
//! and delivers faster gets its requests queued one frame interval apart
//! ([`camera_format::FastCamera`]). The capture time is the request's
//! `SensorTimestamp` (start of exposure of the first line, CLOCK_BOOTTIME ns per libcamera's
//! control documentation), moved to CLOCK_MONOTONIC with the current offset between the
//! two clocks.
//!
//! Run in CI against libcamera 0.7's virtual camera in a Debian trixie root
//! (tests/libcamera.rs; Debian 12 has libcamera 0.0.3), not against Raspberry Pi's
//! libcamera and its PiSP pipeline handler.

use super::camera_format::{self, CameraLayout, FastCamera, Offered};
use super::v4l2::planes_to_i420;
use super::{Captured, FrameSource, SourceError, SourceFormat};
use libcamera::camera::CameraConfigurationStatus;
use libcamera::camera_manager::CameraManager;
use libcamera::control::ControlList;
use libcamera::controls;
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::framebuffer_map::MemoryMappedFrameBuffer;
use libcamera::geometry::Size;
use libcamera::pixel_format::PixelFormat;
use libcamera::request::{Request, ReuseFlag};
use libcamera::stream::{Stream, StreamRole};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// DRM fourcc `YU12` (I420, three planes).
const YUV420: PixelFormat = PixelFormat::new(u32::from_le_bytes(*b"YU12"), 0);

/// A camera the manager thread has configured and started, as the source needs it.
struct Opened {
    id: usize,
    stream: Stream,
    stride: usize,
    layout: CameraLayout,
}

/// What a [`LibcameraSource`] asks of the manager thread.
enum Cmd {
    /// Acquire, configure and start a camera; completed requests go to `done`.
    Open {
        which: String,
        width: u32,
        height: u32,
        frame_us: i64,
        buffers: u32,
        exposure_us: u32,
        done: Sender<Request>,
        reply: SyncSender<Result<Opened, String>>,
    },
    /// Queue a request again; with `pace`, no closer than a frame interval after the
    /// camera's previous one ([`FastCamera`]).
    Requeue { id: usize, req: Request, pace: bool },
    /// Stop and release a camera; `()` on `done` once it is.
    Close { id: usize, done: SyncSender<()> },
}

/// The manager thread's command channel, shared by the sources of the process: the thread
/// ends (and with it the CameraManager) when the last one is gone.
struct Handle {
    tx: Sender<Cmd>,
}

/// The manager thread of the process, while a source uses it. libcamera allows one
/// CameraManager per process, so every source of the process (two for `--stereo` with two
/// CSI cameras) goes through one thread that owns it and the cameras acquired from it
/// (their lifetimes are tied to it). As with one thread per source before, the manager
/// lives only while a source does: a process that probed a camera (the supervisor) and
/// dropped it holds no libcamera thread afterwards.
struct Slot {
    handle: Weak<Handle>,
    thread: Option<JoinHandle<()>>,
}

static MANAGER: Mutex<Slot> = Mutex::new(Slot {
    handle: Weak::new(),
    thread: None,
});

/// The manager thread's handle, starting the thread when no source holds one.
fn manager() -> Result<Arc<Handle>, String> {
    let mut m = MANAGER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = m.handle.upgrade() {
        return Ok(h);
    }
    // The previous manager must be gone before another CameraManager is made.
    if let Some(t) = m.thread.take() {
        let _ = t.join();
    }
    let (tx, rx) = mpsc::channel::<Cmd>();
    let thread = std::thread::Builder::new()
        .name("libcamera".into())
        .spawn(move || manager_thread(rx))
        .map_err(|e| format!("cannot start the libcamera thread: {e}"))?;
    let h = Arc::new(Handle { tx });
    m.handle = Arc::downgrade(&h);
    m.thread = Some(thread);
    Ok(h)
}

/// Drops a source's handle; when it was the last one, waits for the manager thread to end
/// (cameras stopped and released, CameraManager destroyed), so that the process never
/// exits, nor makes another manager, while libcamera is being torn down.
fn release(h: Arc<Handle>) {
    let mut m = MANAGER.lock().unwrap_or_else(|e| e.into_inner());
    drop(h);
    if m.handle.upgrade().is_none()
        && let Some(t) = m.thread.take()
    {
        let _ = t.join();
    }
}

/// A libcamera camera as a [`FrameSource`].
pub struct LibcameraSource {
    device: String,
    format: SourceFormat,
    stride: usize,
    layout: CameraLayout,
    stream: Stream,
    completed: Receiver<Request>,
    /// The manager thread, which queues the requests again (taken in `drop`).
    manager: Option<Arc<Handle>>,
    /// This camera's index in the manager thread.
    id: usize,
    fast: FastCamera,
    next_id: u64,
    boot_to_mono: i64,
}

fn err(device: &str, message: impl Into<String>) -> SourceError {
    SourceError::Device {
        device: device.to_string(),
        message: message.into(),
    }
}

/// CLOCK_MONOTONIC − CLOCK_BOOTTIME now, ns (≤ 0: time spent suspended).
fn boot_to_mono_offset() -> i64 {
    use nix::time::{ClockId, clock_gettime};
    // Both clocks exist on every Linux this runs on: an error reads as 0.
    let read =
        |clock| clock_gettime(clock).map_or(0, |t| std::time::Duration::from(t).as_nanos() as i64);
    read(ClockId::CLOCK_MONOTONIC) - read(ClockId::CLOCK_BOOTTIME)
}

impl LibcameraSource {
    /// Opens camera `which` (index or id) at `width`×`height`, `fps`, with `buffers` buffers
    /// and, if `exposure_us` > 0, a fixed exposure.
    ///
    /// Errors: [`SourceError::Device`] naming the camera: none found, cannot acquire, the
    /// configuration was refused, or adjusted to another size or to a format other than
    /// YUV420 and NV12 ([`camera_format::accept`]).
    pub fn open(
        which: &str,
        width: u32,
        height: u32,
        fps: u32,
        buffers: u32,
        exposure_us: u32,
    ) -> Result<LibcameraSource, SourceError> {
        let device = format!("libcamera:{which}");
        let manager = manager().map_err(|e| err(&device, e))?;
        let (done, completed) = mpsc::channel::<Request>();
        let (reply, answer) = mpsc::sync_channel::<Result<Opened, String>>(1);
        let open = Cmd::Open {
            which: which.to_string(),
            width,
            height,
            frame_us: 1_000_000i64 / fps.max(1) as i64,
            buffers,
            exposure_us,
            done,
            reply,
        };
        let opened = if manager.tx.send(open).is_err() {
            Err("the libcamera thread ended".to_string())
        } else {
            match answer.recv_timeout(Duration::from_secs(10)) {
                Ok(r) => r,
                Err(_) => Err("the camera did not start within 10 s".to_string()),
            }
        };
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                release(manager);
                return Err(err(&device, e));
            }
        };
        Ok(LibcameraSource {
            device,
            format: SourceFormat {
                width,
                height,
                fps_num: fps,
                fps_den: 1,
            },
            stride: opened.stride,
            layout: opened.layout,
            stream: opened.stream,
            completed,
            manager: Some(manager),
            id: opened.id,
            fast: FastCamera::new(1_000_000_000 / fps.max(1) as u64),
            next_id: 0,
            boot_to_mono: boot_to_mono_offset(),
        })
    }
}

/// A started camera in the manager thread.
struct Running<'m> {
    cam: libcamera::camera::ActiveCamera<'m>,
    interval: Duration,
    /// The earliest time a paced request may be queued: one interval after the one queued
    /// (or scheduled) before it.
    next_free: Instant,
}

impl Running<'_> {
    fn queue(&mut self, req: Request) {
        // A camera that refuses a request (stopping, gone) delivers no more frames: the
        // source then reports "no frame for 2 s".
        let _ = self.cam.queue_request(req);
    }

    /// When to queue a request handed back now: at once, or with `pace` no closer than one
    /// interval after the previous one, scheduled or queued (requests handed back together
    /// are spread out, not queued together when their time comes).
    fn due(&mut self, pace: bool, now: Instant) -> Instant {
        let due = if pace { self.next_free.max(now) } else { now };
        self.next_free = due + self.interval;
        due
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.cam.stop();
    }
}

/// Serves [`Cmd`]s until the last [`Handle`] is gone.
fn manager_thread(cmds: Receiver<Cmd>) {
    let mgr = match CameraManager::new() {
        Ok(m) => m,
        Err(e) => {
            // Every open fails with the reason; nothing else can be asked.
            for c in cmds {
                if let Cmd::Open { reply, .. } = c {
                    let _ = reply.send(Err(format!("libcamera camera manager: {e}")));
                }
            }
            return;
        }
    };
    let mut cams: Vec<Option<Running>> = Vec::new();
    // Paced requeues waiting for their time: (due, camera, request).
    let mut waiting: Vec<(Instant, usize, Request)> = Vec::new();
    loop {
        let cmd = match waiting.iter().map(|w| w.0).min() {
            Some(due) => match cmds.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match cmds.recv() {
                Ok(c) => Some(c),
                Err(_) => break,
            },
        };
        match cmd {
            Some(Cmd::Open {
                which,
                width,
                height,
                frame_us,
                buffers,
                exposure_us,
                done,
                reply,
            }) => {
                let id = cams.len();
                let asked = Asked {
                    which: &which,
                    width,
                    height,
                    frame_us,
                    buffers,
                    exposure_us,
                };
                let answer = start(&mgr, &asked, done).map(|(running, stream, stride, layout)| {
                    cams.push(Some(running));
                    Opened {
                        id,
                        stream,
                        stride,
                        layout,
                    }
                });
                let _ = reply.send(answer);
            }
            Some(Cmd::Requeue { id, req, pace }) => {
                if let Some(Some(c)) = cams.get_mut(id) {
                    let now = Instant::now();
                    let due = c.due(pace, now);
                    if due > now {
                        waiting.push((due, id, req));
                    } else {
                        c.queue(req);
                    }
                }
            }
            Some(Cmd::Close { id, done }) => {
                waiting.retain(|w| w.1 != id);
                if let Some(slot) = cams.get_mut(id) {
                    *slot = None;
                }
                let _ = done.send(());
            }
            None => {}
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|w| w.0 <= now);
        waiting = later;
        for (_, id, req) in due {
            if let Some(Some(c)) = cams.get_mut(id) {
                c.queue(req);
            }
        }
    }
}

/// What a source asked for: camera `which` (index or id) at `width`×`height`, frames
/// `frame_us` µs apart, `buffers` buffers, a fixed exposure of `exposure_us` µs (0: auto).
struct Asked<'a> {
    which: &'a str,
    width: u32,
    height: u32,
    frame_us: i64,
    buffers: u32,
    exposure_us: u32,
}

/// Acquires the camera `a` names from `mgr`, configures it (YUV420 or NV12 at the size,
/// the buffers, the frame duration and exposure controls) and starts it with every request
/// queued: the running camera, its stream, row stride and layout.
///
/// Errors: a message naming what failed (the caller prefixes the camera).
fn start<'m>(
    mgr: &'m CameraManager,
    a: &Asked,
    done: Sender<Request>,
) -> Result<(Running<'m>, Stream, usize, CameraLayout), String> {
    let (width, height) = (a.width, a.height);
    let cameras = mgr.cameras();
    let cam = match a.which.parse::<usize>() {
        Ok(i) => cameras.get(i),
        Err(_) => mgr.get(a.which),
    };
    let Some(cam) = cam else {
        return Err(format!(
            "no such camera ({} camera(s) found)",
            cameras.len()
        ));
    };
    let mut cam = cam
        .acquire()
        .map_err(|e| format!("cannot acquire the camera (in use?): {e}"))?;
    let Some(mut cfgs) = cam.generate_configuration(&[StreamRole::VideoRecording]) else {
        return Err("no video configuration".into());
    };
    {
        let Some(mut c) = cfgs.get_mut(0) else {
            return Err("no stream configuration".into());
        };
        c.set_pixel_format(YUV420);
        c.set_size(Size { width, height });
        c.set_buffer_count(a.buffers);
    }
    let status = cfgs.validate();
    let (stride, stream, layout) = {
        let Some(c) = cfgs.get(0) else {
            return Err("no stream configuration".into());
        };
        let formats = c.formats();
        let offers: Vec<Offered> = formats
            .pixel_formats()
            .into_iter()
            .map(|pf| Offered {
                fourcc: pf.fourcc().to_le_bytes(),
                sizes: formats
                    .sizes(pf)
                    .iter()
                    .map(|s| (s.width, s.height))
                    .collect(),
            })
            .collect();
        if let CameraConfigurationStatus::Invalid = status {
            return Err(format!(
                "the configuration {} was refused; the camera offers {}",
                c.to_string_repr(),
                camera_format::offers_text(&offers)
            ));
        }
        let got = c.get_size();
        let got = (
            c.get_pixel_format().fourcc().to_le_bytes(),
            (got.width, got.height),
        );
        let layout = camera_format::accept((width, height), got, &offers)?;
        (c.get_stride() as usize, c.stream(), layout)
    };
    cam.configure(&mut cfgs)
        .map_err(|e| format!("configure: {e}"))?;
    let Some(stream) = stream.or_else(|| cfgs.get(0).and_then(|c| c.stream())) else {
        return Err("no stream after configure".into());
    };
    let mut alloc = FrameBufferAllocator::new(&cam);
    let bufs = alloc
        .alloc(&stream)
        .map_err(|e| format!("buffer allocation: {e}"))?;
    let mut reqs = Vec::new();
    for (i, b) in bufs.into_iter().enumerate() {
        let mapped =
            MemoryMappedFrameBuffer::new(b).map_err(|e| format!("mapping buffer {i}: {e:?}"))?;
        let Some(mut r) = cam.create_request(Some(i as u64)) else {
            return Err("cannot create a request".into());
        };
        r.add_buffer(&stream, mapped)
            .map_err(|e| format!("add buffer {i}: {e}"))?;
        reqs.push(r);
    }
    let mut ctl = ControlList::new();
    ctl.set(controls::FrameDurationLimits([a.frame_us, a.frame_us]))
        .map_err(|e| format!("FrameDurationLimits: {e:?}"))?;
    if a.exposure_us > 0 {
        ctl.set(controls::AeEnable(false))
            .map_err(|e| format!("AeEnable: {e:?}"))?;
        ctl.set(controls::ExposureTime(a.exposure_us as i32))
            .map_err(|e| format!("ExposureTime: {e:?}"))?;
    }
    cam.on_request_completed(move |req| {
        let _ = done.send(req);
    });
    cam.start(Some(&ctl)).map_err(|e| format!("start: {e}"))?;
    // From here on, dropping `running` stops the camera.
    let interval = Duration::from_micros(a.frame_us.max(1) as u64);
    let running = Running {
        cam,
        interval,
        next_free: Instant::now() + interval,
    };
    for r in reqs {
        if let Err((_, e)) = running.cam.queue_request(r) {
            return Err(format!("queue request: {e}"));
        }
    }
    Ok((running, stream, stride, layout))
}

impl Drop for LibcameraSource {
    fn drop(&mut self) {
        // Requests are freed while their camera and its manager live: the completed ones
        // now, and, once `completed` is gone, those the stopping camera completes (cancelled)
        // in libcamera's callback, whose send then fails. Then the camera is stopped and
        // released before the process may go on to exit (or make another manager).
        drop(std::mem::replace(&mut self.completed, mpsc::channel().1));
        if let Some(h) = self.manager.take() {
            let (done, stopped) = mpsc::sync_channel(1);
            if h.tx.send(Cmd::Close { id: self.id, done }).is_ok() {
                let _ = stopped.recv_timeout(Duration::from_secs(5));
            }
            release(h);
        }
    }
}

impl FrameSource for LibcameraSource {
    fn format(&self) -> SourceFormat {
        self.format
    }

    fn next_frame(&mut self, dst: &mut [u8]) -> Result<Option<Captured>, SourceError> {
        let mut req = match self.completed.recv_timeout(Duration::from_secs(2)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => return Err(err(&self.device, "no frame for 2 s")),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(err(&self.device, "the capture thread ended"));
            }
        };
        let ts = req
            .metadata()
            .get::<controls::SensorTimestamp>()
            .map(|t| t.0)
            .ok();
        let (w, h) = (self.format.width as usize, self.format.height as usize);
        let copied = {
            let Some(fb) = req.buffer::<MemoryMappedFrameBuffer<FrameBuffer>>(&self.stream) else {
                return Err(err(&self.device, "a completed request without our buffer"));
            };
            let planes = fb.data();
            planes_to_i420(self.layout, &planes, self.stride, w, h, dst)
        };
        if let Some(t) = ts
            && self.fast.observe(t.max(0) as u64)
        {
            eprintln!(
                "vr-stream: camera {} delivers frames faster than the {} fps asked for (it does not honour FrameDurationLimits): its requests are now queued at {} fps",
                self.device, self.format.fps_num, self.format.fps_num
            );
        }
        req.reuse(ReuseFlag::REUSE_BUFFERS);
        let Some(mgr) = self.manager.as_ref() else {
            return Err(err(&self.device, "the camera was closed"));
        };
        let _ = mgr.tx.send(Cmd::Requeue {
            id: self.id,
            req,
            pace: self.fast.pacing(),
        });
        if !copied {
            return Err(err(
                &self.device,
                format!(
                    "frame smaller than {} {w}x{h} with stride {}",
                    camera_format::fourcc_text(self.layout.fourcc()),
                    self.stride
                ),
            ));
        }
        let capture_ns = match ts {
            Some(t) => (t + self.boot_to_mono).max(0) as u64,
            None => vr_sys::time::monotonic_ns(),
        };
        Ok(Some(Captured::numbered(&mut self.next_id, capture_ns)))
    }
}
