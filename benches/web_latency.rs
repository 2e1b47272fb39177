//! Capture → decoded latency on the viewer page in headless Chromium, WebRTC against the
//! WebSocket + WebCodecs path (the baseline), same run, same real clip (1280x720, 60 fps,
//! 6 Mbit/s, looped).
//!
//! Per transport: vr-stream with `--web` and the page (tests/web/view.mjs, playwright-core
//! driving Debian's Chromium) inside a private network namespace holding a veth pair with
//! 127.0.77.1/.2 (Chromium gathers no ICE candidates with `lo` alone); after the page
//! streams and its clock offset settles, the last 600 per-frame latencies the page measured
//! (capture time from vr-stream, corrected by the NTP-style offset; "decoded" = WebCodecs
//! output for the WebSocket, handed to the compositor — `requestVideoFrameCallback`'s
//! `presentationTime` — for WebRTC), and the same frames' capture → expected display
//! (`expectedDisplayTime` for WebRTC; for the WebSocket, the animation frame that drew it
//! plus one display refresh). Reports p50/p95/p99/max per transport for both, and the
//! differences.
//!
//! Needs root (network namespace), /usr/bin/chromium and `npm ci` in tests/web
//! (`scripts/install-browser-deps.sh`). Run: `cargo bench --bench web_latency` (10 s per
//! transport, 3 rounds). Under `cargo test` one round of 3 s.
//!
//! `WEB_BENCH_BEFORE=/path/to/vr-stream` adds another build (e.g. one from before a
//! change, built in a worktree) to every round, interleaved with this one, and reports it
//! as "before": the same machine, the same minutes.

mod common;
use common::clip;

use hdrhistogram::Histogram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The namespace (removed on drop).
struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ns_setup() -> Option<Ns> {
    let name = format!("vrs-webbench-{}", std::process::id());
    let ok = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !ok(&["netns", "add", &name]) {
        return None;
    }
    let ns = Ns(name);
    let n = ns.0.as_str();
    // No IPv6 in the namespace: the link-local addresses finishing duplicate address
    // detection a second after the veth comes up are a "network change" to Chromium,
    // which then aborts the page load (net::ERR_NETWORK_CHANGED).
    for key in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        let _ = Command::new("ip")
            .args(["netns", "exec", n, "sysctl", "-qw", key])
            .status();
    }
    for cmd in [
        vec!["-n", n, "link", "set", "lo", "up"],
        vec![
            "-n", n, "link", "add", "va", "type", "veth", "peer", "name", "vb",
        ],
        vec!["-n", n, "addr", "add", "127.0.77.1/24", "dev", "va"],
        vec!["-n", n, "addr", "add", "127.0.77.2/24", "dev", "vb"],
        vec!["-n", n, "link", "set", "va", "up"],
        vec!["-n", n, "link", "set", "vb", "up"],
    ] {
        assert!(ok(&cmd), "ip {cmd:?}");
    }
    Some(ns)
}

/// One run: the page's last latencies (ms) over `transport` (capture -> decoded, capture
/// -> expected display), and its decoded/sent counts.
fn run(
    ns: &Ns,
    exe: &str,
    transport: &str,
    secs: u32,
    port: u16,
) -> Result<(Vec<f64>, Vec<f64>, String), String> {
    let dir = std::env::temp_dir().join(format!("vr-webbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cfg = dir.join("web.toml");
    std::fs::write(&cfg, format!("[web]\ncert_dir = \"{}\"\n", dir.display()))
        .map_err(|e| e.to_string())?;
    let frames = ((secs + 12) * 60).to_string();
    let mut vr = Command::new("ip")
        .args(["netns", "exec", &ns.0, exe])
        .args([
            "--ip",
            "127.0.0.1",
            "--port",
            "5004",
            "--sdp",
            "",
            "--bitrate",
            "6000",
            "--loop",
            "--frames",
            &frames,
        ])
        .arg("--source")
        .arg(format!("file:{}", clip().display()))
        .args([
            "--web-port",
            &port.to_string(),
            "--web-pin",
            "314159",
            "--instance",
            &format!("webbench{}", std::process::id()),
        ])
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let probe = format!("exec 3<>/dev/tcp/127.0.77.1/{port}");
    while !Command::new("ip")
        .args(["netns", "exec", &ns.0, "bash", "-c", &probe])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = vr.kill();
            return Err("vr-stream's page did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("https://127.0.77.1:{port}/?pin=314159&transport={transport}");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "node",
            "view.mjs",
            &url,
            &secs.to_string(),
            "stream",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let _ = Command::new("kill")
        .args(["-INT", &vr.id().to_string()])
        .status();
    let _ = vr.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(text.lines().last().unwrap_or("")).map_err(|e| {
            format!(
                "view.mjs: {e}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    if v["status"] != "streaming" {
        return Err(format!("the page did not stream: {v}"));
    }
    let list = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    let (lat, display) = (list("latencies"), list("displayLatencies"));
    let counts = match transport {
        "ws" => format!(
            "decoded {} of {} received",
            v["windowDecoded"], v["windowReceived"]
        ),
        _ => format!(
            "decoded {} of {} written",
            v["windowRtcDecoded"], v["windowReceived"]
        ),
    };
    Ok((lat, display, counts))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (secs, rounds) = if full { (10, 3) } else { (3, 1) };
    let ready = std::path::Path::new("/usr/bin/chromium").exists()
        && std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/web/node_modules/playwright-core"
        ))
        .exists();
    if !ready || !clip().exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium, tests/web/node_modules or the clip missing: .ci/run installs them"
        );
        eprintln!(
            "SKIPPED: needs /usr/bin/chromium, `npm ci` in tests/web and scripts/fetch-assets.sh"
        );
        return;
    }
    let Some(ns) = ns_setup() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot create a network namespace"
        );
        eprintln!("SKIPPED: needs root for a network namespace");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let new = || Histogram::<u64>::new(3).unwrap();
    // Per build and transport: capture -> decoded, capture -> expected display.
    let before = std::env::var("WEB_BENCH_BEFORE").ok();
    let mut hist = vec![
        (
            "ws",
            env!("CARGO_BIN_EXE_vr-stream").to_string(),
            new(),
            new(),
        ),
        (
            "webrtc",
            env!("CARGO_BIN_EXE_vr-stream").to_string(),
            new(),
            new(),
        ),
    ];
    if let Some(b) = &before {
        hist.push(("ws before", b.clone(), new(), new()));
        hist.push(("webrtc before", b.clone(), new(), new()));
    }
    for round in 0..rounds {
        for (t, exe, h, hd) in hist.iter_mut() {
            let transport = t.split(' ').next().unwrap_or("ws");
            let (lat, display, counts) =
                run(&ns, exe, transport, secs, port).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert!(
                lat.len() >= 60 * secs as usize / 2,
                "{t}: only {} latencies in {secs} s",
                lat.len()
            );
            for l in &lat {
                h.record((l.max(0.0) * 1000.0) as u64).unwrap(); // µs
            }
            for l in &display {
                hd.record((l.max(0.0) * 1000.0) as u64).unwrap();
            }
            println!(
                "round {round} {t:13}: {} frames measured, {counts}",
                lat.len()
            );
        }
    }
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    for (what, pick) in [("decoded", 0usize), ("expected display", 1)] {
        println!("capture -> {what} on the page, headless Chromium, 720p60, 6 Mbit/s (ms)");
        println!(
            "{:28} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "", "frames", "p50", "p95", "p99", "max"
        );
        for (t, _, h, hd) in &hist {
            let h = if pick == 0 { h } else { hd };
            if h.is_empty() {
                continue; // a build whose page does not measure it
            }
            let name = match *t {
                "ws" => "WebSocket+WebCodecs (base)",
                "webrtc" => "WebRTC (str0m)",
                "ws before" => "WebSocket, before",
                _ => "WebRTC, before",
            };
            println!(
                "{name:28} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                h.len(),
                q(h, 0.5),
                q(h, 0.95),
                q(h, 0.99),
                h.max() as f64 / 1000.0
            );
        }
        let (b, w) = if pick == 0 {
            (&hist[0].2, &hist[1].2)
        } else {
            (&hist[0].3, &hist[1].3)
        };
        println!(
            "WebRTC - WebSocket: p50 {:+.2} ms, p99 {:+.2} ms",
            q(w, 0.5) - q(b, 0.5),
            q(w, 0.99) - q(b, 0.99)
        );
    }
}
