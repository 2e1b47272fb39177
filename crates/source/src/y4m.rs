//! YUV4MPEG2 (Y4M) file source.
//!
//! Hand-rolled on purpose: the `y4m` crate decodes each frame into its own buffer, while
//! this source reads the frame bytes straight into the frame-ring slot (no copy), and the
//! format is one header line plus `FRAME` lines. Grammar (from the mjpegtools yuv4mpeg(5)
//! page): `YUV4MPEG2` then space-separated tagged parameters `W<width> H<height>
//! F<num>:<den> I<interlace> A<aspect> C<colorspace> X<comment>`, `\n`; then per frame
//! `FRAME` (optionally with parameters) `\n` and the planar frame data.
//!
//! Accepted: 4:2:0 8-bit (`C420`, `C420jpeg`, `C420paldv`, `C420mpeg2`, or no `C`),
//! progressive (`Ip`, `I?` or no `I`), even width and height.

use super::{Captured, FrameSource, Pacer, SourceError, SourceFormat};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What stood where a Y4M stream's next `FRAME` line belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameLine {
    /// The end of the input, before any byte: a clean end between frames.
    End,
    /// A `FRAME` line (with any parameters) and its newline, this many bytes.
    Frame(usize),
    /// Anything else, or no newline within 256 bytes: this many bytes were consumed.
    Other(usize),
}

/// Reads the line before a frame's planes from a Y4M stream (a file or a pipe): `FRAME`,
/// optional parameters, `\n`, at most 256 bytes read.
///
/// Errors: the reader's.
pub(crate) fn read_frame_line(r: &mut impl BufRead) -> std::io::Result<FrameLine> {
    let mut line = Vec::with_capacity(16);
    r.take(256).read_until(b'\n', &mut line)?;
    Ok(if line.is_empty() {
        FrameLine::End
    } else if line.starts_with(b"FRAME") && line.last() == Some(&b'\n') {
        FrameLine::Frame(line.len())
    } else {
        FrameLine::Other(line.len())
    })
}

/// The parsed stream header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Y4mHeader {
    /// Frame size and rate.
    pub format: SourceFormat,
}

/// Longest header line accepted, bytes.
pub const MAX_HEADER: usize = 4096;

/// Parses the header line (without its `\n`). Pure; the error says what is wrong and what
/// is allowed.
pub fn parse_header(line: &[u8]) -> Result<Y4mHeader, String> {
    if !line.is_ascii() {
        return Err("header is not ASCII: not a Y4M file".into());
    }
    // ASCII checked above, so this cannot fail and `split_at(1)` below is on a char boundary.
    let line =
        std::str::from_utf8(line).map_err(|_| "header is not ASCII: not a Y4M file".to_string())?;
    let mut it = line.split(' ').filter(|t| !t.is_empty());
    if it.next() != Some("YUV4MPEG2") {
        return Err("missing YUV4MPEG2 signature: not a Y4M file".into());
    }
    let (mut w, mut h, mut fps) = (None, None, None);
    for tok in it {
        let (tag, val) = tok.split_at(1);
        match tag {
            "W" => {
                w = Some(
                    val.parse::<u32>()
                        .map_err(|_| format!("bad width W{val}"))?,
                )
            }
            "H" => {
                h = Some(
                    val.parse::<u32>()
                        .map_err(|_| format!("bad height H{val}"))?,
                )
            }
            "F" => {
                let (n, d) = val
                    .split_once(':')
                    .ok_or_else(|| format!("bad frame rate F{val}: expected F<num>:<den>"))?;
                let n: u32 = n.parse().map_err(|_| format!("bad frame rate F{val}"))?;
                let d: u32 = d.parse().map_err(|_| format!("bad frame rate F{val}"))?;
                if n == 0 || d == 0 || n / d > 1000 {
                    return Err(format!(
                        "frame rate F{val} out of range: allowed 1..=1000 frames/s"
                    ));
                }
                fps = Some((n, d));
            }
            "I" => {
                if !matches!(val, "p" | "?") {
                    return Err(format!(
                        "interlace I{val} not supported: allowed Ip (progressive)"
                    ));
                }
            }
            "C" => {
                if !matches!(val, "420" | "420jpeg" | "420paldv" | "420mpeg2") {
                    return Err(format!(
                        "colorspace C{val} not supported: allowed C420, C420jpeg, C420paldv, C420mpeg2 (8-bit 4:2:0)"
                    ));
                }
            }
            "A" | "X" => {}
            _ => return Err(format!("unknown header parameter {tok:?}")),
        }
    }
    let w = w.ok_or("missing width (W) parameter")?;
    let h = h.ok_or("missing height (H) parameter")?;
    let (fps_num, fps_den) = fps.ok_or("missing frame rate (F) parameter")?;
    if w == 0 || h == 0 || w > 8192 || h > 8192 {
        return Err(format!(
            "frame size {w}x{h} out of range: allowed 16..=8192"
        ));
    }
    if w % 2 != 0 || h % 2 != 0 {
        return Err(format!(
            "odd frame size {w}x{h}: 4:2:0 needs even width and height"
        ));
    }
    if w < 16 || h < 16 {
        return Err(format!(
            "frame size {w}x{h} out of range: allowed 16..=8192"
        ));
    }
    Ok(Y4mHeader {
        format: SourceFormat {
            width: w,
            height: h,
            fps_num,
            fps_den,
        },
    })
}

/// Reads just the header of `path` (to size the frame ring before the stages start).
pub fn probe(path: &Path) -> Result<Y4mHeader, SourceError> {
    let (_, hdr, _) = open_reader(path)?;
    Ok(hdr)
}

fn open_reader(path: &Path) -> Result<(BufReader<File>, Y4mHeader, u64), SourceError> {
    let io = |err| SourceError::Io {
        path: path.to_path_buf(),
        err,
    };
    let f = File::open(path).map_err(io)?;
    if f.metadata().map_err(io)?.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a directory",
        )));
    }
    let mut r = BufReader::with_capacity(1 << 16, f);
    let mut line = Vec::new();
    (&mut r)
        .take(MAX_HEADER as u64)
        .read_until(b'\n', &mut line)
        .map_err(io)?;
    if line.last() != Some(&b'\n') {
        let msg = if line.is_empty() {
            "empty file: not a Y4M file".to_string()
        } else {
            format!("no Y4M header line within {MAX_HEADER} bytes: not a Y4M file")
        };
        return Err(SourceError::Y4m {
            path: path.to_path_buf(),
            message: msg,
        });
    }
    line.pop();
    let hdr = parse_header(&line).map_err(|message| SourceError::Y4m {
        path: path.to_path_buf(),
        message,
    })?;
    let data_start = line.len() as u64 + 1;
    Ok((r, hdr, data_start))
}

/// A Y4M file played at its frame rate.
pub struct Y4mSource {
    path: PathBuf,
    reader: BufReader<File>,
    header: Y4mHeader,
    data_start: u64,
    looping: bool,
    next_id: u64,
    frame_in_file: u64,
    pacer: Pacer,
}

impl Y4mSource {
    /// Opens `path` and parses its header. With `looping`, the file restarts at its end.
    pub fn open(path: &Path, looping: bool) -> Result<Y4mSource, SourceError> {
        let (reader, header, data_start) = open_reader(path)?;
        Ok(Y4mSource {
            path: path.to_path_buf(),
            reader,
            header,
            data_start,
            looping,
            next_id: 0,
            frame_in_file: 0,
            pacer: Pacer::new(header.format.frame_interval_ns()),
        })
    }

    /// `err`, from reading this file, as the source's error.
    fn io(&self, err: std::io::Error) -> SourceError {
        SourceError::Io {
            path: self.path.clone(),
            err,
        }
    }

    /// The error for the current frame ending after `got` of its `want` bytes.
    fn truncated(&self, got: usize, want: usize) -> SourceError {
        SourceError::Truncated {
            path: self.path.clone(),
            frame: self.frame_in_file,
            got,
            want,
        }
    }

    /// Reads one frame (its `FRAME` line, then the planes) into `dst`; Ok(false) at the end
    /// of the file.
    fn read_frame(&mut self, dst: &mut [u8]) -> Result<bool, SourceError> {
        match read_frame_line(&mut self.reader).map_err(|e| self.io(e))? {
            FrameLine::End => return Ok(false),
            FrameLine::Frame(_) => {}
            FrameLine::Other(_) => {
                let message = format!("frame {}: expected a FRAME line", self.frame_in_file);
                let path = self.path.clone();
                return Err(SourceError::Y4m { path, message });
            }
        }
        let got = super::read_full(&mut self.reader, dst).map_err(|e| self.io(e))?;
        if got < dst.len() {
            return Err(self.truncated(got, dst.len()));
        }
        self.frame_in_file += 1;
        Ok(true)
    }
}

impl FrameSource for Y4mSource {
    fn format(&self) -> SourceFormat {
        self.header.format
    }

    /// Reads the frame into `dst` first, then waits for its scheduled time, which becomes
    /// its capture time: like a camera's DMA, the copy is done by the time the frame is
    /// due, so the read is not part of the latency unless it makes the frame late.
    fn next_frame(&mut self, dst: &mut [u8]) -> Result<Option<Captured>, SourceError> {
        if !self.read_frame(dst)? {
            if !self.looping {
                return Ok(None);
            }
            if self.frame_in_file == 0 {
                return Err(SourceError::Y4m {
                    path: self.path.clone(),
                    message: "no frames to loop over".into(),
                });
            }
            self.reader
                .seek(SeekFrom::Start(self.data_start))
                .map_err(|e| self.io(e))?;
            self.frame_in_file = 0;
            if !self.read_frame(dst)? {
                return Ok(None);
            }
        }
        let capture_ns = self.pacer.wait(self.next_id);
        Ok(Some(Captured::numbered(&mut self.next_id, capture_ns)))
    }

    /// Seeks to frame `frame_id` (modulo the frame count when looping). Needs plain
    /// `FRAME` lines (as ffmpeg writes them); otherwise it reads its way there.
    fn resume_at(&mut self, frame_id: u64) -> Result<(), SourceError> {
        let fb = self.header.format.frame_bytes() as u64 + 6;
        let len = self
            .reader
            .get_ref()
            .metadata()
            .map_err(|e| self.io(e))?
            .len();
        let count = (len - self.data_start) / fb;
        let target = if self.looping && count > 0 {
            frame_id % count
        } else {
            frame_id.min(count)
        };
        if (len - self.data_start).is_multiple_of(fb) {
            self.reader
                .seek(SeekFrom::Start(self.data_start + target * fb))
                .map_err(|e| self.io(e))?;
            self.frame_in_file = target;
        } else {
            self.reader
                .seek(SeekFrom::Start(self.data_start))
                .map_err(|e| self.io(e))?;
            self.frame_in_file = 0;
            let mut scratch = vec![0u8; self.header.format.frame_bytes()];
            for _ in 0..target {
                if !self.read_frame(&mut scratch)? {
                    break;
                }
            }
        }
        self.next_id = frame_id;
        self.pacer = Pacer::new(self.header.format.frame_interval_ns());
        self.pacer.offset = frame_id;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_accepts_ffmpeg_output() {
        let h = parse_header(
            b"YUV4MPEG2 W1280 H720 F60:1 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2 XCOLORRANGE=LIMITED",
        )
        .unwrap();
        assert_eq!(
            h.format,
            SourceFormat {
                width: 1280,
                height: 720,
                fps_num: 60,
                fps_den: 1
            }
        );
        assert_eq!(
            parse_header(b"YUV4MPEG2 W64 H32 F30000:1001")
                .unwrap()
                .format
                .fps_den,
            1001
        );
    }

    #[test]
    fn header_errors_say_what_is_allowed() {
        for (hdr, needle) in [
            (&b"RIFF"[..], "not a Y4M"),
            (b"YUV4MPEG2 W641 H480 F30:1", "odd frame size 641x480"),
            (b"YUV4MPEG2 W640 H480 F30:1 C444", "allowed C420"),
            (b"YUV4MPEG2 W640 H480 F30:1 It", "allowed Ip"),
            (b"YUV4MPEG2 W640 F30:1", "missing height"),
            (b"YUV4MPEG2 W640 H480 F0:1", "frame rate"),
            (b"YUV4MPEG2 W640 H480 F30", "F<num>:<den>"),
            (b"YUV4MPEG2 Wx H480 F30:1", "bad width"),
            (b"YUV4MPEG2 W640 H480 F30:1 Z9", "unknown header parameter"),
        ] {
            let e = parse_header(hdr).unwrap_err();
            assert!(e.contains(needle), "{e} should contain {needle}");
        }
    }

    #[test]
    fn arbitrary_headers_never_panic() {
        // Deterministic fuzz: mutations of a valid header and random bytes.
        let valid = b"YUV4MPEG2 W1280 H720 F60:1 Ip A1:1 C420jpeg XYSCSS=420JPEG".to_vec();
        let mut x = 0x2545_F491u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let alphabet = b"YUV4MPEG2 WHFIACX0123456789:pt?jeg\xff\xc3";
        for _ in 0..20_000 {
            let mut h = valid.clone();
            for _ in 0..(rnd() % 6) {
                let i = rnd() as usize % h.len();
                match rnd() % 3 {
                    0 => h[i] = alphabet[rnd() as usize % alphabet.len()],
                    1 => {
                        h.remove(i);
                    }
                    _ => h.insert(i, alphabet[rnd() as usize % alphabet.len()]),
                }
                if h.is_empty() {
                    break;
                }
            }
            if let Ok(hd) = parse_header(&h) {
                assert!(
                    hd.format.width % 2 == 0 && hd.format.height % 2 == 0 && hd.format.fps_num > 0
                );
            }
            let junk: Vec<u8> = (0..rnd() % 64).map(|_| rnd() as u8).collect();
            let _ = parse_header(&junk);
        }
    }

    #[test]
    fn reads_frames_loops_and_reports_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.y4m");
        let frame = 16 * 16 * 3 / 2;
        let mut bytes = b"YUV4MPEG2 W16 H16 F1000:1 C420jpeg\n".to_vec();
        for i in 0..3u8 {
            bytes.extend_from_slice(b"FRAME\n");
            bytes.extend(std::iter::repeat_n(i, frame));
        }
        std::fs::write(&p, &bytes).unwrap();
        let mut s = Y4mSource::open(&p, true).unwrap();
        let mut buf = vec![0u8; frame];
        for i in 0..7u64 {
            let c = s.next_frame(&mut buf).unwrap().unwrap();
            assert_eq!(c.frame_id, i);
            assert!(buf.iter().all(|&b| b as u64 == i % 3));
        }
        let mut s = Y4mSource::open(&p, false).unwrap();
        for _ in 0..3 {
            s.next_frame(&mut buf).unwrap().unwrap();
        }
        assert!(s.next_frame(&mut buf).unwrap().is_none());
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&p, &bytes).unwrap();
        let mut s = Y4mSource::open(&p, false).unwrap();
        s.next_frame(&mut buf).unwrap();
        s.next_frame(&mut buf).unwrap();
        let e = s.next_frame(&mut buf).unwrap_err().to_string();
        assert!(e.contains("frame 2 is truncated"), "{e}");
    }
}
