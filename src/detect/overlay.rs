//! Boxes drawn into an I420 frame before encoding (`--yolo-overlay`). Pure.
//!
//! Each box is an outline [`THICKNESS`] pixels wide in a colour per class (a small fixed
//! palette, BT.601 limited-range YUV), drawn on the luma plane and, at half resolution, on
//! the chroma planes; boxes are clipped to the frame.

use super::Detection;

/// Outline width, pixels (even, so luma and chroma edges line up).
pub const THICKNESS: u32 = 4;

/// Palette (Y, U, V): green, red, blue, yellow, magenta, cyan; class `c` uses `c % 6`.
pub const PALETTE: [(u8, u8, u8); 6] = [
    (145, 54, 34),
    (81, 90, 240),
    (41, 240, 110),
    (210, 16, 146),
    (106, 202, 222),
    (170, 166, 16),
];

/// Draws `dets` (boxes in frame pixels) into the I420 frame `frame` of `w × h`. Frames
/// too small for their size are left alone (returns false).
pub fn draw_i420(frame: &mut [u8], w: u32, h: u32, dets: &[Detection]) -> bool {
    let (w, h) = (w as usize, h as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    if frame.len() < w * h + 2 * cw * ch || w < 2 || h < 2 {
        return false;
    }
    let (yp, rest) = frame.split_at_mut(w * h);
    let (up, vp) = rest.split_at_mut(cw * ch);
    let t = THICKNESS as usize;
    for d in dets {
        let (cy, cu, cv) = PALETTE[d.class as usize % PALETTE.len()];
        // Even-aligned, clipped corners.
        let clip = |v: f32, max: usize| ((v.max(0.0) as usize) & !1).min(max);
        let (x0, y0) = (clip(d.bbox[0], w - 2), clip(d.bbox[1], h - 2));
        let (x1, y1) = (
            clip(d.bbox[2], w - 2).max(x0 + 2),
            clip(d.bbox[3], h - 2).max(y0 + 2),
        );
        let mut fill = |xa: usize, ya: usize, xb: usize, yb: usize| {
            let (xb, yb) = (xb.min(w), yb.min(h));
            for y in ya..yb {
                yp[y * w + xa..y * w + xb].fill(cy);
            }
            for y in ya / 2..yb.div_ceil(2).min(ch) {
                let (a, b) = (xa / 2, xb.div_ceil(2).min(cw));
                up[y * cw + a..y * cw + b].fill(cu);
                vp[y * cw + a..y * cw + b].fill(cv);
            }
        };
        fill(x0, y0, x1 + 2, y0 + t); // top
        fill(x0, y1.saturating_sub(t - 2), x1 + 2, y1 + 2); // bottom
        fill(x0, y0, x0 + t, y1 + 2); // left
        fill(x1.saturating_sub(t - 2), y0, x1 + 2, y1 + 2); // right
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_clipped_outline_in_the_class_colour_and_nothing_inside() {
        let (w, h) = (64u32, 48u32);
        let mut f = vec![16u8; (w * h) as usize];
        f.extend(std::iter::repeat_n(128u8, (w * h / 2) as usize));
        let d = Detection {
            class: 1,
            score: 0.9,
            bbox: [10.0, 8.0, 40.0, 30.0],
        };
        assert!(draw_i420(
            &mut f,
            w,
            h,
            &[
                d,
                Detection {
                    class: 0,
                    score: 0.5,
                    bbox: [-20.0, -5.0, 500.0, 500.0]
                }
            ]
        ));
        let y = |x: usize, yy: usize| f[yy * 64 + x];
        let u = |x: usize, yy: usize| f[64 * 48 + (yy / 2) * 32 + x / 2];
        // The class-1 box: red edges, untouched inside.
        assert_eq!(y(20, 8), PALETTE[1].0);
        assert_eq!(u(20, 8), PALETTE[1].1);
        assert_eq!(y(10, 20), PALETTE[1].0);
        assert_eq!(y(41, 20), PALETTE[1].0);
        assert_eq!(y(20, 31), PALETTE[1].0);
        assert_eq!(y(25, 20), 16);
        assert_eq!(u(25, 20), 128);
        // The class-0 box is clipped to the frame: its outline runs along the borders.
        assert_eq!(y(30, 0), PALETTE[0].0);
        assert_eq!(y(63, 20), PALETTE[0].0);
        assert_eq!(y(0, 47), PALETTE[0].0);
        // A short frame is refused.
        assert!(!draw_i420(&mut f[..100], w, h, &[d]));
    }
}
