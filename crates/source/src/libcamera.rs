//! CSI cameras through libcamera (cargo feature `libcamera`; needs libcamera ≥ 0.4, as on
//! Raspberry Pi OS). `--source libcamera:0` (index) or `libcamera:ID` (the id libcamera
//! lists, e.g. `/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a`).
//!
//! A capture thread owns the camera manager and the acquired camera (their lifetimes are
//! tied together) and requeues requests; completed requests travel to [`LibcameraSource`]
//! through a channel, which copies the frame once out of the dmabuf mapping into the ring
//! slot (`dst`) and sends the request back. Configuration: YUV420 at the configured size
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
//! Only compiled on the development machine (Debian 12 has libcamera 0.0.3): CI runs
//! `cargo check --features libcamera` against Debian trixie's libcamera 0.4 headers.

use super::camera_format::{self, CameraLayout, FastCamera, Offered};
use super::v4l2::{i420_planes_copy, nv12_planes_to_i420};
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
use std::time::{Duration, Instant};

/// DRM fourcc `YU12` (I420, three planes).
const YUV420: PixelFormat = PixelFormat::new(u32::from_le_bytes(*b"YU12"), 0);

/// What the capture thread reports once it has configured the camera.
struct Started {
    stream: Stream,
    stride: usize,
    layout: CameraLayout,
}

/// A libcamera camera as a [`FrameSource`].
pub struct LibcameraSource {
    device: String,
    format: SourceFormat,
    stride: usize,
    layout: CameraLayout,
    stream: Stream,
    completed: Receiver<Request>,
    /// Requests back to the capture thread, with whether to pace their queueing.
    requeue: Sender<(Request, bool)>,
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
        let (started_tx, started_rx) = mpsc::sync_channel::<Result<Started, String>>(1);
        let (done_tx, completed) = mpsc::channel::<Request>();
        let (requeue, requeue_rx) = mpsc::channel::<(Request, bool)>();
        let which = which.to_string();
        let frame_us = 1_000_000i64 / fps.max(1) as i64;
        std::thread::Builder::new()
            .name("libcamera".into())
            .spawn(move || {
                capture_thread(
                    &which,
                    width,
                    height,
                    frame_us,
                    buffers,
                    exposure_us,
                    started_tx,
                    done_tx,
                    requeue_rx,
                )
            })
            .map_err(|e| err(&device, format!("cannot start the capture thread: {e}")))?;
        let started = match started_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(err(&device, e)),
            Err(_) => return Err(err(&device, "the camera did not start within 10 s")),
        };
        Ok(LibcameraSource {
            device,
            format: SourceFormat {
                width,
                height,
                fps_num: fps,
                fps_den: 1,
            },
            stride: started.stride,
            layout: started.layout,
            stream: started.stream,
            completed,
            requeue,
            fast: FastCamera::new(1_000_000_000 / fps.max(1) as u64),
            next_id: 0,
            boot_to_mono: boot_to_mono_offset(),
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn capture_thread(
    which: &str,
    width: u32,
    height: u32,
    frame_us: i64,
    buffers: u32,
    exposure_us: u32,
    started: SyncSender<Result<Started, String>>,
    done: Sender<Request>,
    requeue: Receiver<(Request, bool)>,
) {
    let fail = |m: String| {
        let _ = started.send(Err(m));
    };
    let mgr = match CameraManager::new() {
        Ok(m) => m,
        Err(e) => return fail(format!("libcamera camera manager: {e}")),
    };
    let cameras = mgr.cameras();
    let cam = match which.parse::<usize>() {
        Ok(i) => cameras.get(i),
        Err(_) => mgr.get(which),
    };
    let Some(cam) = cam else {
        return fail(format!(
            "no such camera ({} camera(s) found)",
            cameras.len()
        ));
    };
    let mut cam = match cam.acquire() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot acquire the camera (in use?): {e}")),
    };
    let Some(mut cfgs) = cam.generate_configuration(&[StreamRole::VideoRecording]) else {
        return fail("no video configuration".into());
    };
    {
        let Some(mut c) = cfgs.get_mut(0) else {
            return fail("no stream configuration".into());
        };
        c.set_pixel_format(YUV420);
        c.set_size(Size { width, height });
        c.set_buffer_count(buffers);
    }
    let status = cfgs.validate();
    let (stride, stream, layout) = {
        let Some(c) = cfgs.get(0) else {
            return fail("no stream configuration".into());
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
            return fail(format!(
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
        match camera_format::accept((width, height), got, &offers) {
            Ok(layout) => (c.get_stride() as usize, c.stream(), layout),
            Err(e) => return fail(e),
        }
    };
    if let Err(e) = cam.configure(&mut cfgs) {
        return fail(format!("configure: {e}"));
    }
    let Some(stream) = stream.or_else(|| cfgs.get(0).and_then(|c| c.stream())) else {
        return fail("no stream after configure".into());
    };
    let mut alloc = FrameBufferAllocator::new(&cam);
    let bufs = match alloc.alloc(&stream) {
        Ok(b) => b,
        Err(e) => return fail(format!("buffer allocation: {e}")),
    };
    let mut reqs = Vec::new();
    for (i, b) in bufs.into_iter().enumerate() {
        let mapped = match MemoryMappedFrameBuffer::new(b) {
            Ok(m) => m,
            Err(e) => return fail(format!("mapping buffer {i}: {e:?}")),
        };
        let Some(mut r) = cam.create_request(Some(i as u64)) else {
            return fail("cannot create a request".into());
        };
        if let Err(e) = r.add_buffer(&stream, mapped) {
            return fail(format!("add buffer {i}: {e}"));
        }
        reqs.push(r);
    }
    let mut ctl = ControlList::new();
    let mut set = || -> Result<(), String> {
        ctl.set(controls::FrameDurationLimits([frame_us, frame_us]))
            .map_err(|e| format!("FrameDurationLimits: {e:?}"))?;
        if exposure_us > 0 {
            ctl.set(controls::AeEnable(false))
                .map_err(|e| format!("AeEnable: {e:?}"))?;
            ctl.set(controls::ExposureTime(exposure_us as i32))
                .map_err(|e| format!("ExposureTime: {e:?}"))?;
        }
        Ok(())
    };
    if let Err(e) = set() {
        return fail(e);
    }
    cam.on_request_completed(move |req| {
        let _ = done.send(req);
    });
    if let Err(e) = cam.start(Some(&ctl)) {
        return fail(format!("start: {e}"));
    }
    for r in reqs {
        if let Err((_, e)) = cam.queue_request(r) {
            let _ = cam.stop();
            return fail(format!("queue request: {e}"));
        }
    }
    let ready = Started {
        stream,
        stride,
        layout,
    };
    if started.send(Ok(ready)).is_err() {
        let _ = cam.stop();
        return;
    }
    // Requeue what the source hands back until it is dropped; for a camera faster than
    // asked (FastCamera), no closer than one frame interval.
    let interval = Duration::from_micros(frame_us.max(1) as u64);
    let mut last_queued: Option<Instant> = None;
    while let Ok((r, pace)) = requeue.recv() {
        if let Some(due) = last_queued.map(|t| t + interval).filter(|_| pace) {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        if cam.queue_request(r).is_err() {
            break;
        }
        last_queued = Some(Instant::now());
    }
    let _ = cam.stop();
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
            match self.layout {
                CameraLayout::I420 => i420_planes_copy(&planes, self.stride, w, h, dst),
                CameraLayout::Nv12 => nv12_planes_to_i420(&planes, self.stride, w, h, dst),
            }
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
        let _ = self.requeue.send((req, self.fast.pacing()));
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
