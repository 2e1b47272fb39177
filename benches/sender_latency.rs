//! Sender latency and CPU time on the real clip (1280x720, 60 fps, 600 frames, 8 Mbit/s),
//! vr-stream beside the GStreamer sender of ../shared/ASSETS.md, measured in the same run.
//!
//! - vr-stream: per-frame records from `--latency-log`: total = capture (the frame's
//!   scheduled time) → sendmmsg returned for its last RTP packet; encode = the x264 call;
//!   overhead = total − encode (source read into the ring, ring hand-off, packetizing,
//!   sending), and the same without the source read (published in the ring → last packet).
//! - GStreamer 1.22: `fdsrc ! rawvideoparse ! x264enc speed-preset=ultrafast
//!   tune=zerolatency (same bitrate, VBV, keyint, 1 thread) ! rtph264pay ! udpsink`, fed the
//!   same raw frames through a pipe at 60 fps by this process; its latency tracer gives, per
//!   RTP packet, the time from the source pushing the frame's bytes to the packet reaching
//!   udpsink; per frame the largest (its last packet) is taken.
//! - vr-stream is run twice: with the hand-off spin on (spin around the expected
//!   arrival, `rt.spin_window_us = 500`) and futex-only (`0`, the default), to show the trade-off.
//! - CPU time: user + system of all processes of each sender (getrusage of the waited-for
//!   children: vr-stream's supervisor and its three stages; gst-launch with its threads) for
//!   the 600 frames. GStreamer's figure excludes reading the file (done by this bench);
//!   vr-stream's includes it.
//!
//! Run: `cargo bench --bench sender_latency`. Under `cargo test` it runs 120 frames.

mod common;
use common::{clip, latency_records, pct_ms, sender};

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const W: usize = 1280;
const H: usize = 720;

fn children_cpu() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(u.user_time()) + tv(u.system_time())
}

fn sink(port: u16) -> std::thread::JoinHandle<u64> {
    let s = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        let mut n = 0;
        while s.recv(&mut b).is_ok() {
            n += 1;
        }
        n
    })
}

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

struct Run {
    total: Vec<u64>,
    encode: Vec<u64>,
    overhead: Vec<u64>,
    overhead_no_read: Vec<u64>,
    cpu: Duration,
    packets: u64,
}

fn run_vr_stream(clip: &std::path::Path, frames: usize, spin_window_us: u32) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("lat.csv");
    let cfg = dir.path().join("spin.toml");
    // One x264 thread, as the GStreamer baseline here (the default is one slice per CPU).
    std::fs::write(
        &cfg,
        format!("[rt]\nspin_window_us = {spin_window_us}\n[encoder]\nthreads = 1\n"),
    )
    .unwrap();
    let port = free_port();
    let rx = sink(port);
    let cpu0 = children_cpu();
    let out = sender(clip, port, frames, "sender", &cfg, &csv)
        .output()
        .unwrap();
    let cpu = children_cpu() - cpu0;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = Run {
        total: vec![],
        encode: vec![],
        overhead: vec![],
        overhead_no_read: vec![],
        cpu,
        packets: 0,
    };
    for f in latency_records(&csv) {
        let (cap, publ, es, ee, last) = (
            f.capture_ns,
            f.published_ns,
            f.encode_start_ns,
            f.encode_end_ns,
            f.last_sent_ns,
        );
        r.total.push(last - cap);
        r.encode.push(ee - es);
        r.overhead.push((last - cap) - (ee - es));
        r.overhead_no_read.push((last - publ) - (ee - es));
    }
    r.packets = rx.join().unwrap();
    // vr-stream's own per-stage table.
    let err = String::from_utf8_lossy(&out.stderr);
    if let Some(i) = err.find("latency over") {
        print!("{}", &err[i..]);
    }
    r
}

fn run_gstreamer(clip: &std::path::Path, frames: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gst.log");
    let port = free_port();
    let rx = sink(port);
    let fb = W * H * 3 / 2;
    let pipeline = format!(
        "fdsrc fd=0 blocksize={fb} ! rawvideoparse use-sink-caps=false width={W} height={H} format=i420 framerate=60/1 ! \
         x264enc speed-preset=ultrafast tune=zerolatency bitrate=8000 vbv-buf-capacity=100 key-int-max=60 threads=1 ! \
         rtph264pay mtu=1212 config-interval=-1 pt=96 ! udpsink host=127.0.0.1 port={port} sync=false async=false"
    );
    let cpu0 = children_cpu();
    let mut child = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .env("GST_TRACERS", "latency")
        .env("GST_DEBUG", "GST_TRACER:7")
        .env("GST_DEBUG_NO_COLOR", "1")
        .env("GST_DEBUG_FILE", &log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)");
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: F_SETPIPE_SZ on our own pipe fd; failure only leaves the default size.
        unsafe { libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, 4 << 20) };
    }
    let f = std::fs::File::open(clip).unwrap();
    let mut head = [0u8; 512];
    f.read_at(&mut head, 0).unwrap();
    let hdr = head.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut buf = vec![0u8; fb];
    let period = 1_000_000_000u64 / 60;
    let t0 = vr_stream::rt::monotonic_ns() + 200_000_000;
    for i in 0..frames {
        f.read_exact_at(&mut buf, (hdr + i * (fb + 6) + 6) as u64)
            .unwrap();
        vr_stream::rt::sleep_until_ns(t0 + i as u64 * period);
        stdin.write_all(&buf).unwrap();
    }
    drop(stdin);
    let st = child.wait().unwrap();
    let cpu = children_cpu() - cpu0;
    assert!(st.success(), "gst-launch failed");
    // `latency, src-element-id=..., src=(string)fdsrc0, ..., time=(guint64)N, ts=(guint64)T;`
    // time = sink arrival - source push; group the packets of one frame by their push time.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut per_frame: std::collections::BTreeMap<u64, u64> = Default::default();
    let num = |l: &str, key: &str| -> Option<u64> {
        let i = l.find(key)? + key.len();
        l[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    for l in text
        .lines()
        .filter(|l| l.contains("latency, src-element-id="))
    {
        if let (Some(t), Some(ts)) = (num(l, "time=(guint64)"), num(l, "ts=(guint64)")) {
            let e = per_frame.entry(ts - t).or_default();
            *e = (*e).max(t);
        }
    }
    let total: Vec<u64> = per_frame.values().copied().collect();
    Run {
        total,
        encode: vec![],
        overhead: vec![],
        overhead_no_read: vec![],
        cpu,
        packets: rx.join().unwrap(),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let frames = if full { 600 } else { 120 };
    let clip = clip();
    println!(
        "sender latency, real clip 1280x720 60 fps, {frames} frames, 8 Mbit/s, x264 ultrafast/zerolatency 1 thread"
    );
    println!("-- vr-stream, hand-off spin on (rt.spin_window_us = 500)");
    let ours = run_vr_stream(&clip, frames, 500);
    println!("-- vr-stream, futex only (rt.spin_window_us = 0)");
    let futex_only = run_vr_stream(&clip, frames, 0);
    let gst = run_gstreamer(&clip, frames);
    println!(
        "{:<58} {:>8} {:>8} {:>8} {:>7}",
        "ms", "p50", "p99", "max", "frames"
    );
    let row = |name: &str, v: &[u64]| {
        let (a, b, c) = pct_ms(v);
        let n = v.len();
        println!("{name:<58} {a:>8.3} {b:>8.3} {c:>8.3} {n:>7}");
        b
    };
    let our_p99 = row("vr-stream: capture -> last RTP packet sent", &ours.total);
    row("vr-stream: x264 encode call", &ours.encode);
    let ovh = row("vr-stream: overhead beyond the encode call", &ours.overhead);
    let ovh2 = row(
        "vr-stream: overhead without the source read",
        &ours.overhead_no_read,
    );
    row(
        "vr-stream, futex only: capture -> last RTP packet",
        &futex_only.total,
    );
    row(
        "vr-stream, futex only: overhead beyond the encode call",
        &futex_only.overhead,
    );
    let gst_p99 = row(
        "GStreamer: raw frame in -> last packet at udpsink",
        &gst.total,
    );
    println!(
        "CPU time for {frames} frames: vr-stream {:.2} s ({} packets; futex only {:.2} s), GStreamer {:.2} s ({} packets)",
        ours.cpu.as_secs_f64(),
        ours.packets,
        futex_only.cpu.as_secs_f64(),
        gst.cpu.as_secs_f64(),
        gst.packets
    );
    println!(
        "targets: p99 below GStreamer's: {} ({our_p99:.3} vs {gst_p99:.3} ms); overhead beyond x264 < 0.5 ms at p99: {} ({ovh:.3} ms; {ovh2:.3} ms without the source read)",
        if our_p99 < gst_p99 { "met" } else { "NOT met" },
        if ovh < 0.5 { "met" } else { "NOT met" }
    );
}
