//! Object detection: what turns a video frame into boxes (pure: no I/O, no clock, no
//! unsafe), and the ONNX Runtime session that runs the model ([`onnx`]).
//!
//! - [`Letterbox`] + [`letterbox_i420`] / [`letterbox_rgb`]: the frame scaled to fit a
//!   `size × size` square (aspect kept, centred, grey 0.5 padding), bilinear with pixel
//!   centres aligned (like OpenCV's `INTER_LINEAR`), converted from I420 (BT.601 limited
//!   range, as x264 and the cameras deliver it) to the model's planar RGB float 0..1:
//!   `[1, 3, size, size]`. Row-wise loops over precomputed taps (auto-vectorized).
//! - [`decode`]: the model output in either layout — YOLOv3/v5 `[1, N, 5 + C]` (cx, cy, w,
//!   h, objectness, C class scores; score = objectness × class) or YOLOv8/11 `[1, 4 + C,
//!   N]` (cx, cy, w, h, C class scores, no objectness) — boxes in input pixels.
//! - [`nms`]: per-class greedy non-maximum suppression, best first.
//! - [`Letterbox::to_source`]: boxes back to source-frame pixels.

pub mod assets;
pub mod onnx;
pub mod overlay;

pub use vr_proto::detection::{Detection, iou, wire};

/// How a `width × height` source maps into the `size × size` model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Source size, pixels.
    pub src: (u32, u32),
    /// Model input side, pixels.
    pub size: u32,
    /// Scale source → input.
    pub scale: f32,
    /// Scaled picture size in the input, pixels.
    pub scaled: (u32, u32),
    /// Offset of the scaled picture in the input (left, top), pixels.
    pub offset: (u32, u32),
}

impl Letterbox {
    /// The mapping of a `w × h` source into a `size` square (rounded like OpenCV-based
    /// references: scaled size rounded, offsets floored halves).
    pub fn new(w: u32, h: u32, size: u32) -> Letterbox {
        let scale = (size as f32 / w as f32).min(size as f32 / h as f32);
        let sw = ((w as f32 * scale).round() as u32).clamp(1, size);
        let sh = ((h as f32 * scale).round() as u32).clamp(1, size);
        Letterbox {
            src: (w, h),
            size,
            scale,
            scaled: (sw, sh),
            offset: ((size - sw) / 2, (size - sh) / 2),
        }
    }

    /// A box in input pixels → source pixels, clamped to the source.
    pub fn to_source(&self, b: [f32; 4]) -> [f32; 4] {
        let (ox, oy) = (self.offset.0 as f32, self.offset.1 as f32);
        let (w, h) = (self.src.0 as f32, self.src.1 as f32);
        [
            ((b[0] - ox) / self.scale).clamp(0.0, w),
            ((b[1] - oy) / self.scale).clamp(0.0, h),
            ((b[2] - ox) / self.scale).clamp(0.0, w),
            ((b[3] - oy) / self.scale).clamp(0.0, h),
        ]
    }

    /// Bilinear taps along one axis: for each destination index, (i0, i1, w1) with pixel
    /// centres aligned: src = (dst + 0.5) × n / m − 0.5, clamped.
    fn taps(dst: u32, src: u32) -> Vec<(usize, usize, f32)> {
        let r = src as f32 / dst as f32;
        (0..dst)
            .map(|d| {
                let s = ((d as f32 + 0.5) * r - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(src as usize - 1);
                let i1 = (i0 + 1).min(src as usize - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    }
}

/// Padding value of the letterbox (grey), in 0..1.
pub const PAD: f32 = 0.5;

/// Errors of the letterbox functions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepError {
    /// A buffer is smaller than its size says: which, its length and the length needed.
    #[error("{what}: {len} bytes/values, need {need}")]
    Short {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Needed.
        need: usize,
    },
}

/// Writes the letterboxed model input from an RGB (8-bit, interleaved, `w × h`) picture
/// into `out`: planar `[3, size, size]` floats 0..1.
///
/// Errors: [`PrepError::Short`] for a too-small `rgb` or `out`.
pub fn letterbox_rgb(rgb: &[u8], lb: &Letterbox, out: &mut [f32]) -> Result<(), PrepError> {
    let (w, h) = (lb.src.0 as usize, lb.src.1 as usize);
    check(rgb.len(), w * h * 3, "RGB picture")?;
    let s = lb.size as usize;
    check(out.len(), 3 * s * s, "model input")?;
    out.fill(PAD);
    let xs = Letterbox::taps(lb.scaled.0, lb.src.0);
    let ys = Letterbox::taps(lb.scaled.1, lb.src.1);
    let (ox, oy) = (lb.offset.0 as usize, lb.offset.1 as usize);
    let mut row = vec![0f32; xs.len() * 3];
    for (dy, &(y0, y1, fy)) in ys.iter().enumerate() {
        let (r0, r1) = (
            &rgb[y0 * w * 3..(y0 + 1) * w * 3],
            &rgb[y1 * w * 3..(y1 + 1) * w * 3],
        );
        for (dx, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let a = r0[x0 * 3 + c] as f32 * (1.0 - fx) + r0[x1 * 3 + c] as f32 * fx;
                let b = r1[x0 * 3 + c] as f32 * (1.0 - fx) + r1[x1 * 3 + c] as f32 * fx;
                row[dx * 3 + c] = a * (1.0 - fy) + b * fy;
            }
        }
        for c in 0..3 {
            let plane = &mut out[c * s * s + (oy + dy) * s + ox..][..xs.len()];
            for (dx, v) in plane.iter_mut().enumerate() {
                // Rounded to 8 bits like the reference's resize of an 8-bit image.
                *v = row[dx * 3 + c].round() / 255.0;
            }
        }
    }
    Ok(())
}

fn check(len: usize, need: usize, what: &'static str) -> Result<(), PrepError> {
    if len < need {
        Err(PrepError::Short { what, len, need })
    } else {
        Ok(())
    }
}

/// Writes the letterboxed model input from an I420 frame (`w × h`, Y then U then V, chroma
/// at half resolution) into `out` (planar RGB floats 0..1, `[3, size, size]`): Y, U and V
/// sampled bilinearly at each input pixel, then BT.601 limited range → RGB
/// (R = 1.164(Y−16) + 1.596(V−128), G = 1.164(Y−16) − 0.392(U−128) − 0.813(V−128),
/// B = 1.164(Y−16) + 2.017(U−128)), clamped.
///
/// Errors: [`PrepError::Short`] for a too-small `frame` or `out`.
pub fn letterbox_i420(frame: &[u8], lb: &Letterbox, out: &mut [f32]) -> Result<(), PrepError> {
    let (w, h) = (lb.src.0 as usize, lb.src.1 as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    check(frame.len(), w * h + 2 * cw * ch, "I420 frame")?;
    let s = lb.size as usize;
    check(out.len(), 3 * s * s, "model input")?;
    out.fill(PAD);
    let (yp, rest) = frame.split_at(w * h);
    let (up, vp) = rest.split_at(cw * ch);
    let xs = Letterbox::taps(lb.scaled.0, lb.src.0);
    let ys = Letterbox::taps(lb.scaled.1, lb.src.1);
    let cxs = Letterbox::taps(lb.scaled.0, cw as u32);
    let cys = Letterbox::taps(lb.scaled.1, ch as u32);
    let (ox, oy) = (lb.offset.0 as usize, lb.offset.1 as usize);
    let n = xs.len();
    let (mut yr, mut ur, mut vr) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let lerp_row = |p: &[u8],
                    stride: usize,
                    (r0, r1, fy): (usize, usize, f32),
                    taps: &[(usize, usize, f32)],
                    dst: &mut [f32]| {
        let (a, b) = (
            &p[r0 * stride..(r0 + 1) * stride],
            &p[r1 * stride..(r1 + 1) * stride],
        );
        for (d, &(x0, x1, fx)) in dst.iter_mut().zip(taps) {
            let top = a[x0] as f32 + (a[x1] as f32 - a[x0] as f32) * fx;
            let bot = b[x0] as f32 + (b[x1] as f32 - b[x0] as f32) * fx;
            *d = top + (bot - top) * fy;
        }
    };
    for dy in 0..ys.len() {
        lerp_row(yp, w, ys[dy], &xs, &mut yr);
        lerp_row(up, cw, cys[dy], &cxs, &mut ur);
        lerp_row(vp, cw, cys[dy], &cxs, &mut vr);
        let base = (oy + dy) * s + ox;
        let (rp, rest) = out.split_at_mut(s * s);
        let (gp, bp) = rest.split_at_mut(s * s);
        let (rp, gp, bp) = (
            &mut rp[base..base + n],
            &mut gp[base..base + n],
            &mut bp[base..base + n],
        );
        for i in 0..n {
            let y = 1.164 * (yr[i] - 16.0);
            let (u, v) = (ur[i] - 128.0, vr[i] - 128.0);
            rp[i] = ((y + 1.596 * v) / 255.0).clamp(0.0, 1.0);
            gp[i] = ((y - 0.392 * u - 0.813 * v) / 255.0).clamp(0.0, 1.0);
            bp[i] = ((y + 2.017 * u) / 255.0).clamp(0.0, 1.0);
        }
    }
    Ok(())
}

/// The two output layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// YOLOv3/v5: `[1, N, 5 + C]`, with objectness.
    V5 {
        /// Boxes.
        n: usize,
        /// Classes.
        classes: usize,
    },
    /// YOLOv8/11: `[1, 4 + C, N]`, no objectness.
    V8 {
        /// Boxes.
        n: usize,
        /// Classes.
        classes: usize,
    },
}

/// Errors of [`Layout::from_shape`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model output shape {0:?}: expected [1, N, 5+C] (YOLOv3/v5) or [1, 4+C, N] (YOLOv8/11)")]
pub struct ShapeError(pub Vec<i64>);

impl Layout {
    /// The layout of an output tensor of `shape`: the box axis is the longer one.
    ///
    /// Errors: [`ShapeError`] for anything that is not `[1, a, b]` with a plausible class
    /// count.
    pub fn from_shape(shape: &[i64]) -> Result<Layout, ShapeError> {
        let bad = || ShapeError(shape.to_vec());
        let [1, a, b] = shape else { return Err(bad()) };
        let (a, b) = (
            usize::try_from(*a).map_err(|_| bad())?,
            usize::try_from(*b).map_err(|_| bad())?,
        );
        if b <= a && b > 5 {
            Ok(Layout::V5 {
                n: a,
                classes: b - 5,
            })
        } else if a < b && a > 4 {
            Ok(Layout::V8 {
                n: b,
                classes: a - 4,
            })
        } else {
            Err(bad())
        }
    }
}

/// Candidate boxes of score ≥ `conf` (and class allowed by `keep_class`) from a model
/// output `data` in `layout`; boxes in input pixels.
pub fn decode(
    data: &[f32],
    layout: Layout,
    conf: f32,
    keep_class: impl Fn(u16) -> bool,
) -> Vec<Detection> {
    let mut out = vec![];
    let corners =
        |cx: f32, cy: f32, w: f32, h: f32| [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
    match layout {
        Layout::V5 { n, classes } => {
            let d = 5 + classes;
            for row in data.chunks_exact(d).take(n) {
                let obj = row[4];
                if obj < conf {
                    continue;
                }
                let (c, s) = best(row[5..].iter().copied());
                let score = obj * s;
                if score >= conf && keep_class(c) {
                    out.push(Detection {
                        class: c,
                        score,
                        bbox: corners(row[0], row[1], row[2], row[3]),
                    });
                }
            }
        }
        Layout::V8 { n, classes } => {
            if data.len() < (4 + classes) * n {
                return out;
            }
            let at = |k: usize, i: usize| data[k * n + i];
            for i in 0..n {
                let (c, s) = best((0..classes).map(|k| at(4 + k, i)));
                if s >= conf && keep_class(c) {
                    out.push(Detection {
                        class: c,
                        score: s,
                        bbox: corners(at(0, i), at(1, i), at(2, i), at(3, i)),
                    });
                }
            }
        }
    }
    out
}

fn best(it: impl Iterator<Item = f32>) -> (u16, f32) {
    it.enumerate().fold((0u16, f32::MIN), |(bc, bs), (c, s)| {
        if s > bs { (c as u16, s) } else { (bc, bs) }
    })
}

/// Per-class greedy NMS: best first, a box is dropped when its IoU with a kept box of the
/// same class exceeds `iou_threshold`; at most `max` kept.
pub fn nms(mut dets: Vec<Detection>, iou_threshold: f32, max: usize) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = vec![];
    for d in dets {
        if kept.len() >= max {
            break;
        }
        if kept
            .iter()
            .all(|k| k.class != d.class || k.iou(&d) <= iou_threshold)
        {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yolov8_layout_decodes_a_constructed_tensor() {
        // [1, 4 + 3, 12]: twelve box slots (the box axis is the longer one, as in real
        // models: [1, 84, 8400]), five filled, three classes, stored attribute-major.
        let (n, classes) = (12usize, 3usize);
        let mut t = vec![0f32; (4 + classes) * n];
        let mut set = |i: usize, cx: f32, cy: f32, w: f32, h: f32, scores: [f32; 3]| {
            for (k, v) in [cx, cy, w, h].into_iter().chain(scores).enumerate() {
                t[k * n + i] = v;
            }
        };
        set(0, 100.0, 100.0, 40.0, 20.0, [0.9, 0.1, 0.0]); // class 0, kept
        set(1, 102.0, 101.0, 40.0, 20.0, [0.8, 0.0, 0.0]); // overlaps 0, same class: suppressed
        set(2, 102.0, 101.0, 40.0, 20.0, [0.0, 0.0, 0.7]); // overlaps 0, other class: kept
        set(3, 200.0, 50.0, 10.0, 10.0, [0.0, 0.2, 0.0]); // below the threshold
        set(4, 300.0, 250.0, 60.0, 30.0, [0.0, 0.6, 0.1]); // class 1, kept
        let layout = Layout::from_shape(&[1, (4 + classes) as i64, n as i64]).unwrap();
        assert_eq!(layout, Layout::V8 { n, classes });
        let d = nms(decode(&t, layout, 0.25, |_| true), 0.45, 100);
        let got: Vec<(u16, f32, [f32; 4])> = d.iter().map(|d| (d.class, d.score, d.bbox)).collect();
        assert_eq!(
            got,
            vec![
                (0, 0.9, [80.0, 90.0, 120.0, 110.0]),
                (2, 0.7, [82.0, 91.0, 122.0, 111.0]),
                (1, 0.6, [270.0, 235.0, 330.0, 265.0])
            ]
        );
        // A class filter.
        let d = nms(decode(&t, layout, 0.25, |c| c == 1), 0.45, 100);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, 1);
    }

    #[test]
    fn yolov5_layout_multiplies_objectness() {
        // [1, 8, 5 + 2]: two filled rows, six empty.
        let mut t = vec![
            50.0, 60.0, 20.0, 10.0, 0.5, 0.9, 0.2, 10.0, 10.0, 4.0, 4.0, 0.1, 0.9, 0.9,
        ];
        t.resize(8 * 7, 0.0);
        let layout = Layout::from_shape(&[1, 8, 7]).unwrap();
        assert_eq!(layout, Layout::V5 { n: 8, classes: 2 });
        let d = decode(&t, layout, 0.25, |_| true);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, 0);
        assert!((d[0].score - 0.45).abs() < 1e-6);
        assert_eq!(d[0].bbox, [40.0, 55.0, 60.0, 65.0]);
    }

    #[test]
    fn bad_shapes_are_named() {
        for s in [&[1i64, 85][..], &[2, 10, 85], &[1, 3, 3], &[1, -1, 85]] {
            let e = Layout::from_shape(s).unwrap_err();
            assert!(e.to_string().contains("expected [1, N, 5+C]"), "{e}");
        }
    }

    #[test]
    fn letterbox_geometry_and_the_way_back() {
        let lb = Letterbox::new(768, 576, 320);
        assert_eq!(lb.scaled, (320, 240));
        assert_eq!(lb.offset, (0, 40));
        let b = lb.to_source([0.0, 40.0, 160.0, 160.0]);
        assert!(
            (b[0] - 0.0).abs() < 1e-3
                && (b[1]).abs() < 1e-3
                && (b[2] - 384.0).abs() < 1e-3
                && (b[3] - 288.0).abs() < 1e-3,
            "{b:?}"
        );
    }

    #[test]
    fn i420_and_rgb_paths_agree_on_a_flat_colour_and_pad_with_grey() {
        // A 64x48 frame of one colour: Y=81, U=90, V=240 is about RGB (255, 0, 0) (BT.601).
        let (w, h) = (64u32, 48u32);
        let mut f = vec![81u8; (w * h) as usize];
        f.extend(std::iter::repeat_n(90u8, (w * h / 4) as usize));
        f.extend(std::iter::repeat_n(240u8, (w * h / 4) as usize));
        let lb = Letterbox::new(w, h, 32);
        let mut a = vec![0f32; 3 * 32 * 32];
        letterbox_i420(&f, &lb, &mut a).unwrap();
        let px = |c: usize, x: usize, y: usize| a[c * 1024 + y * 32 + x];
        assert!(
            px(0, 16, 16) > 0.98 && px(1, 16, 16) < 0.02 && px(2, 16, 16) < 0.02,
            "{} {} {}",
            px(0, 16, 16),
            px(1, 16, 16),
            px(2, 16, 16)
        );
        // 64x48 -> 32x24, 4 rows of padding above and below.
        assert_eq!(lb.offset, (0, 4));
        assert_eq!(px(0, 0, 0), PAD);
        assert_eq!(px(2, 31, 31), PAD);
        let rgb: Vec<u8> = (0..w * h).flat_map(|_| [255u8, 0, 0]).collect();
        let mut b = vec![0f32; 3 * 32 * 32];
        letterbox_rgb(&rgb, &lb, &mut b).unwrap();
        let max_diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(max_diff < 0.03, "{max_diff}");
        assert!(matches!(
            letterbox_i420(&f[..100], &lb, &mut a),
            Err(PrepError::Short {
                what: "I420 frame",
                ..
            })
        ));
    }
}
