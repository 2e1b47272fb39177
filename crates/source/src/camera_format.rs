//! What the libcamera source accepts from a camera, decided without libcamera (pure: no
//! I/O, tested on every machine; the `libcamera` module, feature `libcamera`, asks the
//! camera and calls this).
//!
//! The source asks for YUV420 (DRM fourcc `YU12`, I420: what the ring carries) at the
//! configured size. libcamera's `validate()` may adjust the request to what the pipeline
//! handler can give: the Raspberry Pi 5's PiSP gives YUV420; others (libcamera's virtual
//! camera, many ISPs) only NV12, which the source converts to I420 in its one copy into the
//! ring slot. A size other than the one asked for is refused, naming the sizes the camera
//! offers: scaling is the ISP's job, and a silently different size would change the
//! stream's SDP and the encoder's settings.

use std::fmt::Write as _;

/// The pixel layout of the camera's buffers the source copies from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraLayout {
    /// YUV420 (`YU12`): three planes, copied as they are.
    I420,
    /// NV12: Y, then interleaved U/V at half height, de-interleaved into I420.
    Nv12,
}

impl CameraLayout {
    /// The DRM fourcc of the layout, as libcamera names pixel formats.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            CameraLayout::I420 => *b"YU12",
            CameraLayout::Nv12 => *b"NV12",
        }
    }

    /// The layout of a DRM fourcc, if the source can copy it.
    pub fn from_fourcc(fourcc: [u8; 4]) -> Option<CameraLayout> {
        match &fourcc {
            b"YU12" => Some(CameraLayout::I420),
            b"NV12" => Some(CameraLayout::Nv12),
            _ => None,
        }
    }
}

/// One pixel format a camera's stream offers, with its discrete frame sizes (width,
/// height; libcamera's `StreamFormats::sizes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// DRM fourcc (`YU12`, `NV12`, `RGB3`...).
    pub fourcc: [u8; 4],
    /// Frame sizes, pixels.
    pub sizes: Vec<(u32, u32)>,
}

/// Decides whether the configuration libcamera settled on (`got`: fourcc and size, after
/// `validate()`) is usable for `want` (width, height): the layout to copy from.
///
/// Errors: a message (the caller prefixes the camera) naming what was asked for, what the
/// camera gave and what it `offers` in the formats the source can copy: a size other than
/// `want`, or a pixel format other than YUV420 and NV12.
pub fn accept(
    want: (u32, u32),
    got: ([u8; 4], (u32, u32)),
    offers: &[Offered],
) -> Result<CameraLayout, String> {
    let (fourcc, size) = got;
    let layout = CameraLayout::from_fourcc(fourcc);
    if let Some(l) = layout.filter(|_| size == want) {
        return Ok(l);
    }
    let (w, h) = want;
    let mut m = format!(
        "{w}x{h} in YUV420 or NV12 is not offered (the camera adjusted the request to {}x{} {})",
        size.0,
        size.1,
        fourcc_text(fourcc)
    );
    let usable: Vec<Offered> = offers
        .iter()
        .filter(|o| CameraLayout::from_fourcc(o.fourcc).is_some())
        .cloned()
        .collect();
    if usable.is_empty() {
        let _ = write!(
            m,
            "; it offers {} and the source copies only YUV420 and NV12",
            offers_text(offers)
        );
    } else {
        let _ = write!(
            m,
            "; {} (--width/--height, source.width/height)",
            offers_text(&usable)
        );
    }
    Err(m)
}

/// Notices a camera that delivers frames faster than the rate asked for: one whose pipeline
/// handler does not honour `FrameDurationLimits` (libcamera 0.7's virtual camera completes
/// each request as soon as it is queued, ~1000 frames/s here; a sensor that cannot run as
/// slowly as asked). Fed the sensor timestamps of the delivered frames; three frames in a
/// row less than half a frame interval apart turn pacing on for good: the source then
/// queues its requests no closer than one frame interval, so that the camera delivers at
/// the configured rate instead of burning a CPU on frames that latest-wins drops. A camera
/// that honours the limits is never paced (its frames are one interval apart).
#[derive(Debug, Clone)]
pub struct FastCamera {
    interval_ns: u64,
    last_ns: Option<u64>,
    run: u32,
    pacing: bool,
}

impl FastCamera {
    /// For frames `interval_ns` apart (1 s / fps), ns.
    pub fn new(interval_ns: u64) -> FastCamera {
        FastCamera {
            interval_ns,
            last_ns: None,
            run: 0,
            pacing: false,
        }
    }

    /// A frame captured at `sensor_ns` (any clock, ns; non-decreasing): true when this
    /// frame turned pacing on (once).
    pub fn observe(&mut self, sensor_ns: u64) -> bool {
        let close = self
            .last_ns
            .is_some_and(|l| sensor_ns.saturating_sub(l) < self.interval_ns / 2);
        self.last_ns = Some(sensor_ns);
        self.run = if close { self.run + 1 } else { 0 };
        if self.run >= 3 && !self.pacing {
            self.pacing = true;
            return true;
        }
        false
    }

    /// Whether requests are to be queued one frame interval apart.
    pub fn pacing(&self) -> bool {
        self.pacing
    }
}

/// What a camera offers, as text: `NV12 at 1280x720, 1920x1080; RGB3 at 640x480`
/// (`no formats` for none).
pub fn offers_text(offers: &[Offered]) -> String {
    if offers.is_empty() {
        return "no formats".into();
    }
    let one = |o: &Offered| {
        let mut sizes: Vec<String> = o.sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect();
        sizes.dedup();
        if sizes.is_empty() {
            fourcc_text(o.fourcc)
        } else {
            format!("{} at {}", fourcc_text(o.fourcc), sizes.join(", "))
        }
    };
    offers.iter().map(one).collect::<Vec<_>>().join("; ")
}

/// A fourcc as text (`NV12`); bytes outside ASCII graphics as `?`.
pub fn fourcc_text(fourcc: [u8; 4]) -> String {
    fourcc
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers() -> Vec<Offered> {
        vec![
            Offered {
                fourcc: *b"NV12",
                sizes: vec![(1280, 720), (1920, 1080)],
            },
            Offered {
                fourcc: *b"RGB3",
                sizes: vec![(640, 480)],
            },
        ]
    }

    #[test]
    fn yuv420_and_nv12_at_the_size_asked_for_are_taken() {
        let o = offers();
        assert_eq!(
            accept((1280, 720), (*b"YU12", (1280, 720)), &o),
            Ok(CameraLayout::I420)
        );
        assert_eq!(
            accept((1280, 720), (*b"NV12", (1280, 720)), &o),
            Ok(CameraLayout::Nv12)
        );
    }

    #[test]
    fn another_size_is_refused_naming_the_sizes_offered() {
        let e = accept((1000, 500), (*b"NV12", (1280, 720)), &offers()).unwrap_err();
        assert_eq!(
            e,
            "1000x500 in YUV420 or NV12 is not offered (the camera adjusted the request to \
             1280x720 NV12); NV12 at 1280x720, 1920x1080 (--width/--height, source.width/height)"
        );
    }

    #[test]
    fn a_format_the_source_cannot_copy_is_refused_naming_the_formats() {
        let only_rgb = vec![Offered {
            fourcc: *b"RGB3",
            sizes: vec![(1280, 720)],
        }];
        let e = accept((1280, 720), (*b"RGB3", (1280, 720)), &only_rgb).unwrap_err();
        assert!(e.contains("adjusted the request to 1280x720 RGB3"), "{e}");
        assert!(
            e.ends_with("it offers RGB3 at 1280x720 and the source copies only YUV420 and NV12"),
            "{e}"
        );
        let e = accept((1280, 720), ([0, 1, b'A', b'B'], (1280, 720)), &[]).unwrap_err();
        assert!(
            e.contains("??AB")
                && e.ends_with("it offers no formats and the source copies only YUV420 and NV12"),
            "{e}"
        );
    }

    #[test]
    fn a_camera_faster_than_asked_is_paced_after_three_close_frames() {
        let ms = 1_000_000u64;
        // 60 fps asked for: 16.7 ms. A camera that honours it is never paced, jitter or not.
        let mut ok = FastCamera::new(16_666_667);
        for i in 0..100u64 {
            assert!(!ok.observe(i * 16_666_667 + (i % 3) * 2 * ms));
        }
        assert!(!ok.pacing());
        // One early frame (a dropped-and-resent request) is not enough.
        let mut once = FastCamera::new(16_666_667);
        for t in [0, 17, 34, 35, 52, 69] {
            assert!(!once.observe(t * ms));
        }
        assert!(!once.pacing());
        // libcamera's virtual camera: 1 ms apart. The third close frame turns pacing on,
        // once.
        let mut fast = FastCamera::new(16_666_667);
        let turned: Vec<bool> = (0..6).map(|i| fast.observe(i * ms)).collect();
        assert_eq!(turned, [false, false, false, true, false, false]);
        assert!(fast.pacing());
    }

    #[test]
    fn fourccs_round_trip() {
        for l in [CameraLayout::I420, CameraLayout::Nv12] {
            assert_eq!(CameraLayout::from_fourcc(l.fourcc()), Some(l));
        }
        assert_eq!(CameraLayout::from_fourcc(*b"YUYV"), None);
    }
}
