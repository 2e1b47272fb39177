//! Live pipe source: frames read from standard input (`--source -`) or a FIFO
//! (`--source pipe:PATH`) as a writer produces them, as in
//! `rpicam-vid --codec yuv420 -o - | vr-stream --source - --pipe-format i420 ...`.
//!
//! Two stream formats (`source.pipe_format`):
//! - `y4m`: a YUV4MPEG2 stream (header line, then `FRAME` lines each followed by one I420
//!   frame), as `ffmpeg -f yuv4mpegpipe -` writes it; size and rate come from its header.
//! - `i420`: bare I420 frames back to back (Y `w×h`, U and V `w/2×h/2`), the size and rate
//!   given by `source.width/height/fps`, as `rpicam-vid --codec yuv420 -o -` writes them.
//!
//! The pipe is opened once. Frames are never paced by our clock: a frame's capture time is
//! the CLOCK_MONOTONIC time at which its last byte has been read. A clean end of input at a
//! frame boundary ends the stream; an end of input inside a frame is
//! [`SourceError::PipeTruncated`], which names the byte offset in the stream.
//!
//! Within a running `vr-stream`, the supervisor opens the pipe and reads the Y4M header
//! (it needs the frame size before the stages start), then hands the open pipe to the
//! camera stage as its standard input ([`STDIN_ENV`]): the camera stage reads only frames.

use super::y4m::{FrameLine, MAX_HEADER, parse_header, read_frame_line};
use super::{Captured, FrameSource, SourceError, SourceFormat};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

/// Set by the supervisor for the camera stage when its standard input is the pipe, already
/// past the Y4M header; the value is `GEOMETRY,HEADER_LEN`: the stream's geometry (`WxH@N/D`,
/// [`crate::format_geometry`]) and the bytes of header the supervisor read.
pub const STDIN_ENV: &str = "VR_STREAM_PIPE_STDIN";

/// Where the frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeInput {
    /// Standard input (`--source -`).
    Stdin,
    /// A named pipe, or any readable file read without pacing (`--source pipe:PATH`).
    Fifo(PathBuf),
}

impl PipeInput {
    /// How the input is named in messages: `-` or `pipe:PATH`.
    pub fn name(&self) -> String {
        match self {
            PipeInput::Stdin => "-".into(),
            PipeInput::Fifo(p) => format!("pipe:{}", p.display()),
        }
    }
}

/// The stream format of a pipe (`source.pipe_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeFormat {
    /// YUV4MPEG2: header line, `FRAME` line before each frame.
    Y4m,
    /// Bare I420 frames of the configured size.
    I420,
}

impl PipeFormat {
    /// Parses `y4m` or `i420`. Error: what is allowed.
    pub fn parse(s: &str) -> Result<PipeFormat, String> {
        match s {
            "y4m" => Ok(PipeFormat::Y4m),
            "i420" => Ok(PipeFormat::I420),
            _ => Err("allowed: y4m (YUV4MPEG2 stream), i420 (bare I420 frames of source.width x source.height at source.fps)".into()),
        }
    }
}

const RAW_HINT: &str = "for bare I420 frames (`rpicam-vid --codec yuv420 -o -`) give --pipe-format i420 with --width, --height and --fps";

/// Opens `input` once and, for [`PipeFormat::Y4m`], reads its header line byte by byte (so
/// that nothing past it is consumed). `raw` is the size and rate of [`PipeFormat::I420`]
/// frames. Returns the open input, the stream's format and the bytes of header read.
///
/// Errors: [`SourceError::Io`] (cannot open or read), [`SourceError::Y4m`] (no or a bad
/// Y4M header: the message says what to give for bare frames).
pub fn open_input(
    input: &PipeInput,
    format: PipeFormat,
    raw: SourceFormat,
) -> Result<(File, SourceFormat, u64), SourceError> {
    let name = input.name();
    let io = |err: std::io::Error| SourceError::Pipe {
        input: name.clone(),
        message: err.to_string(),
    };
    let mut f = match input {
        PipeInput::Stdin => {
            use std::os::fd::AsFd;
            File::from(std::io::stdin().as_fd().try_clone_to_owned().map_err(io)?)
        }
        // Opening a FIFO blocks until a writer opens it, as for any reader.
        PipeInput::Fifo(p) => File::open(p).map_err(io)?,
    };
    if f.metadata().map_err(io)?.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a directory",
        )));
    }
    if format == PipeFormat::I420 {
        return Ok((f, raw, 0));
    }
    let y4m_err = |message: String| SourceError::Pipe {
        input: name.clone(),
        message,
    };
    let sig = b"YUV4MPEG2";
    let mut line = Vec::with_capacity(128);
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b) {
            Ok(0) => {
                return Err(y4m_err(if line.is_empty() {
                    format!("empty input: no Y4M header; {RAW_HINT}")
                } else {
                    format!("input ends inside the Y4M header; {RAW_HINT}")
                }));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
        let n = line.len().min(sig.len());
        if line[..n] != sig[..n] {
            return Err(y4m_err(format!(
                "missing YUV4MPEG2 signature: not a Y4M stream; {RAW_HINT}"
            )));
        }
        if line.len() >= MAX_HEADER {
            return Err(y4m_err(format!(
                "no Y4M header line within {MAX_HEADER} bytes"
            )));
        }
    }
    let hdr = parse_header(&line).map_err(y4m_err)?;
    Ok((f, hdr.format, line.len() as u64 + 1))
}

/// Enlarges the pipe `file` reads from (F_SETPIPE_SZ, fcntl(2)) to hold `bytes`, rounded up
/// to a power of two, or as much as `/proc/sys/fs/pipe-max-size` allows an unprivileged
/// process (1 MiB by default). With the default 64 KiB, a 720p I420 frame (1.3 MiB) crosses
/// in about 22 writer/reader round trips, about 2 ms here; in one that fits, the writer
/// copies the frame in and the reader copies it out once. Returns the pipe's size after,
/// or None when `file` is not a pipe (a regular file given as `-`).
pub fn grow_pipe(file: &File, bytes: usize) -> Option<usize> {
    use nix::fcntl::{FcntlArg, fcntl};
    let want = bytes.next_power_of_two().clamp(1 << 16, 1 << 26);
    let now = fcntl(file, FcntlArg::F_GETPIPE_SZ).ok()? as usize;
    if now >= want {
        return Some(now);
    }
    if let Ok(n) = fcntl(file, FcntlArg::F_SETPIPE_SZ(want as i32)) {
        return Some(n as usize);
    }
    // Not permitted beyond pipe-max-size without CAP_SYS_RESOURCE: as large as allowed.
    let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if max > now {
        let _ = fcntl(file, FcntlArg::F_SETPIPE_SZ(max.min(want) as i32));
    }
    fcntl(file, FcntlArg::F_GETPIPE_SZ).ok().map(|n| n as usize)
}

/// A live pipe of frames: reads each frame straight into the caller's buffer, never paced.
pub struct PipeSource {
    name: String,
    reader: BufReader<File>,
    format: SourceFormat,
    y4m: bool,
    next_id: u64,
    /// Frames read by this reader.
    frames: u64,
    /// Bytes of the stream consumed so far (header included when it read it).
    offset: u64,
    /// The next frame's `FRAME` line has been consumed already (after a resync).
    line_done: bool,
}

impl PipeSource {
    /// Opens `input` ([`open_input`]) and reads frames from it.
    pub fn open(
        input: &PipeInput,
        format: PipeFormat,
        raw: SourceFormat,
    ) -> Result<PipeSource, SourceError> {
        let (f, fmt, header_len) = open_input(input, format, raw)?;
        Ok(PipeSource::from_open(
            input.name(),
            f,
            format,
            fmt,
            header_len,
        ))
    }

    /// Reads frames of `fmt` from `file`, already past any Y4M header (`header_len` bytes,
    /// where byte offsets in messages start); `name` is how the input is named in messages.
    /// A pipe is enlarged to hold a whole frame ([`grow_pipe`]).
    pub fn from_open(
        name: String,
        file: File,
        format: PipeFormat,
        fmt: SourceFormat,
        header_len: u64,
    ) -> Self {
        grow_pipe(&file, fmt.frame_bytes() + 64);
        PipeSource {
            name,
            // Small: frame data bypasses the buffer (reads larger than it go straight into
            // the ring slot); it only spares a syscall per byte of the FRAME lines.
            reader: BufReader::with_capacity(4096, file),
            format: fmt,
            y4m: format == PipeFormat::Y4m,
            next_id: 0,
            frames: 0,
            offset: header_len,
            line_done: false,
        }
    }

    /// The camera stage's source when the supervisor handed it the pipe as standard input
    /// ([`STDIN_ENV`] holds `GEOMETRY,HEADER_LEN`); None when not started that way.
    pub fn from_stage_stdin(name: String, format: PipeFormat) -> Option<PipeSource> {
        let v = std::env::var(STDIN_ENV).ok()?;
        let (geometry, header_len) = v.split_once(',')?;
        let fmt = crate::parse_geometry(geometry)?;
        use std::os::fd::AsFd;
        let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        Some(PipeSource::from_open(
            name,
            File::from(fd),
            format,
            fmt,
            header_len.parse().ok()?,
        ))
    }

    fn err(&self, message: String) -> SourceError {
        SourceError::Pipe {
            input: self.name.clone(),
            message,
        }
    }

    fn io(&self, err: std::io::Error) -> SourceError {
        self.err(err.to_string())
    }

    /// Reads a `FRAME` line. Ok(false) at a clean end of input.
    fn frame_line(&mut self) -> Result<bool, SourceError> {
        let at = self.offset;
        match read_frame_line(&mut self.reader).map_err(|e| self.io(e))? {
            FrameLine::End => Ok(false),
            FrameLine::Frame(n) => {
                self.offset += n as u64;
                Ok(true)
            }
            FrameLine::Other(n) => {
                self.offset += n as u64;
                Err(self.err(format!(
                    "frame {}: expected a FRAME line at byte offset {at} of the stream",
                    self.frames
                )))
            }
        }
    }

    /// Skips to just past the next `FRAME` line (a restarted camera stage does not know
    /// where its predecessor stopped reading).
    fn resync(&mut self) -> Result<(), SourceError> {
        let mut window = [0u8; 5];
        let mut b = [0u8; 1];
        loop {
            match self.reader.read(&mut b) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io(e)),
            }
            self.offset += 1;
            window.rotate_left(1);
            window[4] = b[0];
            if &window == b"FRAME" {
                let mut rest = Vec::new();
                let r = (&mut self.reader).take(256).read_until(b'\n', &mut rest);
                r.map_err(|e| self.io(e))?;
                self.offset += rest.len() as u64;
                self.line_done = rest.last() == Some(&b'\n');
                return Ok(());
            }
        }
    }
}

impl FrameSource for PipeSource {
    fn format(&self) -> SourceFormat {
        self.format
    }

    /// Blocks until the whole next frame has been read into `dst`; its capture time is
    /// then. `Ok(None)` at the end of input on a frame boundary.
    fn next_frame(&mut self, dst: &mut [u8]) -> Result<Option<Captured>, SourceError> {
        if self.y4m && !std::mem::take(&mut self.line_done) && !self.frame_line()? {
            return Ok(None);
        }
        let start = self.offset;
        let got = super::read_full(&mut self.reader, dst).map_err(|e| self.io(e))?;
        self.offset += got as u64;
        if got == 0 && !self.y4m {
            return Ok(None);
        }
        if got < dst.len() {
            return Err(SourceError::PipeTruncated {
                input: self.name.clone(),
                frame: self.frames,
                got,
                want: dst.len(),
                offset: self.offset,
            });
        }
        if self.frames == 0 && !self.y4m && dst.starts_with(b"YUV4MPEG2") {
            return Err(self.err(format!(
                "the input is a Y4M stream (it starts with YUV4MPEG2, byte offset {start}), not bare I420 frames: give --pipe-format y4m"
            )));
        }
        let capture_ns = vr_sys::time::monotonic_ns();
        self.frames += 1;
        Ok(Some(Captured::numbered(&mut self.next_id, capture_ns)))
    }

    /// Numbers frames on from `frame_id` (a restarted camera stage). A Y4M stream skips to
    /// the next `FRAME` line, since the stage before may have died inside a frame; bare
    /// I420 has no marker to find a frame boundary by, so it cannot go on.
    ///
    /// Errors: [`SourceError::Pipe`] for bare I420.
    fn resume_at(&mut self, frame_id: u64) -> Result<(), SourceError> {
        self.next_id = frame_id;
        if self.y4m {
            self.resync()
        } else {
            Err(self.err("bare I420 frames from a pipe cannot be resumed after the camera stage restarted (nothing marks where a frame starts); a Y4M stream can".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fmt(w: u32, h: u32) -> SourceFormat {
        SourceFormat {
            width: w,
            height: h,
            fps_num: 60,
            fps_den: 1,
        }
    }

    /// A FIFO written by a thread, so the reads are from a real pipe.
    fn fifo_with(bytes: Vec<u8>) -> (tempfile::TempDir, PipeInput, std::thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let q = p.clone();
        let t = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(q).unwrap();
            let _ = f.write_all(&bytes);
        });
        (dir, PipeInput::Fifo(p), t)
    }

    /// A Y4M stream: `header`, then three 16x16 I420 frames filled with `first`,
    /// `first + 1`, `first + 2`.
    fn y4m_16x16(header: &str, first: u8) -> Vec<u8> {
        let mut bytes = header.as_bytes().to_vec();
        for i in 0..3u8 {
            bytes.extend_from_slice(b"FRAME\n");
            bytes.extend(std::iter::repeat_n(first + i, 16 * 16 * 3 / 2));
        }
        bytes
    }

    #[test]
    fn y4m_pipe_frames_in_order_then_end() {
        let frame = 16 * 16 * 3 / 2;
        let bytes = y4m_16x16("YUV4MPEG2 W16 H16 F30:1 Ip C420jpeg\n", 0);
        let (_d, input, t) = fifo_with(bytes);
        let mut s = PipeSource::open(&input, PipeFormat::Y4m, fmt(64, 64)).unwrap();
        assert_eq!(
            s.format(),
            SourceFormat {
                fps_num: 30,
                ..fmt(16, 16)
            }
        );
        let mut buf = vec![0u8; frame];
        let mut last = 0;
        for i in 0..3u64 {
            let c = s.next_frame(&mut buf).unwrap().unwrap();
            assert_eq!(c.frame_id, i);
            assert!(c.capture_ns >= last);
            last = c.capture_ns;
            assert!(buf.iter().all(|&b| b as u64 == i));
        }
        assert!(s.next_frame(&mut buf).unwrap().is_none());
        t.join().unwrap();
    }

    #[test]
    fn a_pipe_grows_to_hold_a_frame() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let f = File::from(r);
        let n = grow_pipe(&f, 1280 * 720 * 3 / 2).unwrap();
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Root may go past pipe-max-size; anyone gets at least that much.
        assert!(n >= (1 << 21).min(max), "{n}");
        let file = tempfile::tempfile().unwrap();
        assert_eq!(grow_pipe(&file, 1 << 20), None, "not a pipe");
    }

    #[test]
    fn raw_truncated_names_the_byte_offset() {
        let frame = 16 * 16 * 3 / 2;
        let mut bytes = vec![7u8; frame * 2];
        bytes.extend(vec![1u8; 100]);
        let (_d, input, t) = fifo_with(bytes);
        let mut s = PipeSource::open(&input, PipeFormat::I420, fmt(16, 16)).unwrap();
        let mut buf = vec![0u8; frame];
        s.next_frame(&mut buf).unwrap().unwrap();
        s.next_frame(&mut buf).unwrap().unwrap();
        let e = s.next_frame(&mut buf).unwrap_err().to_string();
        assert!(
            e.contains("frame 2 ends after 100 of 384 bytes") && e.contains("byte offset 868"),
            "{e}"
        );
        t.join().unwrap();
    }

    #[test]
    fn headerless_y4m_and_y4m_as_raw_are_refused_with_the_fix() {
        let (_d, input, t) = fifo_with(vec![0x10; 4000]);
        let e = PipeSource::open(&input, PipeFormat::Y4m, fmt(16, 16))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("missing YUV4MPEG2 signature") && e.contains("--pipe-format i420"),
            "{e}"
        );
        drop(t);
        let mut bytes = b"YUV4MPEG2 W16 H16 F30:1\nFRAME\n".to_vec();
        bytes.extend(vec![0u8; 2000]);
        let (_d2, input, t2) = fifo_with(bytes);
        let mut s = PipeSource::open(&input, PipeFormat::I420, fmt(16, 16)).unwrap();
        let e = s.next_frame(&mut vec![0u8; 384]).unwrap_err().to_string();
        assert!(e.contains("give --pipe-format y4m"), "{e}");
        t2.join().unwrap();
        assert!(
            PipeFormat::parse("nv12")
                .unwrap_err()
                .contains("allowed: y4m")
        );
    }

    #[test]
    fn y4m_resync_after_a_restart_finds_the_next_frame() {
        let frame = 16 * 16 * 3 / 2;
        let bytes = y4m_16x16("YUV4MPEG2 W16 H16 F30:1\n", 1);
        let (_d, input, t) = fifo_with(bytes);
        let (mut f, fm, hl) = open_input(&input, PipeFormat::Y4m, fmt(16, 16)).unwrap();
        // The previous reader died 100 bytes into frame 0.
        let mut skip = vec![0u8; 106];
        f.read_exact(&mut skip).unwrap();
        let mut s = PipeSource::from_open("-".into(), f, PipeFormat::Y4m, fm, hl);
        s.resume_at(5).unwrap();
        let mut buf = vec![0u8; frame];
        let c = s.next_frame(&mut buf).unwrap().unwrap();
        assert_eq!(c.frame_id, 5);
        assert!(buf.iter().all(|&b| b == 2), "frame 1's bytes");
        t.join().unwrap();
    }
}
