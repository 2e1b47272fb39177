//! vr-source: vr-stream's frame sources behind one trait ([`FrameSource`]): Y4M file
//! ([`y4m`]), live pipe (standard input or a FIFO, [`pipe`]), test pattern ([`pattern`]),
//! V4L2 camera ([`v4l2`]), libcamera camera (`libcamera`, feature `libcamera`: the Pi's
//! CSI cameras) and a side-by-side pair of any two ([`stereo`]).
//!
//! Every source delivers I420 (planar 4:2:0: Y `w×h`, U and V `w/2×h/2`, strides = widths)
//! straight into a caller-owned buffer (a frame-ring slot: no copy in between), paced at
//! its frame rate, with a capture timestamp in CLOCK_MONOTONIC ns.
//!
//! A crate of its own so that the camera libraries (v4l, libcamera) are built, linted and
//! tested without the encoder, detector and web stacks: `cargo clippy -p vr-source
//! --features libcamera` checks the libcamera source against the headers alone. Opening a
//! source from vr-stream's configuration is `vr_stream::source::open`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod camera_format;
#[cfg(feature = "libcamera")]
pub mod libcamera;
pub mod pattern;
pub mod pipe;
pub mod stereo;
pub mod v4l2;
pub mod y4m;

use std::path::PathBuf;

/// Frame size and rate of a source: the I420 format every stage agrees on.
pub type SourceFormat = vr_proto::video::VideoFormat;

/// One frame delivered by [`FrameSource::next_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    /// 0-based frame id (keeps counting across a looped file).
    pub frame_id: u64,
    /// Capture time, CLOCK_MONOTONIC ns (sensor/buffer timestamp for cameras, the frame's
    /// scheduled time for files and the pattern).
    pub capture_ns: u64,
    /// For a stereo pair ([`stereo::StereoSource`]): how far apart the two eyes' capture
    /// times are, ns (`|left − right|`); `None` for a single source.
    pub pair_skew_ns: Option<u64>,
}

impl Captured {
    /// Frame number `*next_id`, captured at `capture_ns`; `next_id` moves on by one (how
    /// every source numbers its frames).
    pub fn numbered(next_id: &mut u64, capture_ns: u64) -> Captured {
        let frame_id = *next_id;
        *next_id += 1;
        Captured {
            frame_id,
            capture_ns,
            pair_skew_ns: None,
        }
    }
}

/// Reads into `dst` until it is full or the input ends, retrying `EINTR`: the bytes read
/// (fewer than `dst.len()` only at the end of the input).
///
/// Errors: the first read error other than `Interrupted`.
pub(crate) fn read_full(r: &mut impl std::io::Read, dst: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < dst.len() {
        match r.read(&mut dst[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Errors from opening or reading a source. Every message names the input.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source URI is not one of the allowed forms.
    #[error("source {0:?}: {1}")]
    BadUri(String, String),
    /// The file cannot be opened or read.
    #[error("source file {path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        err: std::io::Error,
    },
    /// The Y4M stream is malformed or of an unsupported kind.
    #[error("source file {path}: {message}")]
    Y4m {
        /// The file.
        path: PathBuf,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A frame ended early.
    #[error("source file {path}: frame {frame} is truncated ({got} of {want} bytes)")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// 0-based frame number.
        frame: u64,
        /// Bytes present.
        got: usize,
        /// Bytes of a frame.
        want: usize,
    },
    /// A pipe source (`-`, `pipe:PATH`) cannot be opened or read, or its stream is not of
    /// the configured format.
    #[error("source {input}: {message}")]
    Pipe {
        /// `-` or `pipe:PATH`.
        input: String,
        /// What is wrong and what to give instead.
        message: String,
    },
    /// A pipe ended inside a frame.
    #[error(
        "source {input}: frame {frame} ends after {got} of {want} bytes, at byte offset {offset} of the stream"
    )]
    PipeTruncated {
        /// `-` or `pipe:PATH`.
        input: String,
        /// 0-based frame number (frames read by this reader).
        frame: u64,
        /// Bytes of the frame read.
        got: usize,
        /// Bytes of a frame.
        want: usize,
        /// Bytes of the stream consumed when it ended.
        offset: u64,
    },
    /// The two sources of a stereo pair do not match.
    #[error("stereo sources: {0}")]
    Stereo(String),
    /// The camera device failed.
    #[error("camera {device}: {message}")]
    Device {
        /// Device path.
        device: String,
        /// What failed.
        message: String,
    },
}

/// A source of I420 frames.
pub trait FrameSource: Send {
    /// Size and rate of the frames.
    fn format(&self) -> SourceFormat;

    /// Blocks until the next frame is due, writes it into `dst` (exactly
    /// `format().frame_bytes()` long) and returns its id and capture time. `Ok(None)` at the
    /// end of a file that does not loop.
    ///
    /// Errors: [`SourceError`] naming the source (truncated frame, device error...).
    fn next_frame(&mut self, dst: &mut [u8]) -> Result<Option<Captured>, SourceError>;

    /// Continues at frame `frame_id` (a restarted camera stage resumes after the last frame
    /// its predecessor published). Live cameras ignore it.
    fn resume_at(&mut self, _frame_id: u64) -> Result<(), SourceError> {
        Ok(())
    }

    /// Whether an error from this source is permanent (a broken file) rather than
    /// transient (a camera that went away): permanent errors are not retried.
    fn is_permanent(&self, e: &SourceError) -> bool {
        !matches!(e, SourceError::Device { .. })
    }
}

/// A parsed `--source` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `pattern`.
    Pattern,
    /// `file:PATH` (a `.y4m` file).
    File(PathBuf),
    /// `-` (standard input) or `pipe:PATH` (a FIFO): a live pipe, never paced.
    Pipe(pipe::PipeInput),
    /// `v4l2:/dev/videoN`.
    V4l2(PathBuf),
    /// `libcamera:N` (camera index) or `libcamera:ID` (CSI cameras; feature `libcamera`).
    Libcamera(String),
}

impl SourceSpec {
    /// Parses a source URI. Error: what is allowed.
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        const ALLOWED: &str = "allowed: pattern, file:PATH.y4m, - (standard input), pipe:PATH (a FIFO), v4l2:/dev/videoN, libcamera:INDEX_OR_ID";
        if s == "pattern" {
            Ok(SourceSpec::Pattern)
        } else if s == "-" {
            Ok(SourceSpec::Pipe(pipe::PipeInput::Stdin))
        } else if let Some(p) = s.strip_prefix("pipe:") {
            if p.is_empty() {
                return Err(format!("empty pipe path; {ALLOWED}"));
            }
            Ok(SourceSpec::Pipe(pipe::PipeInput::Fifo(PathBuf::from(p))))
        } else if let Some(p) = s.strip_prefix("file:") {
            if p.is_empty() {
                return Err(format!("empty file path; {ALLOWED}"));
            }
            Ok(SourceSpec::File(PathBuf::from(p)))
        } else if let Some(p) = s.strip_prefix("v4l2:") {
            if !p.starts_with("/dev/") {
                return Err(format!("not a device path; {ALLOWED}"));
            }
            Ok(SourceSpec::V4l2(PathBuf::from(p)))
        } else if let Some(c) = s.strip_prefix("libcamera:") {
            if c.is_empty() {
                return Err(format!("empty camera index or id; {ALLOWED}"));
            }
            Ok(SourceSpec::Libcamera(c.to_string()))
        } else {
            Err(ALLOWED.to_string())
        }
    }
}

/// Formats a geometry as the stage processes get it on their command line
/// (`--geometry`): `WxH@N/D`, e.g. `1280x720@60/1`.
pub fn format_geometry(f: &SourceFormat) -> String {
    format!("{}x{}@{}/{}", f.width, f.height, f.fps_num, f.fps_den)
}

/// Parses a `WxH@N/D` geometry ([`format_geometry`]); `None` when it is not of that form.
pub fn parse_geometry(s: &str) -> Option<SourceFormat> {
    let (wh, fps) = s.split_once('@')?;
    let (w, h) = wh.split_once('x')?;
    let (n, d) = fps.split_once('/')?;
    Some(SourceFormat {
        width: w.parse().ok()?,
        height: h.parse().ok()?,
        fps_num: n.parse().ok()?,
        fps_den: d.parse().ok()?,
    })
}

/// Opens libcamera camera `camera` (an index into libcamera's list, or a camera id) for
/// `width`×`height` at `fps`, with `buffers` buffers and a fixed exposure of `exposure_us`
/// µs (0: automatic). The same call with or without the `libcamera` feature, so that a
/// caller needs no `cfg` of its own.
///
/// Errors: [`SourceError::Device`] naming `libcamera:CAMERA`: no such camera, a format it
/// cannot give, or this build lacks the feature (the message says how to rebuild).
pub fn open_libcamera(
    camera: &str,
    width: u32,
    height: u32,
    fps: u32,
    buffers: u32,
    exposure_us: u32,
) -> Result<Box<dyn FrameSource>, SourceError> {
    #[cfg(feature = "libcamera")]
    {
        Ok(Box::new(libcamera::LibcameraSource::open(
            camera,
            width,
            height,
            fps,
            buffers,
            exposure_us,
        )?))
    }
    #[cfg(not(feature = "libcamera"))]
    {
        let _ = (width, height, fps, buffers, exposure_us);
        Err(SourceError::Device {
            device: format!("libcamera:{camera}"),
            message: "this vr-stream was built without the libcamera feature: rebuild with `--features libcamera` (needs libcamera >= 0.4, as on Raspberry Pi OS)".into(),
        })
    }
}

/// How early a paced source wakes before a frame's scheduled time, to spin the rest: the
/// timer's wake-up latency (50-250 µs on a VM, tens of µs on an isolated Pi core) would
/// otherwise delay every frame. Costs about this much CPU per frame.
pub const PACER_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// Paces a synthetic source: the absolute CLOCK_MONOTONIC time of frame `n`, a sleep until
/// [`PACER_SPIN`] before it (clock_nanosleep TIMER_ABSTIME, so no drift accumulates), then
/// a spin to the time itself.
pub struct Pacer {
    start_ns: Option<u64>,
    interval_ns: u64,
    /// Frame number that is due at the start (after a resume).
    pub offset: u64,
}

impl Pacer {
    /// A pacer for frames `interval_ns` apart; the clock starts at the first frame.
    pub fn new(interval_ns: u64) -> Pacer {
        Pacer {
            start_ns: None,
            interval_ns,
            offset: 0,
        }
    }

    /// Sleeps until frame `n` is due and returns its scheduled time (ns). A frame that is
    /// already late is returned at once with its scheduled (earlier) time.
    pub fn wait(&mut self, n: u64) -> u64 {
        let start = *self.start_ns.get_or_insert_with(vr_sys::time::monotonic_ns);
        let due = start + n.saturating_sub(self.offset) * self.interval_ns;
        vr_sys::time::sleep_until_ns(due.saturating_sub(PACER_SPIN.as_nanos() as u64));
        while vr_sys::time::monotonic_ns() < due {
            std::hint::spin_loop();
        }
        due
    }
}
