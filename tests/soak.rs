//! Soak: a pattern stream (to a UDP sink) and the viewer page (nobody watching) with RSS,
//! open file descriptors and /dev/shm segments of every vr-stream process sampled every
//! second: nothing grows after warm-up.
//! CI runs 30 s (10 s of warm-up, then 20 one-second samples: a leak of 13 kB/s or more
//! shows); `scripts/soak.sh [SECONDS]` runs longer (VR_SOAK_SECONDS) for slower ones.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rss_kb: u64,
    fds: usize,
    segments: usize,
    processes: usize,
}

fn sample(inst: &str) -> Sample {
    let mut s = Sample {
        segments: leftover_segments(inst).len(),
        ..Default::default()
    };
    for pid in processes_of(inst) {
        let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        s.rss_kb += vr_stream::rt::status_field_kb(&st, "VmRSS:").unwrap_or(0);
        s.fds += std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        s.processes += 1;
    }
    s
}

#[test]
fn long_run_does_not_grow() {
    let secs: u64 = std::env::var("VR_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let inst = instance("soak");
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = sink.local_addr().unwrap().port().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let drain = std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        let mut n = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if sink.recv(&mut b).is_ok() {
                n += 1;
            }
        }
        n
    });
    // The page on a port of its own (the default 8443 may be another run's).
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut sup = Command::new(bin())
        .args([
            "--source",
            "pattern",
            "--width",
            "640",
            "--height",
            "360",
            "--bitrate",
            "3000",
            "--port",
            &port,
            "--sdp",
            "",
            "--instance",
            &inst,
            "--stats-interval",
            "10",
        ])
        .args(["--web-port", &web])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut samples = vec![];
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        assert!(sup.try_wait().unwrap().is_none(), "vr-stream exited early");
        samples.push(sample(&inst));
    }
    Command::new("kill")
        .args(["-INT", &sup.id().to_string()])
        .status()
        .unwrap();
    let out = sup.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let packets = drain.join().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    let warm = samples[samples.len().min(10) - 1];
    let last = *samples.last().unwrap();
    let max_rss = samples.iter().skip(10).map(|s| s.rss_kb).max().unwrap_or(0);
    eprintln!(
        "{secs} s: after warm-up {warm:?}, at the end {last:?}, max RSS {max_rss} kB, {packets} packets received"
    );
    for s in samples.iter().skip(10) {
        assert_eq!(s.processes, 5, "{s:?}"); // the supervisor, camera, encode, network, web
        assert_eq!(s.fds, warm.fds, "open fds changed: {s:?} vs {warm:?}");
        assert_eq!(s.segments, 5, "{s:?}"); // -ctl, -stats, -frames, -bits, -web
    }
    // Every process prefaults or locks its memory, so RSS stays flat (a leak grows
    // steadily); a few pages of slack.
    assert!(
        max_rss <= warm.rss_kb + 256,
        "RSS grew from {} to {max_rss} kB",
        warm.rss_kb
    );
    assert!(
        packets as f64 > secs as f64 * 60.0 * 0.9,
        "{packets} packets"
    );
    assert!(leftover_segments(&inst).is_empty() && processes_of(&inst).is_empty());
}
