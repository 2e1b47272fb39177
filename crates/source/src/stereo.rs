//! Two sources composed side by side into one frame (`--stereo`): left eye in the left
//! half, right eye in the right half, for a headset that splits the picture per eye. On a
//! Pi 5 the two CSI cameras; here two files or patterns.
//!
//! Both sources must have the same size and rate; the composed frame is twice as wide. The
//! frame's capture time is the later of the two (the pair is complete only then); its id is
//! the left source's; how far apart the two capture times are is the pair skew
//! ([`Captured::pair_skew_ns`]), which the exit summary and the dashboard report. Composition copies each plane row by row into the I420 frame (rows
//! of `2w` luma, `w` chroma): one copy per frame, into the ring slot.

use super::{Captured, FrameSource, SourceError, SourceFormat};

/// Added to the ids a right-eye pattern draws, so that the two halves differ.
pub const RIGHT_PATTERN_ID_OFFSET: u64 = 1_000_000;

/// Left | right.
pub struct StereoSource {
    left: Box<dyn FrameSource>,
    right: Box<dyn FrameSource>,
    eye: SourceFormat,
    lbuf: Vec<u8>,
    rbuf: Vec<u8>,
}

impl StereoSource {
    /// Pairs two sources. Errors: [`SourceError::Stereo`] when their sizes or rates differ.
    pub fn new(
        left: Box<dyn FrameSource>,
        right: Box<dyn FrameSource>,
    ) -> Result<StereoSource, SourceError> {
        let (l, r) = (left.format(), right.format());
        if l != r {
            return Err(SourceError::Stereo(format!(
                "left is {}x{} at {}/{} fps, right is {}x{} at {}/{} fps; they must match",
                l.width, l.height, l.fps_num, l.fps_den, r.width, r.height, r.fps_num, r.fps_den
            )));
        }
        Ok(StereoSource {
            lbuf: vec![0; l.frame_bytes()],
            rbuf: vec![0; l.frame_bytes()],
            left,
            right,
            eye: l,
        })
    }
}

/// Writes `l` and `r` (I420, `w` x `h` each) side by side into `dst` (I420, `2w` x `h`).
/// Pure.
pub fn compose(dst: &mut [u8], l: &[u8], r: &[u8], w: usize, h: usize) {
    let (cw, ch) = (w / 2, h / 2);
    // (offset in an eye frame, offset in the composed frame, row width, rows)
    let planes = [
        (0, 0, w, h),
        (w * h, 2 * w * h, cw, ch),
        (w * h + cw * ch, 2 * w * h + 2 * cw * ch, cw, ch),
    ];
    for (src_off, dst_off, pw, rows) in planes {
        for y in 0..rows {
            let s = src_off + y * pw;
            let d = dst_off + y * 2 * pw;
            dst[d..d + pw].copy_from_slice(&l[s..s + pw]);
            dst[d + pw..d + 2 * pw].copy_from_slice(&r[s..s + pw]);
        }
    }
}

impl FrameSource for StereoSource {
    fn format(&self) -> SourceFormat {
        SourceFormat {
            width: self.eye.width * 2,
            ..self.eye
        }
    }

    fn next_frame(&mut self, dst: &mut [u8]) -> Result<Option<Captured>, SourceError> {
        let Some(a) = self.left.next_frame(&mut self.lbuf)? else {
            return Ok(None);
        };
        let Some(b) = self.right.next_frame(&mut self.rbuf)? else {
            return Ok(None);
        };
        compose(
            dst,
            &self.lbuf,
            &self.rbuf,
            self.eye.width as usize,
            self.eye.height as usize,
        );
        Ok(Some(Captured {
            frame_id: a.frame_id,
            capture_ns: a.capture_ns.max(b.capture_ns),
            pair_skew_ns: Some(a.capture_ns.abs_diff(b.capture_ns)),
        }))
    }

    fn resume_at(&mut self, frame_id: u64) -> Result<(), SourceError> {
        self.left.resume_at(frame_id)?;
        self.right.resume_at(frame_id)
    }

    fn is_permanent(&self, e: &SourceError) -> bool {
        self.left.is_permanent(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{PatternSource, read_id};

    #[test]
    fn halves_carry_each_source() {
        let f = SourceFormat {
            width: 320,
            height: 240,
            fps_num: 1000,
            fps_den: 1,
        };
        let mut s = StereoSource::new(
            Box::new(PatternSource::new(f)),
            Box::new(PatternSource::with_id_offset(f, RIGHT_PATTERN_ID_OFFSET)),
        )
        .unwrap();
        assert_eq!(s.format().width, 640);
        let mut buf = vec![0u8; s.format().frame_bytes()];
        for want in 0..3u64 {
            let c = s.next_frame(&mut buf).unwrap().unwrap();
            assert_eq!(c.frame_id, want);
            let half = |x0: usize| -> Vec<u8> {
                (0..240)
                    .flat_map(|y| buf[y * 640 + x0..y * 640 + x0 + 320].to_vec())
                    .collect()
            };
            assert_eq!(read_id(&half(0), 320, 240), Some(want));
            assert_eq!(
                read_id(&half(320), 320, 240),
                Some(want + RIGHT_PATTERN_ID_OFFSET)
            );
        }
    }

    /// A camera stand-in whose frames carry the given capture times.
    struct Timed {
        times: std::vec::IntoIter<u64>,
        next_id: u64,
    }

    impl FrameSource for Timed {
        fn format(&self) -> SourceFormat {
            SourceFormat {
                width: 4,
                height: 2,
                fps_num: 60,
                fps_den: 1,
            }
        }

        fn next_frame(&mut self, _dst: &mut [u8]) -> Result<Option<Captured>, SourceError> {
            Ok(self
                .times
                .next()
                .map(|t| Captured::numbered(&mut self.next_id, t)))
        }
    }

    #[test]
    fn the_pair_is_captured_at_the_later_time_and_its_skew_is_kept() {
        let timed = |times: Vec<u64>| {
            Box::new(Timed {
                times: times.into_iter(),
                next_id: 0,
            })
        };
        let mut s = StereoSource::new(
            timed(vec![1_000, 20_000_000, 40_000_000]),
            timed(vec![1_000, 23_500_000, 38_000_000]),
        )
        .unwrap();
        let mut buf = vec![0u8; s.format().frame_bytes()];
        let got: Vec<(u64, Option<u64>)> = std::iter::from_fn(|| s.next_frame(&mut buf).unwrap())
            .map(|c| (c.capture_ns, c.pair_skew_ns))
            .collect();
        assert_eq!(
            got,
            [
                (1_000, Some(0)),
                (23_500_000, Some(3_500_000)),
                (40_000_000, Some(2_000_000))
            ]
        );
    }

    #[test]
    fn compose_places_every_plane() {
        let (w, h) = (4usize, 2usize);
        let l: Vec<u8> = (0..12).collect();
        let r: Vec<u8> = (100..112).collect();
        let mut d = vec![0u8; 24];
        compose(&mut d, &l, &r, w, h);
        assert_eq!(
            &d[..16],
            &[
                0, 1, 2, 3, 100, 101, 102, 103, 4, 5, 6, 7, 104, 105, 106, 107
            ]
        );
        assert_eq!(&d[16..20], &[8, 9, 108, 109]); // U
        assert_eq!(&d[20..24], &[10, 11, 110, 111]); // V
    }

    #[test]
    fn mismatched_sources_are_refused() {
        let a = SourceFormat {
            width: 320,
            height: 240,
            fps_num: 60,
            fps_den: 1,
        };
        let b = SourceFormat { width: 640, ..a };
        let e = StereoSource::new(
            Box::new(PatternSource::new(a)),
            Box::new(PatternSource::new(b)),
        )
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .contains("left is 320x240 at 60/1 fps, right is 640x240"),
            "{e}"
        );
    }
}
