//! Adaptive bitrate against a real bottleneck: vr-stream sends the real clip at 6 Mbit/s
//! into a network namespace; after 4 s the host side of the veth pair is limited by `tbf`
//! to 3 Mbit/s (half the configured bitrate), after 10 s the limit is lifted. vr-receive
//! in the namespace sends its RTCP receiver reports back; the test watches vr-stream's
//! stats segment (target bitrate, bytes sent) and vr-receive's per-second lines.
//!
//! Checked: within 2 s of the limit the encoder's target and the bytes actually sent are
//! under the limit; the receiver's frames are complete again in the last 2 s of the limit;
//! every change is in vr-stream's log; after the limit is lifted the bitrate climbs back
//! above it.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines with their arrival time, seconds since the start.
type Lines = Arc<Mutex<Vec<(f64, String)>>>;

/// Lines of a child's stderr with their arrival time, collected on a thread.
fn collect_lines(
    r: impl std::io::Read + Send + 'static,
    t0: Instant,
) -> (Lines, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(vec![]));
    let l2 = lines.clone();
    let h = std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            l2.lock().unwrap().push((t0.elapsed().as_secs_f64(), line));
        }
    });
    (lines, h)
}

/// (complete + recovered, lost) from a vr-receive progress line.
fn frame_counts(line: &str) -> Option<(u64, u64)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let num = |key: &str| {
        w.windows(2)
            .find(|p| p[0] == key)
            .and_then(|p| p[1].parse::<u64>().ok())
    };
    Some((num("complete")? + num("recovered")?, num("lost")?))
}

#[test]
fn tbf_at_half_the_bitrate_brings_the_rate_under_it_within_two_seconds_and_back_up_after() {
    let Some(ns) = Netns::new("abr", 95) else {
        skip("needs root to create a network namespace");
        return;
    };
    let clip = clip();
    const LIMIT_KBPS: f64 = 3000.0;
    let rx = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(env!("CARGO_BIN_EXE_vr-receive"))
        .args(["--port", "5004", "--interval", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rx = scopeguard_kill(rx);
    ns.wait_udp_bound(5004);
    let inst = instance("abr");
    // No FEC: what the stats segment counts as sent is everything on the wire. IDRs only
    // on PLI, as a congested link would otherwise drop each periodic one.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vr.toml");
    std::fs::write(
        &cfg,
        "[encoder]\nkeyint = 1000\n[stream]\nfec_percent = 0\n",
    )
    .unwrap();
    let mut vr = Command::new(bin())
        .args([
            "--ip",
            "10.77.95.2",
            "--port",
            "5004",
            "--sdp",
            "",
            "--instance",
            &inst,
            "--bitrate",
            "6000",
            "--loop",
            "--frames",
            "1620",
        ])
        .arg("--source")
        .arg(format!("file:{}", clip.display()))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ctl = wait_streaming(&inst);
    let t0 = Instant::now();
    let (vr_lines, vr_h) = collect_lines(vr.stderr.take().unwrap(), t0);
    let (rx_lines, rx_h) = collect_lines(rx.0.stderr.take().unwrap(), t0);
    // (t, target kbit/s, media bytes sent) every 100 ms.
    let mut samples: Vec<(f64, u32, u64)> = vec![];
    // 16 s after the lift: near a capacity it remembers, the controller probes upwards in
    // small steps (45 kbit/s per 0.5 s seen from ~2200 kbit/s), which 8 s did not always
    // cover.
    let (on, off, end) = (4.0, 10.0, 26.0);
    let (mut limited, mut lifted) = (false, false);
    while t0.elapsed().as_secs_f64() < end && vr.try_wait().unwrap().is_none() {
        let t = t0.elapsed().as_secs_f64();
        if !limited && t >= on {
            ns.tc_host("replace", "root tbf rate 3mbit burst 20k latency 100ms");
            limited = true;
        }
        if !lifted && t >= off {
            ns.tc_host("del", "root");
            lifted = true;
        }
        samples.push((t, ctl.stats().info().bitrate_kbps, ctl.stats().net().bytes));
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-INT", &vr.id().to_string()])
        .status();
    let st = vr.wait().unwrap();
    interrupt(&rx.0);
    let _ = rx.0.wait();
    vr_h.join().unwrap();
    rx_h.join().unwrap();
    let vr_lines = vr_lines.lock().unwrap().clone();
    let rx_lines = rx_lines.lock().unwrap().clone();
    let log: String = vr_lines
        .iter()
        .map(|(t, l)| format!("{t:6.2} {l}\n"))
        .collect();
    assert!(st.success(), "vr-stream: {log}");
    eprintln!("{log}");
    assert!(
        samples.last().unwrap().0 >= end - 0.5,
        "the stream ended early"
    );

    let rate_kbps = |a: f64, b: f64| {
        let first = samples.iter().find(|s| s.0 >= a).unwrap();
        let last = samples.iter().rev().find(|s| s.0 <= b).unwrap();
        (last.2 - first.2) as f64 * 8.0 / 1000.0 / (last.0 - first.0)
    };
    let target_at = |t: f64| samples.iter().rev().find(|s| s.0 <= t).unwrap().1;
    // Before the limit: full rate, no change.
    assert_eq!(target_at(on - 0.1), 6000, "{log}");
    let before = rate_kbps(1.0, on);
    eprintln!("sent before the limit: {before:.0} kbit/s");
    assert!(
        before > LIMIT_KBPS,
        "the clip must need more than the limit: {before:.0} kbit/s"
    );
    // Within 2 s of the limit: the target, and what is sent from then on, under it.
    let under = samples
        .iter()
        .find(|s| s.0 >= on && (s.1 as f64) < LIMIT_KBPS)
        .map(|s| s.0 - on);
    eprintln!("target under the limit {under:?} s after it");
    assert!(
        under.is_some_and(|d| d <= 2.0),
        "target not under {LIMIT_KBPS} kbit/s within 2 s: {log}"
    );
    let during = rate_kbps(on + 2.0, off);
    eprintln!("sent from 2 s into the limit to its end: {during:.0} kbit/s");
    assert!(
        during < LIMIT_KBPS,
        "sent {during:.0} kbit/s through a {LIMIT_KBPS} kbit/s link: {log}"
    );
    // The logged changes name their cause.
    assert!(
        vr_lines.iter().any(|(t, l)| *t >= on
            && *t <= on + 2.5
            && l.contains("bitrate 6000 -> ")
            && (l.contains("(loss") || l.contains("(delay growth"))),
        "{log}"
    );
    // The receiver: frames complete again in the last 2 s of the limit.
    let counts_at = |t: f64| {
        rx_lines
            .iter()
            .rev()
            .find(|(ta, l)| *ta <= t && l.contains("frames complete"))
            .and_then(|(_, l)| frame_counts(l))
            .unwrap()
    };
    let (ok0, lost0) = counts_at(off - 2.0);
    let (ok1, lost1) = counts_at(off);
    let (got, lost) = (ok1 - ok0, lost1 - lost0);
    eprintln!("receiver in the last 2 s of the limit: {got} frames whole, {lost} lost");
    assert!(
        got >= 100 && lost * 20 <= got,
        "{got} whole, {lost} lost: {:?}",
        rx_lines
    );
    // Lifted: the target climbs back above the limit.
    let back = samples
        .iter()
        .find(|s| s.0 >= off && (s.1 as f64) > LIMIT_KBPS)
        .map(|s| s.0 - off);
    eprintln!(
        "target above the limit again {back:?} s after it was lifted; last target {} kbit/s",
        samples.last().unwrap().1
    );
    assert!(back.is_some(), "{log}");
    assert!(vr_lines.iter().any(|l| l.1.contains("(clean")), "{log}");
}

/// Kills the child when dropped (a failed assertion must not leave vr-receive running).
struct Guard(std::process::Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
fn scopeguard_kill(c: std::process::Child) -> Guard {
    Guard(c)
}
