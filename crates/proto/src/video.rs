//! The raw video every stage agrees on: I420 frames (8-bit Y plane, then the U and V
//! planes at half width and half height, no padding: `FORMAT_I420` of the frame ring) of a
//! fixed size, at a fixed rate. A source delivers this format, the frame ring's geometry
//! holds it, the encoder is configured from it.

/// Frame size and rate of a stream of I420 frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFormat {
    /// Width, pixels (even).
    pub width: u32,
    /// Height, pixels (even).
    pub height: u32,
    /// Frame rate numerator: `fps_num / fps_den` frames per second.
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
}

impl VideoFormat {
    /// Bytes of one I420 frame: `width × height` of Y, then two chroma planes of
    /// `(width / 2) × (height / 2)`.
    pub fn frame_bytes(&self) -> usize {
        let (w, h) = (self.width as usize, self.height as usize);
        w * h + 2 * (w / 2) * (h / 2)
    }

    /// Time between frames, ns (`fps_den / fps_num` s; a zero `fps_num` counts as 1).
    pub fn frame_interval_ns(&self) -> u64 {
        1_000_000_000u64 * u64::from(self.fps_den) / u64::from(self.fps_num.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i420_size_and_interval() {
        let f = VideoFormat {
            width: 1280,
            height: 720,
            fps_num: 60,
            fps_den: 1,
        };
        assert_eq!(f.frame_bytes(), 1280 * 720 * 3 / 2);
        assert_eq!(f.frame_interval_ns(), 16_666_666);
        let ntsc = VideoFormat {
            fps_num: 30_000,
            fps_den: 1001,
            ..f
        };
        assert_eq!(ntsc.frame_interval_ns(), 33_366_666);
        let broken = VideoFormat { fps_num: 0, ..f };
        assert_eq!(broken.frame_interval_ns(), 1_000_000_000);
    }
}
