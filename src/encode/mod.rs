//! H.264 encoding behind one trait, [`VideoEncoder`], with two backends:
//!
//! - [`X264Encoder`] (libx264 through `x264-sys`): the default, and the only one on a
//!   Raspberry Pi 5, which has no H.264 encoder block.
//! - the V4L2 memory-to-memory stateful encoder (feature `v4l2-m2m`, crate `v4l2r`):
//!   bcm2835-codec at `/dev/video11` on the Pi 4 / 3 / Zero 2. Its decisions (controls,
//!   formats, access-unit assembly) are pure code in [`m2m`]; the device code is
//!   `v4l2m2m.rs`.
//!
//! [`open_encoder`] picks the backend from `encoder.backend` ([`choose_backend`]).
//! Both backends keep the same contract: one I420 frame in → its whole access unit out of
//! the same call (Annex-B, SPS/PPS in front of every IDR), IDR on demand, bitrate changes
//! at run time.

pub mod m2m;
#[cfg(feature = "v4l2-m2m")]
mod v4l2m2m;
mod x264;

#[cfg(feature = "v4l2-m2m")]
pub use v4l2m2m::V4l2M2mEncoder;
pub use x264::X264Encoder;

use crate::config::EncoderConfig;
use crate::source::SourceFormat;

/// Errors from the encoders.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// x264 refused the parameters.
    #[error("x264: {0}")]
    Open(String),
    /// An x264 encode call failed.
    #[error("x264_encoder_encode failed with {0}")]
    Encode(i32),
    /// The encoder held the frame back (would add a frame of latency): the settings are
    /// wrong.
    #[error(
        "the encoder held frame {pts} back ({delayed} frames buffered): every frame must come out of its own call"
    )]
    Delayed {
        /// Input pts (frame number).
        pts: i64,
        /// Frames the encoder holds.
        delayed: i32,
    },
    /// The input buffer is not one I420 frame of the configured size.
    #[error("input frame has {got} bytes, expected {want} (I420 {w}x{h})")]
    BadFrame {
        /// Bytes given.
        got: usize,
        /// Bytes of an I420 frame.
        want: usize,
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
    /// `encoder.backend = "v4l2m2m"` but `encoder.device` does not exist.
    #[error(
        "encoder.device {0}: no such device. encoder.backend = \"v4l2m2m\" needs a V4L2 memory-to-memory H.264 encoder (bcm2835-codec at /dev/video11 on a Raspberry Pi 4, 3 or Zero 2; the Pi 5 has none): set encoder.backend = \"x264\" or \"auto\""
    )]
    NoDevice(String),
    /// `encoder.backend = "v4l2m2m"` in a build without the feature.
    #[error(
        "encoder.backend = \"v4l2m2m\": this vr-stream was built without the v4l2-m2m feature (build with `cargo build --release --features v4l2-m2m`), or set encoder.backend = \"x264\""
    )]
    NotBuilt,
    /// The V4L2 device failed or cannot encode the configured stream; names the device.
    #[error("{device}: {message}")]
    Device {
        /// Device path.
        device: String,
        /// What went wrong (the ioctl and errno, or the negotiation error).
        message: String,
    },
}

/// One encoded access unit, borrowed from the encoder until the next call.
pub struct Encoded<'a> {
    /// Annex-B NAL units (start codes included), contiguous.
    pub data: &'a [u8],
    /// The access unit is an IDR (keyframe).
    pub keyframe: bool,
    /// NAL units in it.
    pub nal_count: usize,
    /// Average quantizer of the frame (x264's `i_qpplus1 - 1`); -1 when the encoder does
    /// not report it (V4L2).
    pub qp: i32,
}

/// What the encoder is opened with: the frame format and the `[encoder]` settings (see
/// `config/default.toml`: backend, device, bitrate kbit/s, VBV ms, keyint frames, intra
/// refresh, threads, preset, profile).
#[derive(Debug, Clone)]
pub struct EncoderParams {
    /// Frame size and rate.
    pub format: SourceFormat,
    /// The `[encoder]` configuration.
    pub enc: EncoderConfig,
}

impl EncoderParams {
    /// From the configuration and the source's format.
    pub fn from_config(e: &EncoderConfig, format: SourceFormat) -> EncoderParams {
        EncoderParams {
            format,
            enc: e.clone(),
        }
    }
}

/// An H.264 encoder: one I420 frame in, its access unit out of the same call.
pub trait VideoEncoder: Send {
    /// What it is, for logs: `x264` or `v4l2m2m /dev/video11 (bcm2835-codec)`.
    fn describe(&self) -> String;

    /// The SPS and PPS NAL units (Annex-B) the stream will use, for the SDP's
    /// sprop-parameter-sets.
    fn headers(&mut self) -> Result<Vec<u8>, EncodeError>;

    /// Encodes one I420 frame (`format().frame_bytes()` bytes), forcing an IDR if
    /// `force_idr`. The access unit starts with SPS/PPS when it is an IDR.
    ///
    /// Errors: [`EncodeError::BadFrame`], [`EncodeError::Delayed`] when the frame's access
    /// unit did not come out of this call, and the backend's own failures.
    fn encode(&mut self, i420: &[u8], force_idr: bool) -> Result<Encoded<'_>, EncodeError>;

    /// Changes the target bitrate (kbit/s) from the next frame on; a backend with a
    /// narrower range clamps to it ([`bitrate_kbps`](Self::bitrate_kbps) tells).
    fn set_bitrate(&mut self, kbps: u32) -> Result<(), EncodeError>;

    /// Current target bitrate, kbit/s.
    fn bitrate_kbps(&self) -> u32;
}

impl EncodeError {
    /// Whether `i420` holds one I420 frame of `f` (more is allowed: a ring slot may be
    /// larger). Errors: [`EncodeError::BadFrame`].
    pub fn check_frame(i420: &[u8], f: SourceFormat) -> Result<(), EncodeError> {
        if i420.len() < f.frame_bytes() {
            return Err(EncodeError::BadFrame {
                got: i420.len(),
                want: f.frame_bytes(),
                w: f.width,
                h: f.height,
            });
        }
        Ok(())
    }
}

/// The encoder implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// libx264.
    X264,
    /// The V4L2 M2M stateful encoder at `encoder.device`.
    V4l2M2m,
}

/// This build has the V4L2 M2M backend (feature `v4l2-m2m`).
pub const M2M_BUILT: bool = cfg!(feature = "v4l2-m2m");

/// Chooses the backend from `encoder.backend`, whether `encoder.device` exists and whether
/// this build has the V4L2 backend. `auto`: V4L2 when both, else x264 (with a note when the
/// device is there but the build lacks the feature). Returns the backend and an optional
/// note for the user.
///
/// Errors: `v4l2m2m` without the device ([`EncodeError::NoDevice`], naming it) or without
/// the feature ([`EncodeError::NotBuilt`]).
pub fn choose_backend(
    cfg: &EncoderConfig,
    device_exists: bool,
    m2m_built: bool,
) -> Result<(Backend, Option<String>), EncodeError> {
    match cfg.backend.as_str() {
        "x264" => Ok((Backend::X264, None)),
        "v4l2m2m" if !device_exists => Err(EncodeError::NoDevice(cfg.device.clone())),
        "v4l2m2m" if !m2m_built => Err(EncodeError::NotBuilt),
        "v4l2m2m" => Ok((Backend::V4l2M2m, None)),
        _ if device_exists && m2m_built => Ok((Backend::V4l2M2m, None)),
        _ if device_exists => Ok((
            Backend::X264,
            Some(format!(
                "{} exists but this build has no v4l2-m2m feature: encoding with x264",
                cfg.device
            )),
        )),
        _ => Ok((Backend::X264, None)),
    }
}

/// Opens the encoder `encoder.backend` asks for. With `auto`, a V4L2 device that cannot
/// encode the configured stream (a missing control, an unsupported size) falls back to
/// x264 and says why in the returned notes.
///
/// Errors: those of [`choose_backend`] and of the backend's open.
pub fn open_encoder(
    params: &EncoderParams,
) -> Result<(Box<dyn VideoEncoder>, Vec<String>), EncodeError> {
    let device_exists = std::path::Path::new(&params.enc.device).exists();
    let (backend, note) = choose_backend(&params.enc, device_exists, M2M_BUILT)?;
    let mut notes: Vec<String> = note.into_iter().collect();
    match backend {
        Backend::X264 => Ok((Box::new(X264Encoder::new(params)?), notes)),
        Backend::V4l2M2m => match open_m2m(params, &mut notes) {
            Ok(e) => Ok((e, notes)),
            Err(e) if params.enc.backend == "auto" => {
                notes.push(format!("{e}; encoding with x264 instead"));
                Ok((Box::new(X264Encoder::new(params)?), notes))
            }
            Err(e) => Err(e),
        },
    }
}

#[cfg(feature = "v4l2-m2m")]
fn open_m2m(
    params: &EncoderParams,
    notes: &mut Vec<String>,
) -> Result<Box<dyn VideoEncoder>, EncodeError> {
    let e = V4l2M2mEncoder::open(params)?;
    notes.extend(e.notes().iter().cloned());
    Ok(Box::new(e))
}

#[cfg(not(feature = "v4l2-m2m"))]
fn open_m2m(
    _params: &EncoderParams,
    _notes: &mut Vec<String>,
) -> Result<Box<dyn VideoEncoder>, EncodeError> {
    Err(EncodeError::NotBuilt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(backend: &str) -> EncoderConfig {
        let mut c = crate::config::load(&[]).unwrap().encoder;
        c.backend = backend.into();
        c
    }

    #[test]
    fn backend_choice() {
        assert_eq!(
            choose_backend(&cfg("x264"), true, true).unwrap(),
            (Backend::X264, None)
        );
        assert_eq!(
            choose_backend(&cfg("auto"), true, true).unwrap(),
            (Backend::V4l2M2m, None)
        );
        assert_eq!(
            choose_backend(&cfg("auto"), false, true).unwrap(),
            (Backend::X264, None)
        );
        let (b, note) = choose_backend(&cfg("auto"), true, false).unwrap();
        assert_eq!(b, Backend::X264);
        assert!(
            note.unwrap()
                .starts_with("/dev/video11 exists but this build has no v4l2-m2m feature")
        );
        assert_eq!(
            choose_backend(&cfg("v4l2m2m"), true, true).unwrap(),
            (Backend::V4l2M2m, None)
        );
        let e = choose_backend(&cfg("v4l2m2m"), false, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("encoder.device /dev/video11: no such device."),
            "{e}"
        );
        let e = choose_backend(&cfg("v4l2m2m"), true, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--features v4l2-m2m"), "{e}");
    }

    #[test]
    fn auto_without_the_device_opens_x264() {
        let mut c = cfg("auto");
        c.device = "/nonexistent/video11".into();
        let p = EncoderParams::from_config(
            &c,
            SourceFormat {
                width: 320,
                height: 240,
                fps_num: 30,
                fps_den: 1,
            },
        );
        let (mut e, notes) = open_encoder(&p).unwrap();
        assert_eq!(e.describe(), "x264");
        assert!(notes.is_empty());
        assert!(e.headers().unwrap().starts_with(&[0, 0, 0, 1, 0x67]));
        c.backend = "v4l2m2m".into();
        let err = open_encoder(&EncoderParams::from_config(&c, p.format))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("encoder.device /nonexistent/video11: no such device"),
            "{err}"
        );
    }
}
