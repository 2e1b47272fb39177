//! V4L2 capture source (USB webcams) through the `v4l` crate, memory-mapped streaming I/O.
//!
//! Formats, in order of preference: YU12 (I420) copied as is, NV12 and YUYV (4:2:2 packed)
//! converted to I420 into the ring slot in one pass, and MJPEG (what most USB webcams offer
//! at 720p60), decoded with `zune-jpeg` to YCbCr and subsampled to I420. A camera offering
//! none of them is refused with an error naming the formats it offers. The capture time is the driver's buffer
//! timestamp, which is CLOCK_MONOTONIC (V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC).
//!
//! Only compiled here: this machine has no /dev/video*. The pure conversions are tested.

use super::camera_format::CameraLayout;
use super::{Captured, FrameSource, SourceError, SourceFormat};
use std::path::Path;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

/// Pixel formats this source can convert, best first.
const PREFERRED: [&[u8; 4]; 4] = [b"YU12", b"NV12", b"YUYV", b"MJPG"];

/// A V4L2 camera.
pub struct V4l2Source {
    device: String,
    stream: Stream<'static>,
    fourcc: [u8; 4],
    format: SourceFormat,
    stride: usize,
    next_id: u64,
    /// MJPEG decode buffer (YCbCr 4:4:4), allocated once.
    scratch: Vec<u8>,
    _dev: Device,
}

impl V4l2Source {
    /// Opens `path`, negotiates the best supported format at `width × height` and `fps`,
    /// and starts streaming with `buffers` driver buffers.
    ///
    /// Errors: [`SourceError::Device`] naming the device (missing, not a capture device,
    /// no supported format, odd size).
    pub fn open(
        path: &Path,
        width: u32,
        height: u32,
        fps: u32,
        buffers: u32,
    ) -> Result<V4l2Source, SourceError> {
        let device = path.display().to_string();
        let err = |message: String| SourceError::Device {
            device: device.clone(),
            message,
        };
        let dev = Device::with_path(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let offered = dev
            .enum_formats()
            .map_err(|e| err(format!("cannot list formats: {e}")))?;
        let pick = PREFERRED
            .iter()
            .find(|f| offered.iter().any(|d| d.fourcc == FourCC::new(f)))
            .ok_or_else(|| {
                let names: Vec<String> = offered.iter().map(|d| d.fourcc.to_string()).collect();
                err(format!(
                    "offers {} but only YU12, NV12, YUYV and MJPG are supported",
                    names.join(", ")
                ))
            })?;
        let mut fmt = dev
            .format()
            .map_err(|e| err(format!("cannot get format: {e}")))?;
        fmt.width = width;
        fmt.height = height;
        fmt.fourcc = FourCC::new(pick);
        let fmt = dev
            .set_format(&fmt)
            .map_err(|e| err(format!("cannot set format: {e}")))?;
        if fmt.width % 2 != 0 || fmt.height % 2 != 0 {
            return Err(err(format!(
                "gives odd frame size {}x{}",
                fmt.width, fmt.height
            )));
        }
        let params = dev
            .set_params(&v4l::video::capture::Parameters::with_fps(fps))
            .map_err(|e| err(format!("cannot set {fps} fps: {e}")))?;
        let (num, den) = (
            params.interval.denominator.max(1),
            params.interval.numerator.max(1),
        );
        let stream = Stream::with_buffers(&dev, Type::VideoCapture, buffers).map_err(|e| {
            err(format!(
                "cannot start streaming with {buffers} buffers: {e}"
            ))
        })?;
        Ok(V4l2Source {
            device,
            stream,
            fourcc: fmt.fourcc.repr,
            format: SourceFormat {
                width: fmt.width,
                height: fmt.height,
                fps_num: num,
                fps_den: den,
            },
            stride: fmt.stride as usize,
            next_id: 0,
            scratch: if &fmt.fourcc.repr == b"MJPG" {
                vec![0; fmt.width as usize * fmt.height as usize * 3]
            } else {
                vec![]
            },
            _dev: dev,
        })
    }
}

impl FrameSource for V4l2Source {
    fn format(&self) -> SourceFormat {
        self.format
    }

    fn next_frame(&mut self, dst: &mut [u8]) -> Result<Option<Captured>, SourceError> {
        let (w, h) = (self.format.width as usize, self.format.height as usize);
        let (buf, meta) = self.stream.next().map_err(|e| SourceError::Device {
            device: self.device.clone(),
            message: format!("dequeue failed: {e}"),
        })?;
        let capture_ns =
            meta.timestamp.sec as u64 * 1_000_000_000 + meta.timestamp.usec as u64 * 1000;
        let data = &buf[..(meta.bytesused as usize).min(buf.len())];
        let ok = match &self.fourcc {
            b"YUYV" => yuyv_to_i420(data, self.stride.max(2 * w), w, h, dst),
            b"NV12" => nv12_to_i420(data, self.stride.max(w), w, h, dst),
            b"MJPG" => match mjpeg_to_i420(data, w, h, &mut self.scratch, dst) {
                Ok(()) => true,
                Err(message) => {
                    return Err(SourceError::Device {
                        device: self.device.clone(),
                        message,
                    });
                }
            },
            _ => i420_copy(data, self.stride.max(w), w, h, dst),
        };
        if !ok {
            return Err(SourceError::Device {
                device: self.device.clone(),
                message: format!("short buffer: {} bytes for {}x{}", data.len(), w, h),
            });
        }
        Ok(Some(Captured::numbered(&mut self.next_id, capture_ns)))
    }
}

/// Packed YUYV 4:2:2 (`stride` bytes per row) → I420 (chroma from even rows). False if
/// `src` is too short.
pub fn yuyv_to_i420(src: &[u8], stride: usize, w: usize, h: usize, dst: &mut [u8]) -> bool {
    if src.len() < stride * (h - 1) + 2 * w || dst.len() < w * h * 3 / 2 {
        return false;
    }
    let (y_out, c_out) = dst.split_at_mut(w * h);
    let (u_out, v_out) = c_out.split_at_mut((w / 2) * (h / 2));
    for row in 0..h {
        let s = &src[row * stride..row * stride + 2 * w];
        let y = &mut y_out[row * w..(row + 1) * w];
        for (i, px) in s.chunks_exact(4).enumerate() {
            y[2 * i] = px[0];
            y[2 * i + 1] = px[2];
            if row % 2 == 0 {
                u_out[(row / 2) * (w / 2) + i] = px[1];
                v_out[(row / 2) * (w / 2) + i] = px[3];
            }
        }
    }
    true
}

/// NV12 (Y plane, then interleaved UV at half height; `stride` bytes per row) → I420.
pub fn nv12_to_i420(src: &[u8], stride: usize, w: usize, h: usize, dst: &mut [u8]) -> bool {
    src.len() >= stride * h
        && planes_to_i420(
            CameraLayout::Nv12,
            &[&src[..stride * h], &src[stride * h..]],
            stride,
            w,
            h,
            dst,
        )
}

/// A frame as libcamera maps it (`planes`, each row `stride` bytes; chroma rows of I420
/// `stride / 2`), → packed I420 in `dst`, for `layout`:
/// - [`CameraLayout::I420`]: Y, U, V as three planes, or one plane holding all three
///   ([`i420_copy`]);
/// - [`CameraLayout::Nv12`]: Y and interleaved U/V at half height as two planes, or one
///   plane holding both ([`nv12_to_i420`]).
///
/// False when the number of planes does not fit the layout, or a plane or `dst` is too
/// short.
pub fn planes_to_i420(
    layout: CameraLayout,
    planes: &[&[u8]],
    stride: usize,
    w: usize,
    h: usize,
    dst: &mut [u8],
) -> bool {
    let (cw, ch) = (w / 2, h / 2);
    let fits = |plane: &[u8], rows: usize, stride: usize, bytes: usize| {
        rows == 0 || plane.len() >= stride * (rows - 1) + bytes
    };
    if h == 0 || dst.len() < w * h + 2 * cw * ch {
        return false;
    }
    let chroma: [&[u8]; 2] = match (layout, planes) {
        (CameraLayout::I420, [all]) => return i420_copy(all, stride, w, h, dst),
        (CameraLayout::Nv12, [all]) => return nv12_to_i420(all, stride, w, h, dst),
        (CameraLayout::I420, [y, u, v])
            if fits(y, h, stride, w)
                && fits(u, ch, stride / 2, cw)
                && fits(v, ch, stride / 2, cw) =>
        {
            [u, v]
        }
        (CameraLayout::Nv12, [y, uv]) if fits(y, h, stride, w) && fits(uv, ch, stride, 2 * cw) => {
            [uv, &[]]
        }
        _ => return false,
    };
    let (y_out, c_out) = dst.split_at_mut(w * h);
    for row in 0..h {
        y_out[row * w..(row + 1) * w].copy_from_slice(&planes[0][row * stride..row * stride + w]);
    }
    let (u_out, v_out) = c_out.split_at_mut(cw * ch);
    match layout {
        CameraLayout::I420 => {
            let cs = stride / 2;
            for (plane, out) in chroma.into_iter().zip([u_out, v_out]) {
                for row in 0..ch {
                    out[row * cw..(row + 1) * cw].copy_from_slice(&plane[row * cs..row * cs + cw]);
                }
            }
        }
        CameraLayout::Nv12 => {
            for row in 0..ch {
                let pairs = chroma[0][row * stride..row * stride + 2 * cw].chunks_exact(2);
                for (i, p) in pairs.enumerate() {
                    u_out[row * cw + i] = p[0];
                    v_out[row * cw + i] = p[1];
                }
            }
        }
    }
    true
}

/// Decodes one MJPEG frame (a JPEG, possibly without Huffman tables, as webcams send
/// them) of `w × h` into I420: JPEG's full-range YCbCr (JFIF) is scaled to the limited
/// range x264 and players assume for H.264 (BT.601: Y 16..=235, Cb/Cr 16..=240), chroma
/// averaged over 2×2 blocks. `scratch`
/// must hold `w × h × 3` bytes (YCbCr 4:4:4). Error: the decoder's message, or a size
/// that differs from the negotiated one.
pub fn mjpeg_to_i420(
    src: &[u8],
    w: usize,
    h: usize,
    scratch: &mut [u8],
    dst: &mut [u8],
) -> Result<(), String> {
    use zune_jpeg::zune_core::{colorspace::ColorSpace, options::DecoderOptions};
    let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(std::io::Cursor::new(src), opts);
    dec.decode_headers()
        .map_err(|e| format!("MJPEG frame: {e:?}"))?;
    let info = dec.info().ok_or("MJPEG frame: no header")?;
    if info.width as usize != w || info.height as usize != h {
        return Err(format!(
            "MJPEG frame is {}x{}, expected {w}x{h}",
            info.width, info.height
        ));
    }
    if scratch.len() < w * h * 3 || dst.len() < w * h * 3 / 2 {
        return Err("MJPEG frame: buffer too small".into());
    }
    dec.decode_into(&mut scratch[..w * h * 3])
        .map_err(|e| format!("MJPEG frame: {e:?}"))?;
    // Full → limited range: Y' = 16 + Y·219/255, C' = 128 + (C − 128)·224/255, rounded.
    let luma = |v: u16| (16 + (v * 219 + 127) / 255) as u8;
    let chroma = |v: u16| (16 + (v * 224 + 127) / 255) as u8;
    let (y_out, c_out) = dst.split_at_mut(w * h);
    let (u_out, v_out) = c_out.split_at_mut((w / 2) * (h / 2));
    for (i, y) in y_out.iter_mut().enumerate() {
        *y = luma(scratch[3 * i] as u16);
    }
    for cy in 0..h / 2 {
        for cx in 0..w / 2 {
            let px = |dx: usize, dy: usize, c: usize| {
                scratch[3 * ((2 * cy + dy) * w + 2 * cx + dx) + c] as u16
            };
            let avg = |c| chroma((px(0, 0, c) + px(1, 0, c) + px(0, 1, c) + px(1, 1, c) + 2) / 4);
            u_out[cy * (w / 2) + cx] = avg(1);
            v_out[cy * (w / 2) + cx] = avg(2);
        }
    }
    Ok(())
}

/// I420 with a row stride → packed I420.
pub fn i420_copy(src: &[u8], stride: usize, w: usize, h: usize, dst: &mut [u8]) -> bool {
    let cs = stride / 2;
    if src.len() < stride * h + 2 * cs * (h / 2) || dst.len() < w * h * 3 / 2 {
        return false;
    }
    let mut o = 0;
    for row in 0..h {
        dst[o..o + w].copy_from_slice(&src[row * stride..row * stride + w]);
        o += w;
    }
    let mut s = stride * h;
    for _ in 0..2 {
        for row in 0..h / 2 {
            dst[o..o + w / 2].copy_from_slice(&src[s + row * cs..s + row * cs + w / 2]);
            o += w / 2;
        }
        s += cs * (h / 2);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use CameraLayout::{I420, Nv12};

    #[test]
    fn separate_planes_with_stride() {
        let (w, h, stride) = (4usize, 2usize, 8usize);
        let y: Vec<u8> = (0..16).collect();
        let u: Vec<u8> = (100..104).collect();
        let v: Vec<u8> = (200..204).collect();
        let mut d = vec![0u8; 12];
        assert!(planes_to_i420(I420, &[&y, &u, &v], stride, w, h, &mut d));
        assert_eq!(d, vec![0, 1, 2, 3, 8, 9, 10, 11, 100, 101, 200, 201]);
        assert!(!planes_to_i420(
            I420,
            &[&y[..4], &u, &v],
            stride,
            w,
            h,
            &mut d
        ));
        assert!(!planes_to_i420(I420, &[&y, &u], stride, w, h, &mut d));
    }

    #[test]
    fn conversions() {
        let (w, h) = (4usize, 2usize);
        // YUYV: Y0 U Y1 V per two pixels.
        let yuyv = [
            10, 100, 11, 200, 12, 101, 13, 201, 20, 0, 21, 0, 22, 0, 23, 0,
        ];
        let mut out = vec![0u8; 12];
        assert!(yuyv_to_i420(&yuyv, 8, w, h, &mut out));
        assert_eq!(out, [10, 11, 12, 13, 20, 21, 22, 23, 100, 101, 200, 201]);
        let nv12 = [1, 2, 3, 4, 5, 6, 7, 8, 50, 60, 51, 61];
        assert!(nv12_to_i420(&nv12, 4, w, h, &mut out));
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 50, 51, 60, 61]);
        assert!(!nv12_to_i420(&nv12[..5], 4, w, h, &mut out));
    }

    #[test]
    fn nv12_as_two_planes_with_stride() {
        let (w, h, stride) = (4usize, 2usize, 6usize);
        // Row stride 6: two bytes of padding after each row of 4, in both planes.
        let y = [1, 2, 3, 4, 0, 0, 5, 6, 7, 8];
        let uv = [50, 60, 51, 61, 0, 0];
        let mut out = vec![0u8; 12];
        assert!(planes_to_i420(Nv12, &[&y, &uv], stride, w, h, &mut out));
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 50, 51, 60, 61]);
        // The same frame in one mapping.
        let one: Vec<u8> = [&y[..], &[0, 0], &uv[..]].concat();
        let mut again = vec![0u8; 12];
        assert!(planes_to_i420(Nv12, &[&one], stride, w, h, &mut again));
        assert_eq!(again, out);
        assert!(!planes_to_i420(
            Nv12,
            &[&y, &uv[..3]],
            stride,
            w,
            h,
            &mut out
        ));
        assert!(!planes_to_i420(
            Nv12,
            &[&y[..5], &uv],
            stride,
            w,
            h,
            &mut out
        ));
        assert!(!planes_to_i420(
            Nv12,
            &[&y, &uv, &uv],
            stride,
            w,
            h,
            &mut out
        ));
        assert!(!planes_to_i420(
            Nv12,
            &[&y, &uv],
            stride,
            w,
            h,
            &mut out[..11]
        ));
    }
}
