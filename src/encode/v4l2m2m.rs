//! The V4L2 memory-to-memory stateful H.264 encoder (feature `v4l2-m2m`): bcm2835-codec at
//! `/dev/video11` on the Raspberry Pi 4 / 3 / Zero 2, or any driver that follows the
//! stateful encoder interface (kernel doc `userspace-api/media/v4l/dev-encoder.rst`).
//!
//! Synchronous use of the two queues, so the [`VideoEncoder`] contract holds (one frame in,
//! its access unit out of the same call): the raw frame is copied into a mapped OUTPUT
//! buffer and queued, then CAPTURE buffers are dequeued (poll with a deadline) until one
//! carries the frame's slices ([`AuAssembler`]); each CAPTURE buffer is copied out and
//! queued again at once. Buffers are MMAP, mapped once at open; a mapping is only touched
//! while its buffer is owned by us (before QBUF, after DQBUF), as `v4l2r::ioctl::qbuf`
//! requires. Every decision (controls, formats, layout) comes from the pure
//! [`super::m2m`] module. The ioctls go through `v4l2r`'s safe wrappers: no `unsafe` here.
//!
//! Only compiled on the development machine (no V4L2 encoder there); the error paths for a
//! missing or non-V4L2 device are tested.

use super::m2m::{
    self, AuAssembler, CtrlInfo, DeviceControls, DeviceFormat, Negotiated, OutputLayout, PlaneFmt,
};
use super::{EncodeError, Encoded, EncoderParams, VideoEncoder};
use crate::source::SourceFormat;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};
use v4l2r::bindings;
use v4l2r::ioctl::{
    self, Capabilities, Capability, FormatIterator, PlaneMapping, QBufPlane, QueryBuffer,
    V4l2Buffer,
};
use v4l2r::memory::MmapHandle;
use v4l2r::{Format, PixelFormat, PlaneLayout, QueueType};

/// OUTPUT (raw) buffers: one being encoded, one being filled.
const OUTPUT_BUFFERS: u32 = 2;
/// CAPTURE (coded) buffers: a header-only buffer and the frame can be in flight together.
const CAPTURE_BUFFERS: u32 = 4;

/// An open V4L2 M2M H.264 encoder.
pub struct V4l2M2mEncoder {
    fd: File,
    path: String,
    driver: String,
    out_q: QueueType,
    cap_q: QueueType,
    out_maps: Vec<Vec<PlaneMapping>>,
    out_free: Vec<u32>,
    cap_maps: Vec<PlaneMapping>,
    layout: OutputLayout,
    negotiated: Negotiated,
    asm: AuAssembler,
    format: SourceFormat,
    bitrate_kbps: u32,
    pts: i64,
    idr_next: bool,
    notes: Vec<String>,
}

fn dev_err(path: &str, message: impl Into<String>) -> EncodeError {
    EncodeError::Device {
        device: path.to_string(),
        message: message.into(),
    }
}

fn errno_text(op: &str, e: impl std::fmt::Display) -> String {
    format!("{op} failed: {e}")
}

impl V4l2M2mEncoder {
    /// Opens `params.enc.device`, negotiates formats and controls for `params`, allocates
    /// and maps the buffers and starts streaming.
    ///
    /// Errors: [`EncodeError::Device`] naming the device: it does not exist, cannot be
    /// opened (permissions: the `video` group), is not a V4L2 memory-to-memory device,
    /// does not produce H.264, or cannot encode the configured stream (the
    /// [`m2m::NegotiationError`] or [`m2m::FormatError`] text), or an ioctl failed.
    pub fn open(params: &EncoderParams) -> Result<V4l2M2mEncoder, EncodeError> {
        let path = params.enc.device.as_str();
        let f = params.format;
        let mut fd = open_device(path)?;
        let (driver, out_q, cap_q) = m2m_queues(&fd, path)?;
        // dev-encoder.rst "Initialization": the coded format on CAPTURE first, then the
        // raw format on OUTPUT, then the frame rate, then the controls.
        let layout = set_formats(&mut fd, path, params, out_q, cap_q)?;
        let mut notes: Vec<String> = set_frame_rate(&fd, path, out_q, f).into_iter().collect();
        let negotiated = set_controls(&fd, path, params)?;
        notes.extend(negotiated.notes.iter().map(|n| format!("{path}: {n}")));

        let out_maps = alloc_and_map(&fd, out_q, OUTPUT_BUFFERS).map_err(|e| dev_err(path, e))?;
        let cap_maps: Vec<PlaneMapping> = alloc_and_map(&fd, cap_q, CAPTURE_BUFFERS)
            .map_err(|e| dev_err(path, e))?
            .into_iter()
            .map(|mut planes| planes.remove(0))
            .collect();
        let enc = V4l2M2mEncoder {
            out_free: (0..out_maps.len() as u32).rev().collect(),
            fd,
            path: path.to_string(),
            driver,
            out_q,
            cap_q,
            out_maps,
            cap_maps,
            layout,
            negotiated,
            asm: AuAssembler::new(),
            format: f,
            bitrate_kbps: params.enc.bitrate_kbps,
            pts: 0,
            idr_next: true,
            notes,
        };
        for i in 0..enc.cap_maps.len() as u32 {
            enc.queue_capture(i)?;
        }
        for q in [enc.out_q, enc.cap_q] {
            ioctl::streamon(&enc.fd, q)
                .map_err(|e| dev_err(path, errno_text("VIDIOC_STREAMON", e)))?;
        }
        Ok(enc)
    }

    /// What the user should know about this device's settings (from the negotiation).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    fn queue_capture(&self, index: u32) -> Result<(), EncodeError> {
        let mut b = ioctl::QBuffer::<MmapHandle>::new(self.cap_q, index);
        b.planes.push(QBufPlane::new(0));
        ioctl::qbuf::<_, ()>(&self.fd, b)
            .map_err(|e| dev_err(&self.path, errno_text("VIDIOC_QBUF (CAPTURE)", e)))
    }

    /// Returns every OUTPUT buffer the driver has finished reading to the free list.
    fn reclaim_output(&mut self) -> Result<(), EncodeError> {
        loop {
            match ioctl::dqbuf::<V4l2Buffer>(&self.fd, self.out_q) {
                Ok(b) => self.out_free.push(b.index()),
                Err(ioctl::IoctlConvertError::IoctlError(ioctl::DqBufIoctlError::NotReady)) => {
                    return Ok(());
                }
                Err(e) => return Err(dev_err(&self.path, errno_text("VIDIOC_DQBUF (OUTPUT)", e))),
            }
        }
    }

    fn wait(&self, flags: PollFlags, deadline: Instant) -> Result<bool, EncodeError> {
        let left = deadline.saturating_duration_since(Instant::now());
        // At most 10 s: fits a u16 of milliseconds.
        let ms = PollTimeout::from(left.as_millis().min(10_000) as u16);
        let mut fds = [PollFd::new(self.fd.as_fd(), flags)];
        match poll(&mut fds, ms) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(dev_err(&self.path, errno_text("poll", e))),
        }
    }

    /// Queues one frame and returns once its access unit is assembled.
    fn encode_frame(&mut self, i420: &[u8], force_idr: bool) -> Result<m2m::AuInfo, EncodeError> {
        let f = self.format;
        EncodeError::check_frame(i420, f)?;
        // Generous: the hardware takes a few ms; a stuck driver must not hang the stage
        // forever (the supervisor's heartbeat would replace it anyway).
        let deadline = Instant::now()
            + Duration::from_nanos(f.frame_interval_ns() * 4)
            + Duration::from_millis(500);
        if force_idr || std::mem::take(&mut self.idr_next) {
            ioctl::s_ctrl(&self.fd, m2m::CID_FORCE_KEY_FRAME, 1)
                .map_err(|e| dev_err(&self.path, errno_text("force_key_frame", e)))?;
        }
        self.reclaim_output()?;
        while self.out_free.is_empty() {
            if !self.wait(PollFlags::POLLOUT, deadline)? && Instant::now() >= deadline {
                return Err(dev_err(
                    &self.path,
                    "no OUTPUT buffer came back from the encoder in time",
                ));
            }
            self.reclaim_output()?;
        }
        let index = self.out_free.pop().unwrap();
        {
            let maps = &mut self.out_maps[index as usize];
            let mut planes: Vec<&mut [u8]> = maps.iter_mut().map(|m| &mut m.data[..]).collect();
            m2m::copy_i420(&self.layout, i420, &mut planes)
                .map_err(|e| dev_err(&self.path, e.to_string()))?;
        }
        let pts = self.pts;
        self.pts += 1;
        let mut b = ioctl::QBuffer::<MmapHandle>::new(self.out_q, index).set_timestamp(
            (pts / 1_000_000) as libc::time_t,
            (pts % 1_000_000) as libc::suseconds_t,
        );
        for &used in &self.layout.bytesused {
            b.planes.push(QBufPlane::new(used));
        }
        ioctl::qbuf::<_, ()>(&self.fd, b)
            .map_err(|e| dev_err(&self.path, errno_text("VIDIOC_QBUF (OUTPUT)", e)))?;

        loop {
            let buf = match ioctl::dqbuf::<V4l2Buffer>(&self.fd, self.cap_q) {
                Ok(b) => b,
                Err(ioctl::IoctlConvertError::IoctlError(ioctl::DqBufIoctlError::NotReady)) => {
                    if !self.wait(PollFlags::POLLIN, deadline)? && Instant::now() >= deadline {
                        return Err(EncodeError::Delayed { pts, delayed: 1 });
                    }
                    continue;
                }
                Err(e) => return Err(dev_err(&self.path, errno_text("VIDIOC_DQBUF (CAPTURE)", e))),
            };
            let idx = buf.index();
            let plane = buf.get_first_plane();
            let (used, offset) = (
                *plane.bytesused as usize,
                plane.data_offset.copied().unwrap_or(0) as usize,
            );
            let flags = buf.flags();
            let ts = buf.timestamp();
            let stamp = ts.tv_sec as i64 * 1_000_000 + ts.tv_usec as i64;
            let map = &self.cap_maps[idx as usize];
            let data = &map.data[offset.min(used)..used.min(map.data.len())];
            let done = if flags.contains(ioctl::BufferFlags::ERROR) {
                None
            } else {
                self.asm.push(data)
            };
            self.queue_capture(idx)?;
            if let Some(info) = done {
                if stamp != pts {
                    return Err(EncodeError::Delayed {
                        pts,
                        delayed: (pts - stamp) as i32,
                    });
                }
                return Ok(m2m::AuInfo {
                    keyframe: info.keyframe || flags.contains(ioctl::BufferFlags::KEYFRAME),
                    ..info
                });
            }
        }
    }
}

/// Opens the device node non-blocking. Errors name the usual causes: no such device,
/// the `video` group.
fn open_device(path: &str) -> Result<File, EncodeError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => dev_err(path, "no such device (the V4L2 M2M encoder is bcm2835-codec at /dev/video11 on a Raspberry Pi 4, 3 or Zero 2)"),
            std::io::ErrorKind::PermissionDenied => dev_err(path, "permission denied: add the user to the video group"),
            _ => dev_err(path, format!("cannot open: {e}")),
        })
}

/// VIDIOC_QUERYCAP: the driver name and the (OUTPUT, CAPTURE) queue types, multi-planar
/// where the device is. Errors: not a V4L2 device, or not a memory-to-memory one.
fn m2m_queues(fd: &File, path: &str) -> Result<(String, QueueType, QueueType), EncodeError> {
    let cap: Capability = ioctl::querycap(fd)
        .map_err(|e| dev_err(path, format!("not a V4L2 device (VIDIOC_QUERYCAP: {e})")))?;
    let caps = cap.device_caps();
    if caps.contains(Capabilities::VIDEO_M2M_MPLANE) {
        Ok((
            cap.driver,
            QueueType::VideoOutputMplane,
            QueueType::VideoCaptureMplane,
        ))
    } else if caps.contains(Capabilities::VIDEO_M2M) {
        Ok((cap.driver, QueueType::VideoOutput, QueueType::VideoCapture))
    } else {
        Err(dev_err(
            path,
            format!(
                "{} ({}) is not a memory-to-memory device",
                cap.card, cap.driver
            ),
        ))
    }
}

/// Checks the formats the device offers, then VIDIOC_S_FMT: H.264 on CAPTURE, the raw
/// format [`m2m::pick_output_format`] chose on OUTPUT. Returns how a frame is laid out in
/// the OUTPUT buffer the driver answered with ([`m2m::output_layout`]).
fn set_formats(
    fd: &mut File,
    path: &str,
    params: &EncoderParams,
    out_q: QueueType,
    cap_q: QueueType,
) -> Result<OutputLayout, EncodeError> {
    let f = params.format;
    let formats = |q: QueueType| -> Vec<m2m::FourCc> {
        FormatIterator::new(&*fd, q)
            .map(|d| <[u8; 4]>::from(d.pixelformat))
            .collect()
    };
    let (raw_offered, coded_offered) = (formats(out_q), formats(cap_q));
    m2m::check_capture_format(&coded_offered).map_err(|e| dev_err(path, e.to_string()))?;
    let raw = m2m::pick_output_format(&raw_offered).map_err(|e| dev_err(path, e.to_string()))?;
    let coded = Format {
        width: f.width,
        height: f.height,
        pixelformat: PixelFormat::from(&m2m::H264),
        plane_fmt: vec![PlaneLayout {
            sizeimage: m2m::capture_buffer_bytes(&params.enc, f),
            bytesperline: 0,
        }],
    };
    let _: Format = ioctl::s_fmt(fd, (cap_q, &coded))
        .map_err(|e| dev_err(path, errno_text("VIDIOC_S_FMT (CAPTURE, H264)", e)))?;
    let want = Format {
        width: f.width,
        height: f.height,
        pixelformat: PixelFormat::from(&raw),
        plane_fmt: vec![],
    };
    let got: Format = ioctl::s_fmt(fd, (out_q, &want))
        .map_err(|e| dev_err(path, errno_text("VIDIOC_S_FMT (OUTPUT)", e)))?;
    let dev_fmt = DeviceFormat {
        fourcc: got.pixelformat.into(),
        width: got.width,
        height: got.height,
        planes: got
            .plane_fmt
            .iter()
            .map(|p| PlaneFmt {
                bytesperline: p.bytesperline,
                sizeimage: p.sizeimage,
            })
            .collect(),
    };
    m2m::output_layout(f, &dev_fmt).map_err(|e| dev_err(path, e.to_string()))
}

/// VIDIOC_S_PARM: the frame interval on OUTPUT. A driver that refuses it still encodes;
/// the note says so.
fn set_frame_rate(fd: &File, path: &str, out_q: QueueType, f: SourceFormat) -> Option<String> {
    let parm = bindings::v4l2_streamparm {
        type_: out_q as u32,
        parm: bindings::v4l2_streamparm__bindgen_ty_1 {
            output: bindings::v4l2_outputparm {
                timeperframe: bindings::v4l2_fract {
                    numerator: f.fps_den.max(1),
                    denominator: f.fps_num,
                },
                ..Default::default()
            },
        },
    };
    ioctl::s_parm::<_, bindings::v4l2_streamparm>(fd, parm).err().map(|e| {
        format!("{path}: VIDIOC_S_PARM (frame rate) failed: {e}; the encoder's rate control assumes its default rate")
    })
}

/// Queries the controls [`m2m::negotiate_controls`] needs, and sets what it decided.
/// Errors: the configuration cannot be met by this device, or VIDIOC_S_CTRL failed.
fn set_controls(fd: &File, path: &str, params: &EncoderParams) -> Result<Negotiated, EncodeError> {
    let negotiated = m2m::negotiate_controls(&params.enc, params.format, &query_controls(fd))
        .map_err(|e| dev_err(path, e.to_string()))?;
    for c in &negotiated.set {
        ioctl::s_ctrl(fd, c.id, c.value as i32).map_err(|e| {
            dev_err(
                path,
                format!(
                    "setting {} = {} failed: {e}",
                    m2m::control_name(c.id),
                    c.value
                ),
            )
        })?;
    }
    Ok(negotiated)
}

/// Asks the driver about every control the negotiation looks at: VIDIOC_QUERYCTRL, and
/// VIDIOC_QUERYMENU for each menu item. Disabled controls count as absent.
fn query_controls(fd: &File) -> DeviceControls {
    let mut out = DeviceControls::new();
    for &(id, _) in m2m::CONTROLS {
        let Ok(cid) = ioctl::CtrlId::new(id) else {
            continue;
        };
        let Ok(q) =
            ioctl::queryctrl::<bindings::v4l2_queryctrl>(fd, cid, ioctl::QueryCtrlFlags::empty())
        else {
            continue;
        };
        if q.flags & bindings::V4L2_CTRL_FLAG_DISABLED != 0 {
            continue;
        }
        let menu = if q.type_ == bindings::v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU
            || q.type_ == bindings::v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER_MENU
        {
            Some(
                (q.minimum..=q.maximum)
                    .filter(|&i| {
                        i >= 0
                            && ioctl::querymenu::<bindings::v4l2_querymenu>(fd, id, i as u32)
                                .is_ok()
                    })
                    .map(|i| i as i64)
                    .collect(),
            )
        } else {
            None
        };
        out.insert(
            id,
            CtrlInfo {
                min: q.minimum as i64,
                max: q.maximum as i64,
                step: q.step.max(0) as u64,
                menu,
                button: q.type_ == bindings::v4l2_ctrl_type_V4L2_CTRL_TYPE_BUTTON,
            },
        );
    }
    out
}

/// REQBUFS `count` MMAP buffers on `queue`, QUERYBUF each and map every plane.
fn alloc_and_map(
    fd: &File,
    queue: QueueType,
    count: u32,
) -> Result<Vec<Vec<PlaneMapping>>, String> {
    let n: usize = ioctl::reqbufs(
        fd,
        queue,
        v4l2r::memory::MemoryType::Mmap,
        count,
        ioctl::MemoryConsistency::empty(),
    )
    .map_err(|e| errno_text(&format!("VIDIOC_REQBUFS ({count} on {queue:?})"), e))?;
    if n == 0 {
        return Err(format!("VIDIOC_REQBUFS on {queue:?} gave no buffers"));
    }
    (0..n)
        .map(|i| {
            let q: QueryBuffer =
                ioctl::querybuf(fd, queue, i).map_err(|e| errno_text("VIDIOC_QUERYBUF", e))?;
            q.planes
                .iter()
                .map(|p| {
                    ioctl::mmap(fd, p.mem_offset, p.length)
                        .map_err(|e| errno_text("mmap of a buffer", e))
                })
                .collect()
        })
        .collect()
}

impl VideoEncoder for V4l2M2mEncoder {
    fn describe(&self) -> String {
        format!("v4l2m2m {} ({})", self.path, self.driver)
    }

    /// The SPS/PPS seen so far; before the first frame, a black frame is encoded to get
    /// them (the next real frame is then an IDR again).
    fn headers(&mut self) -> Result<Vec<u8>, EncodeError> {
        if self.asm.parameter_sets().is_empty() {
            let f = self.format;
            let (y, c) = (
                (f.width * f.height) as usize,
                (f.width * f.height / 4) as usize,
            );
            let mut black = vec![16u8; y + 2 * c];
            black[y..].fill(128);
            self.encode_frame(&black, true)?;
            self.idr_next = true;
        }
        if self.asm.parameter_sets().is_empty() {
            return Err(dev_err(&self.path, "the encoder produced no SPS/PPS"));
        }
        Ok(self.asm.parameter_sets().to_vec())
    }

    fn encode(&mut self, i420: &[u8], force_idr: bool) -> Result<Encoded<'_>, EncodeError> {
        let info = self.encode_frame(i420, force_idr)?;
        Ok(Encoded {
            data: self.asm.au(),
            keyframe: info.keyframe,
            nal_count: info.nal_count,
            qp: -1,
        })
    }

    fn set_bitrate(&mut self, kbps: u32) -> Result<(), EncodeError> {
        let bps = m2m::clamp_bitrate_bps(kbps, self.negotiated.bitrate_range_bps);
        ioctl::s_ctrl(&self.fd, m2m::CID_BITRATE, bps as i32).map_err(|e| {
            dev_err(
                &self.path,
                format!("setting video_bitrate = {bps} failed: {e}"),
            )
        })?;
        self.bitrate_kbps = (bps / 1000) as u32;
        Ok(())
    }

    fn bitrate_kbps(&self) -> u32 {
        self.bitrate_kbps
    }
}

impl Drop for V4l2M2mEncoder {
    fn drop(&mut self) {
        // STREAMOFF returns every queued buffer; the mappings are unmapped when the
        // PlaneMapping values drop and the buffers freed when the fd closes.
        for q in [self.out_q, self.cap_q] {
            let _ = ioctl::streamoff(&self.fd, q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(device: &str) -> EncoderParams {
        let mut enc = crate::config::load(&[]).unwrap().encoder;
        enc.backend = "v4l2m2m".into();
        enc.device = device.into();
        EncoderParams::from_config(
            &enc,
            SourceFormat {
                width: 1280,
                height: 720,
                fps_num: 60,
                fps_den: 1,
            },
        )
    }

    #[test]
    fn control_ids_match_the_kernel_headers() {
        assert_eq!(m2m::CID_B_FRAMES, bindings::V4L2_CID_MPEG_VIDEO_B_FRAMES);
        assert_eq!(m2m::CID_GOP_SIZE, bindings::V4L2_CID_MPEG_VIDEO_GOP_SIZE);
        assert_eq!(
            m2m::CID_BITRATE_MODE,
            bindings::V4L2_CID_MPEG_VIDEO_BITRATE_MODE
        );
        assert_eq!(m2m::CID_BITRATE, bindings::V4L2_CID_MPEG_VIDEO_BITRATE);
        assert_eq!(
            m2m::CID_CYCLIC_INTRA_REFRESH_MB,
            bindings::V4L2_CID_MPEG_VIDEO_CYCLIC_INTRA_REFRESH_MB
        );
        assert_eq!(
            m2m::CID_HEADER_MODE,
            bindings::V4L2_CID_MPEG_VIDEO_HEADER_MODE
        );
        assert_eq!(
            m2m::CID_REPEAT_SEQ_HEADER,
            bindings::V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER
        );
        assert_eq!(
            m2m::CID_FORCE_KEY_FRAME,
            bindings::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME
        );
        assert_eq!(
            m2m::CID_INTRA_REFRESH_PERIOD,
            bindings::V4L2_CID_MPEG_VIDEO_INTRA_REFRESH_PERIOD
        );
        assert_eq!(
            m2m::CID_H264_I_PERIOD,
            bindings::V4L2_CID_MPEG_VIDEO_H264_I_PERIOD
        );
        assert_eq!(
            m2m::CID_H264_LEVEL,
            bindings::V4L2_CID_MPEG_VIDEO_H264_LEVEL
        );
        assert_eq!(
            m2m::CID_H264_PROFILE,
            bindings::V4L2_CID_MPEG_VIDEO_H264_PROFILE
        );
        assert_eq!(
            m2m::H264_LEVELS
                .iter()
                .find(|l| l.name == "4.2")
                .unwrap()
                .v4l2,
            bindings::v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_4_2 as i64
        );
    }

    #[test]
    fn absent_device_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("video11");
        let e = V4l2M2mEncoder::open(&params(p.to_str().unwrap()))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            format!(
                "{}: no such device (the V4L2 M2M encoder is bcm2835-codec at /dev/video11 on a Raspberry Pi 4, 3 or Zero 2)",
                p.display()
            )
        );
    }

    #[test]
    fn a_file_that_is_not_a_v4l2_device_is_refused_by_querycap() {
        // /dev/null opens but answers VIDIOC_QUERYCAP with ENOTTY: the real ioctl path.
        let e = V4l2M2mEncoder::open(&params("/dev/null"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("/dev/null: not a V4L2 device (VIDIOC_QUERYCAP"),
            "{e}"
        );
    }
}
