//! vr-stream → vr-relay → vr-receive across three network places: vr-stream in the host
//! namespace, the relay in its own namespace (veth to the host, 10.77.96.0/24), vr-receive
//! in a third (veth to the relay, 10.77.98.0/24). The relay adds loss, delay, jitter and
//! reordering (this kernel has no netem), deterministically with a seed.
//!
//! - 1% random loss, 5 ms ± 2 ms delay, 1% reordering, FEC 20%: >= 99.5% of the frames
//!   complete (or rebuilt), and ffmpeg decodes what vr-receive wrote;
//! - 5% loss in short bursts, 5 ms ± 2 ms: every unrepairable loss heals at the IDR the
//!   PLI asks for, and ffmpeg decodes everything written;
//! - 5 ms fixed delay, no loss: vr-receive's skew-corrected capture → complete latency
//!   (p50) equals vr-stream's own capture → last packet p50 plus the delay the relay
//!   reports adding, within 1 ms.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Path3 {
    relay: Netns,
    recv: Netns,
}

/// Host ↔ relay namespace (10.77.96.1 / .2) and relay ↔ receiver namespace (10.77.98.1 /
/// .2). The receiver namespace also gets a link to the host (10.77.97.0/24, unused): the
/// stream can only reach it through the relay.
fn path3(tag: &str) -> Option<Path3> {
    let relay = Netns::new(&format!("{tag}r"), 96)?;
    let recv = Netns::new(&format!("{tag}c"), 97)?;
    relay.link_to(&recv, 98);
    Some(Path3 { relay, recv })
}

fn spawn_in(ns: &Netns, bin: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, bin])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

struct Run {
    rx: serde_json::Value,
    relay: serde_json::Value,
    vr_stderr: String,
    /// vr-stream's `--json` exit summary.
    vr_json: Vec<u8>,
    ids: Vec<u64>,
}

/// 600 frames of a 640x360 pattern at 3 Mbit/s, IDRs only on PLI, through the relay
/// with `relay_args` (the RTP path only: no viewer page).
fn run(tag: &str, relay_args: &[&str], fec_percent: u32) -> Option<Run> {
    let p = path3(tag)?;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.h264");
    let rx = spawn_in(
        &p.recv,
        env!("CARGO_BIN_EXE_vr-receive"),
        &[
            "--port",
            "5004",
            "--json",
            "--interval",
            "0",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    let mut args = vec![
        "--listen",
        "10.77.96.2",
        "--port",
        "5004",
        "--to",
        "10.77.98.2",
        "--json",
    ];
    args.extend_from_slice(relay_args);
    let relay_bin = workspace_bin("vr-relay", "vr-testkit");
    let relay = spawn_in(&p.relay, relay_bin.to_str().unwrap(), &args);
    p.recv.wait_udp_bound(5004);
    p.relay.wait_udp_bound(5004);
    let cfg = dir.path().join("vr.toml");
    std::fs::write(&cfg, format!("[encoder]\nkeyint = 1000\n[stream]\nfec_percent = {fec_percent}\n[abr]\nenabled = false\n")).unwrap();
    let inst = instance(tag);
    let out = run_vr(
        &[
            "--ip",
            "10.77.96.2",
            "--port",
            "5004",
            "--sdp",
            "",
            "--instance",
            &inst,
            "--frames",
            "600",
            "--width",
            "640",
            "--height",
            "360",
            "--bitrate",
            "3000",
            "--config",
            cfg.to_str().unwrap(),
            "--no-web",
        ],
        Duration::from_secs(60),
    );
    let vr_stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{vr_stderr}");
    let rx = finish_json(rx, Duration::from_secs(5), "vr-receive");
    let relay = finish_json(relay, Duration::from_millis(100), "vr-relay");
    let ids = decode_ids(&file, 640, 360);
    Some(Run {
        rx,
        relay,
        vr_stderr,
        vr_json: out.stdout,
        ids,
    })
}

fn frames(j: &serde_json::Value, k: &str) -> u64 {
    j["frames"][k].as_u64().unwrap()
}

#[test]
fn one_percent_loss_and_5_ms_jitter_with_fec_keep_995_permille_of_frames() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(r) = run(
        "rl1",
        &[
            "--loss",
            "1",
            "--delay-ms",
            "5",
            "--jitter-ms",
            "2",
            "--reorder",
            "1",
            "--seed",
            "11",
        ],
        20,
    ) else {
        skip("needs root to create network namespaces");
        return;
    };
    eprintln!("relay: {}\nreceiver: {}", r.relay, r.rx);
    let dropped = r.relay["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "the relay dropped nothing: {}", r.relay);
    let (c, rec, lost) = (
        frames(&r.rx, "complete"),
        frames(&r.rx, "recovered"),
        frames(&r.rx, "lost"),
    );
    assert_eq!(c + rec + lost, 600, "{}", r.rx);
    assert!(
        (c + rec) * 1000 >= 995 * 600,
        "{c} complete + {rec} rebuilt of 600"
    );
    assert!(rec > 0, "FEC rebuilt nothing: {}", r.rx);
    // Reordered packets within the window are not late.
    assert!(
        r.rx["packets"]["late"].as_u64().unwrap() <= dropped,
        "{}",
        r.rx
    );
    let ids = &r.ids;
    assert!(
        ids.len() as u64 + 3 >= c + rec,
        "ffmpeg decoded {} of {} written",
        ids.len(),
        c + rec
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "decoded out of order");
}

#[test]
fn five_percent_bursty_loss_heals_at_the_idr_the_pli_asks_for() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(r) = run(
        "rl5",
        &[
            "--loss",
            "5",
            "--burst",
            "2",
            "--delay-ms",
            "5",
            "--jitter-ms",
            "2",
            "--seed",
            "5",
        ],
        20,
    ) else {
        skip("needs root to create network namespaces");
        return;
    };
    eprintln!("relay: {}\nreceiver: {}", r.relay, r.rx);
    let lost = frames(&r.rx, "lost");
    assert!(lost > 0, "no unrepairable loss at 5% in bursts: {}", r.rx);
    let rec = &r.rx["recovery_frames"];
    // Frames after the latest unrecoverable loss up to and including the IDR: 2 = the IDR
    // is the second frame after it (loss noticed — a frame with its FEC in but too few
    // packets, or one silent for 4 ms without its tail — PLI out at once, 5 ms there, the
    // next frame the encoder starts is an IDR, 5 ms back). Measured: p50 2, max 3; 3 when
    // a whole frame and all its FEC vanish in one burst (nothing tells the receiver until
    // the next frame arrives). `broken_frames` (first loss to IDR, a lost IDR included):
    // p50 3, max 5. A fresh CI on a loaded machine saw recovery max 5 (broken max 7): the
    // IDR itself lost in a burst and the receiver's next PLI inside the sender's 20 ms
    // coalescing window (`vr_proto::session::PLI_MIN_INTERVAL_NS`), so the one after it
    // asks. Without PLI handling recovery would wait for the periodic IDR (keyint 1000).
    let (p50, max) = (rec["p50"].as_u64().unwrap(), rec["max"].as_u64().unwrap());
    assert!(
        p50 <= 2 && max <= 6,
        "recovery (frames after the latest loss to the IDR): {rec}; broken {}",
        r.rx["broken_frames"]
    );
    let idr = summary_field(&r.vr_json, "frames.idr").unwrap();
    assert!(idr >= 2, "PLIs brought IDRs: {idr}");
    let written = frames(&r.rx, "complete") + frames(&r.rx, "recovered")
        - r.rx["held_back"].as_u64().unwrap();
    assert!(
        r.ids.len() as u64 + 3 >= written,
        "ffmpeg decoded {} of {written} written",
        r.ids.len()
    );
    assert!(
        *r.ids.last().unwrap() >= 590,
        "decoding went on to the end: last id {}",
        r.ids.last().unwrap()
    );
}

#[test]
fn receiver_latency_agrees_with_sender_latency_plus_the_relay_delay() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(r) = run("rlat", &["--delay-ms", "5"], 20) else {
        skip("needs root to create network namespaces");
        return;
    };
    eprintln!("relay: {}\nreceiver: {}", r.relay, r.rx);
    let total_line = r
        .vr_stderr
        .lines()
        .find(|l| l.trim_start().starts_with("total (capture->last packet)"))
        .expect("latency table");
    let sender_p50: f64 = total_line
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    let relay_p50 = r.relay["added_delay_ms"]["p50"].as_f64().unwrap();
    let rx_p50 = r.rx["latency_ms"]["p50"].as_f64().unwrap();
    let offset = r.rx["clock"]["offset_ms"].as_f64().unwrap();
    eprintln!(
        "sender p50 {sender_p50} + relay {relay_p50} = {:.3} ms; receiver p50 {rx_p50} ms (clock offset {offset} ms)",
        sender_p50 + relay_p50
    );
    assert!(
        (relay_p50 - 5.0).abs() < 1.0,
        "the relay added {relay_p50} ms"
    );
    assert!(
        (rx_p50 - (sender_p50 + relay_p50)).abs() <= 1.0,
        "receiver {rx_p50} vs sender {sender_p50} + relay {relay_p50}"
    );
    // Probes cross the relay both ways with the same delay: the offset stays ~0 (same
    // kernel clock), the probes' RTT shows the 2 × 5 ms.
    assert!(offset.abs() < 1.0, "offset {offset} ms");
    assert!(
        r.rx["clock"]["rtt_ms"].as_f64().unwrap() >= 9.0,
        "{}",
        r.rx["clock"]
    );
    // Every frame whole: complete, or rebuilt when one packet came after its frame's FEC
    // (seen once on a loaded CI machine: 599 complete + 1 rebuilt, 1 late packet).
    let summary = r
        .vr_stderr
        .lines()
        .find(|l| l.contains("frames captured"))
        .unwrap_or("");
    assert_eq!(
        frames(&r.rx, "complete") + frames(&r.rx, "recovered"),
        600,
        "{}\n{summary}",
        r.rx
    );
    assert_eq!(frames(&r.rx, "lost"), 0, "{}", r.rx);
}
