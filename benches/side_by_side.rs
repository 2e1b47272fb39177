//! vr-stream beside ffmpeg and GStreamer, fed the same frames the same way.
//!
//! Every sender reads the same bare I420 frames of the real clip (1280x720) from a FIFO that
//! this process writes at 60 fps (`--source pipe:FIFO --pipe-format i420` for vr-stream,
//! `-f rawvideo -i FIFO` for ffmpeg, `filesrc ! rawvideoparse` for GStreamer), encodes them
//! with the same x264 settings (ultrafast, zerolatency, 8000 kbit/s with an 800 kbit VBV
//! buffer, keyint 60, no scene cut, no B-frames, the same number of slice threads: one per
//! CPU of vr-stream's encode set on this machine) and sends RTP to one receiver socket on
//! 127.0.0.1. Per access unit: the kernel's receive time (SO_TIMESTAMPNS) of its last RTP
//! packet (marker bit) minus the time this process started writing the frame into the
//! FIFO. CPU: user + system time of the sender's processes (vr-stream: the supervisor and
//! every stage) over the measured frames, read from /proc/PID/stat.
//!
//! vr-stream runs with its built-in configuration as mapped onto this machine (nothing
//! tuned for the benchmark: its web stage, FEC, pacing and RTCP are on). The frame writer
//! runs SCHED_FIFO 99 when permitted, so that the CPU hog delays no sender's input.
//!
//! Each run feeds 60 warm-up frames, then the measured frames. Conditions: idle; with a
//! CPU hog (one busy SCHED_OTHER thread per CPU); and idle with the FIFO enlarged by the
//! writer to hold a whole frame for every sender (vr-stream's pipe source enlarges it
//! itself, ffmpeg and GStreamer keep the 64 KiB default, which costs about 2 ms of
//! writer/reader round trips per 720p frame: this condition shows the rest of the
//! pipeline without that difference). `cargo bench --bench side_by_side`: 3
//! rounds of 600 measured frames, senders interleaved; under `cargo test`: one short round,
//! idle, checking only that each sender's access units arrive.

mod common;
use common::{clip, pct_ms};

use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

const W: usize = 1280;
const H: usize = 720;
const FB: usize = W * H * 3 / 2;
const PERIOD_NS: u64 = 1_000_000_000 / 60;
const WARMUP: usize = 60;

/// The clip's frames (bare I420), read on demand: frame `i` (modulo the clip's 600) from
/// the page cache, so that no sender shares the machine with a gigabyte of frames.
struct Frames {
    file: std::fs::File,
    header: usize,
    count: usize,
}

impl Frames {
    fn open(count: usize) -> Frames {
        let file = std::fs::File::open(clip()).unwrap();
        let mut head = [0u8; 512];
        file.read_at(&mut head, 0).unwrap();
        let header = head.iter().position(|&b| b == b'\n').unwrap() + 1;
        Frames {
            file,
            header,
            count,
        }
    }

    fn read(&self, i: usize, buf: &mut [u8]) {
        self.file
            .read_exact_at(buf, (self.header + (i % 600) * (FB + 6) + 6) as u64)
            .unwrap();
    }
}

fn realtime_ns() -> u64 {
    vr_stream::rt::realtime().0
}

/// Three consecutive free UDP ports on 127.0.0.1 (RTP, RTCP, FEC), bound.
fn ports() -> (u16, [std::net::UdpSocket; 3]) {
    for _ in 0..200 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        if !p.is_multiple_of(2) || p > 65000 {
            continue;
        }
        let b = |q: u16| std::net::UdpSocket::bind(("127.0.0.1", q)).ok();
        if let (Some(b1), Some(b2)) = (b(p + 1), b(p + 2)) {
            return (p, [s, b1, b2]);
        }
    }
    panic!("no three free UDP ports");
}

/// One RTP packet seen by the receiver: kernel receive time (CLOCK_REALTIME ns), RTP
/// timestamp, marker bit.
#[derive(Clone, Copy)]
struct Pkt {
    at: u64,
    ts: u32,
    marker: bool,
}

/// Receives RTP on `sock` until `stop`, with kernel receive timestamps.
fn receiver(sock: std::net::UdpSocket, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Pkt>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
    setsockopt(&sock, sockopt::ReceiveTimestampns, &true).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let mut out = vec![];
        let mut buf = [0u8; 2048];
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        while !stop.load(Ordering::Relaxed) {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let r = recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            );
            let Ok(msg) = r else { continue };
            let mut at = realtime_ns();
            if let Ok(cms) = msg.cmsgs() {
                for c in cms {
                    if let ControlMessageOwned::ScmTimestampns(t) = c {
                        at = t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64;
                    }
                }
            }
            let n = msg.bytes;
            if n >= 12 && buf[0] >> 6 == 2 {
                out.push(Pkt {
                    at,
                    ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                    marker: buf[1] & 0x80 != 0,
                });
            }
        }
        out
    })
}

/// CPU time (user + system) of `pid` and all its descendants, s.
fn tree_cpu(pid: u32) -> f64 {
    let tick = {
        // SAFETY: sysconf has no memory-safety preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 { t as f64 } else { 100.0 }
    };
    let stat = |p: u32| -> Option<(u32, u64)> {
        let s = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let after = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // `after` starts at field 3 (state): ppid is field 4, utime 14, stime 15.
        Some((
            f[4 - 3].parse().ok()?,
            f[14 - 3].parse::<u64>().ok()? + f[15 - 3].parse::<u64>().ok()?,
        ))
    };
    let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| stat(p).map(|(pp, t)| (p, pp, t)))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|a| a.1 == parent).map(|a| a.0));
        i += 1;
    }
    all.iter()
        .filter(|a| tree.contains(&a.0))
        .map(|a| a.2)
        .sum::<u64>() as f64
        / tick
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Sender {
    /// vr-stream, with its built-in configuration, or with a configuration file layered
    /// over it (a named variant from `VR_SBS_VARIANTS`).
    VrStream(Option<(String, PathBuf)>),
    Ffmpeg,
    Gstreamer,
}

impl Sender {
    fn name(&self) -> String {
        match self {
            Sender::VrStream(None) => "vr-stream".into(),
            Sender::VrStream(Some((n, _))) => format!("vr-stream {n}"),
            Sender::Ffmpeg => "ffmpeg".into(),
            Sender::Gstreamer => "GStreamer".into(),
        }
    }
}

/// Starts `who` reading `fifo` and sending to 127.0.0.1:`port` with `slices` slice
/// threads; returns the child and a receiver that says when it is ready to be fed.
fn start(
    who: &Sender,
    fifo: &Path,
    port: u16,
    slices: u32,
    tag: &str,
) -> (Child, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let fifo_s = fifo.to_str().unwrap();
    let mut child = match who {
        Sender::VrStream(variant) => {
            let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let web_port = web.local_addr().unwrap().port().to_string();
            drop(web);
            let mut c = Command::new(env!("CARGO_BIN_EXE_vr-stream"));
            if let Some((_, cfg)) = variant {
                c.arg("--config").arg(cfg);
            }
            c.args([
                "--source",
                &format!("pipe:{fifo_s}"),
                "--pipe-format",
                "i420",
            ])
            .args(["--width", "1280", "--height", "720", "--fps", "60"])
            .args(["--port", &port.to_string(), "--sdp", ""])
            .args(["--web-port", &web_port])
            .args([
                "--instance",
                &format!("vrs-sbs-{}-{tag}", std::process::id()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        }
        Sender::Ffmpeg => Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error"])
            .args([
                "-f",
                "rawvideo",
                "-pix_fmt",
                "yuv420p",
                "-video_size",
                "1280x720",
            ])
            .args(["-framerate", "60", "-i", fifo_s])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-profile:v", "high", "-b:v", "8000k", "-maxrate", "8000k"])
            .args(["-bufsize", "800k", "-g", "60", "-sc_threshold", "0"])
            .args(["-threads", &slices.to_string()])
            .args(["-x264-params", "sliced-threads=1"])
            .args(["-flush_packets", "1", "-f", "rtp", "-payload_type", "96"])
            .arg(format!("rtp://127.0.0.1:{port}?pkt_size=1212"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg (apt-get install ffmpeg)"),
        Sender::Gstreamer => {
            let pipeline = format!(
                "filesrc location={fifo_s} blocksize={FB} ! rawvideoparse use-sink-caps=false width={W} height={H} format=i420 framerate=60/1 ! \
                 x264enc speed-preset=ultrafast tune=zerolatency bitrate=8000 vbv-buf-capacity=100 key-int-max=60 \
                 threads={slices} sliced-threads=true option-string=scenecut=0 ! video/x-h264,profile=high ! \
                 rtph264pay mtu=1212 config-interval=-1 pt=96 ! udpsink host=127.0.0.1 port={port} sync=false async=false"
            );
            Command::new("gst-launch-1.0")
                .arg("-q")
                .args(pipeline.split_whitespace())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("gst-launch-1.0 (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)")
        }
    };
    let err = child.stderr.take().unwrap();
    let is_vr = matches!(who, Sender::VrStream(_));
    std::thread::spawn(move || {
        if !is_vr {
            let _ = tx.send(String::new());
        }
        let mut all = String::new();
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if is_vr && l.contains("vr-stream: streaming") {
                let _ = tx.send(all.clone());
            }
            all.push_str(&l);
            all.push('\n');
        }
        let _ = tx.send(all);
    });
    (child, rx)
}

struct Outcome {
    /// Write start → last packet of each measured frame's access unit, ns.
    latency: Vec<u64>,
    /// CPU s of the sender over the measured frames.
    cpu: f64,
    /// vr-stream's start-up lines (placement).
    notes: String,
}

fn spin_hog(stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                }
            })
        })
        .collect()
}

/// One run of `who` over `frames` (the first [`WARMUP`] not measured).
/// How a run is made: a CPU hog on every core or not; whether the writer enlarges the FIFO
/// to hold a frame for every sender (otherwise each sender's own choice: vr-stream enlarges
/// it, ffmpeg and GStreamer keep the 64 KiB default).
#[derive(Clone, Copy)]
struct Condition {
    hog: bool,
    big_pipe: bool,
}

impl Condition {
    fn name(self) -> &'static str {
        match (self.hog, self.big_pipe) {
            (false, false) => "idle",
            (true, false) => "with a CPU hog on every core",
            (false, true) => {
                "idle, the FIFO enlarged to hold a frame by the writer, for every sender"
            }
            (true, true) => "with a CPU hog, the FIFO enlarged by the writer",
        }
    }
}

fn run(who: &Sender, frames: &Arc<Frames>, slices: u32, cond: Condition, tag: &str) -> Outcome {
    let hog = cond.hog;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("frames.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (port, [rtp, _rtcp, _fec]) = ports();
    let stop_rx = Arc::new(AtomicBool::new(false));
    let rx = receiver(rtp, stop_rx.clone());
    let stop_hog = Arc::new(AtomicBool::new(false));
    let hogs = if hog {
        spin_hog(stop_hog.clone())
    } else {
        vec![]
    };
    let (mut child, ready) = start(who, &fifo, port, slices, tag);
    let pid = child.id();
    // The writer: opens the FIFO (blocks until the sender opens it), waits until the sender
    // is ready, then writes a frame every 1/60 s at absolute times.
    let writer = {
        let fifo = fifo.clone();
        let frames = frames.clone();
        std::thread::spawn(move || {
            let param = libc::sched_param { sched_priority: 99 };
            // SAFETY: valid sched_param; 0 = this thread. Failure leaves SCHED_OTHER.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            if cond.big_pipe {
                vr_stream::source::pipe::grow_pipe(&f, FB + 64);
            }
            let notes = ready
                .recv_timeout(Duration::from_secs(20))
                .expect("the sender did not get ready");
            let t0 = vr_stream::rt::monotonic_ns() + 300_000_000;
            let mut starts = Vec::with_capacity(frames.count);
            let (mut cpu0, mut cpu1) = (0.0, 0.0);
            let mut fr = vec![0u8; FB];
            for i in 0..frames.count {
                // Read ahead of the frame's time, written at its time.
                frames.read(i, &mut fr);
                vr_stream::rt::sleep_until_ns(t0 + i as u64 * PERIOD_NS);
                if i == WARMUP {
                    cpu0 = tree_cpu(pid);
                }
                starts.push(realtime_ns());
                if f.write_all(&fr).is_err() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(150));
            cpu1 = tree_cpu(pid).max(cpu1);
            drop(f);
            (starts, cpu1 - cpu0, notes)
        })
    };
    let (starts, cpu, notes) = writer.join().unwrap();
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop_hog.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    stop_rx.store(true, Ordering::Relaxed);
    let pkts = rx.join().unwrap();
    Outcome {
        latency: match_frames(&pkts, &starts),
        cpu,
        notes,
    }
}

/// Access units from the packets (grouped by RTP timestamp; done at the marker packet, or
/// at the last packet), matched with the frames written: the RTP timestamps give each
/// access unit's place relative to the first (1500 ticks of 90 kHz per frame at 60 fps),
/// and the offset to the frame numbers is the one most access units agree on (the newest
/// frame written before the access unit was complete). Returns the measured frames'
/// latencies (frames from [`WARMUP`] on), ns.
fn match_frames(pkts: &[Pkt], starts: &[u64]) -> Vec<u64> {
    let Some(first) = pkts.first() else {
        return vec![];
    };
    let mut done: std::collections::BTreeMap<i64, (u64, bool)> = Default::default();
    for p in pkts {
        let rel = (p.ts.wrapping_sub(first.ts) as i32) as i64;
        let idx = (rel as f64 / 1500.0).round() as i64;
        let e = done.entry(idx).or_insert((p.at, false));
        if !e.1 {
            e.0 = p.at;
            e.1 = p.marker;
        }
    }
    let mut votes: std::collections::HashMap<i64, usize> = Default::default();
    for (&idx, &(at, _)) in &done {
        let n = starts.partition_point(|&s| s <= at) as i64 - 1;
        if n >= 0 {
            *votes.entry(n - idx).or_default() += 1;
        }
    }
    let Some((&offset, _)) = votes.iter().max_by_key(|v| *v.1) else {
        return vec![];
    };
    done.iter()
        .filter_map(|(&idx, &(at, _))| {
            let n = idx + offset;
            (n >= WARMUP as i64 && (n as usize) < starts.len())
                .then(|| at.saturating_sub(starts[n as usize]))
        })
        .collect()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let c = |hog, big_pipe| Condition { hog, big_pipe };
    let (rounds, measured, conditions) = if full {
        (
            3,
            600,
            vec![c(false, false), c(true, false), c(false, true)],
        )
    } else {
        (1, 60, vec![c(false, false)])
    };
    let frames = Arc::new(Frames::open(WARMUP + measured));
    let cfg = vr_stream::config::load(&[]).unwrap();
    let slices = vr_stream::stage::encoder_config(&cfg).threads;
    println!(
        "side by side: {measured} frames of the real clip (1280x720 I420, after {WARMUP} warm-up) written to a FIFO at 60 fps; \
         x264 ultrafast/zerolatency 8000 kbit/s, VBV 800 kbit, keyint 60, {slices} slice threads; \
         write start -> last RTP packet received (kernel timestamp) on 127.0.0.1"
    );
    let mut senders = vec![Sender::VrStream(None), Sender::Ffmpeg, Sender::Gstreamer];
    // Optional vr-stream variants to compare, e.g. CPU layouts:
    // VR_SBS_VARIANTS="one-core=/path/a.toml,spin=/path/b.toml" (each a --config file).
    if let Ok(v) = std::env::var("VR_SBS_VARIANTS") {
        for item in v.split(',').filter(|s| !s.is_empty()) {
            let (n, p) = item
                .split_once('=')
                .expect("VR_SBS_VARIANTS: NAME=CONFIG_FILE,...");
            senders.push(Sender::VrStream(Some((n.to_string(), PathBuf::from(p)))));
        }
    }
    // results[condition][sender] = one (p50, p99, max, cpu) per round
    let mut results = vec![vec![vec![]; senders.len()]; conditions.len()];
    let mut notes = String::new();
    for round in 0..rounds {
        for (ci, &cond) in conditions.iter().enumerate() {
            for (si, who) in senders.iter().enumerate() {
                let tag = format!("{round}{ci}{si}");
                let o = run(who, &frames, slices, cond, &tag);
                assert!(
                    o.latency.len() * 100 >= measured * 95,
                    "{}: only {} of {measured} access units matched\n{}",
                    who.name(),
                    o.latency.len(),
                    o.notes
                );
                if *who == Sender::VrStream(None) && notes.is_empty() {
                    notes = o
                        .notes
                        .lines()
                        .filter(|l| l.contains("stage ") || l.contains("note:"))
                        .map(|l| format!("  {l}\n"))
                        .collect();
                }
                let (p50, p99, max) = pct_ms(&o.latency);
                results[ci][si].push((p50, p99, max, o.cpu, o.latency.len()));
            }
        }
    }
    print!("vr-stream as started (default configuration on this machine):\n{notes}");
    for (ci, &cond) in conditions.iter().enumerate() {
        let hog = cond.hog;
        println!("\n{}: ms, one column group per round", cond.name());
        println!(
            "{:<18} {}",
            "sender",
            (0..rounds)
                .map(|r| format!("| r{} p50    p99    max   CPU s  n  ", r + 1))
                .collect::<String>()
        );
        for (si, who) in senders.iter().enumerate() {
            let cells: String = results[ci][si]
                .iter()
                .map(|(a, b, c, cpu, n)| format!("| {a:6.2} {b:6.2} {c:6.2} {cpu:5.2} {n:3} "))
                .collect();
            println!("{:<18} {cells}", who.name());
        }
        for (r, (&ours, &ff)) in results[ci][0]
            .iter()
            .zip(&results[ci][1])
            .enumerate()
            .take(rounds)
        {
            let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
            if hog {
                println!(
                    "round {}: p99 <= 0.6 x ffmpeg's: {} ({:.2} vs {:.2} ms)",
                    r + 1,
                    verdict(ours.1 <= 0.6 * ff.1),
                    ours.1,
                    0.6 * ff.1
                );
            } else {
                println!(
                    "round {}: p50 <= ffmpeg's: {} ({:.2} vs {:.2}); p99 <= ffmpeg's: {} ({:.2} vs {:.2}); CPU <= 1.1 x ffmpeg's: {} ({:.2} vs {:.2} s)",
                    r + 1,
                    verdict(ours.0 <= ff.0),
                    ours.0,
                    ff.0,
                    verdict(ours.1 <= ff.1),
                    ours.1,
                    ff.1,
                    verdict(ours.3 <= 1.1 * ff.3),
                    ours.3,
                    1.1 * ff.3
                );
            }
        }
    }
    std::io::stdout().flush().unwrap();
}
