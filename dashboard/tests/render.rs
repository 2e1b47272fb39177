//! Drawing snapshots into buffers: the full layout with a stream, the waiting state, a
//! 20x5 terminal against its exact expected buffer, a zero-size area, the help overlay;
//! and the stats-segment reader refusing another layout version.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use vr_dashboard::model::*;
use vr_dashboard::ui::{self, View};

fn stage(name: &'static str, pid: u32, fps: f64) -> StageView {
    StageView {
        name,
        state: "running",
        pid,
        cpu_pct: 12.0,
        rss_kb: 20480,
        affinity: "2".into(),
        policy: "FIFO 90".into(),
        vmlck_kb: 20480,
        fps,
        drops: 1,
        restarts: 0,
        heartbeat_age_ms: Some(7),
        error: None,
    }
}

/// A page report: decoded p50 11.5 / p99 25.2 ms at 59.5 fps, 0.4 s old.
fn report() -> ReportView {
    ReportView {
        latency_p50_ms: Some(11.5),
        latency_p99_ms: Some(25.2),
        display_p50_ms: Some(20.0),
        display_p99_ms: Some(33.0),
        decode_ms: Some(1.2),
        fps: Some(59.5),
        decoded: Some(590),
        reconnects: Some(0),
        report_age_s: Some(0.4),
    }
}

fn snapshot(stream: bool) -> Snapshot {
    let s = StreamView {
        destination: "192.168.1.100:5004".into(),
        width: 1280,
        height: 720,
        fps: 60,
        profile: "low".into(),
        target_ms: 20,
        supervisor_pid: 100,
        uptime_s: 3725,
        stages: vec![stage("camera", 101, 59.9), stage("encode", 102, 59.8), stage("network", 103, 59.7)],
        latency: ["camera", "queue", "encode", "send", "total"]
            .iter()
            .enumerate()
            .map(|(i, n)| SpanView { name: n, p50_ms: i as f64, p99_ms: i as f64 + 0.5 })
            .collect(),
        window_frames: 120,
        recent_total_us: (0..200).map(|i| 4000 + (i % 7) * 100).collect(),
        encoder: EncView { frames: 1000, idr: 17, bitrate_kbps: 8000, measured_kbps: 7950.0, last_bytes: 16000, last_qp: 24 },
        net: StreamNetView { packets: 12000, bytes: 14_000_000, batches: 1000, send_errors: 0, wouldblock_drops: 0, pps: 700.0 },
        rtcp: None,
        detector: Some("13.9 runs/s, 20.0 detections/s, inference 24.3 ms (mean 34.6), letterbox 0.8 ms; newest 3 boxes, 54 ms after capture".into()),
        page: Some(PageView {
            viewers: 1,
            sent: 600,
            skipped: 1,
            refused: 0,
            transport: Some("webrtc".into()),
            report: report(),
            list: vec![ViewerView {
                transport: "webrtc".into(),
                address: "192.168.1.100:50432".into(),
                report: report(),
            }],
        }),
    };
    Snapshot {
        instance: "vr-stream".into(),
        stream: stream.then_some(s),
        waiting: (!stream).then(|| "no /dev/shm/vr-stream-stats".into()),
        cpus: (0..4)
            .map(|i| CpuView {
                id: i,
                usage_pct: 25.0 * i as f64,
                isolated: i >= 2,
            })
            .collect(),
        interfaces: vec![
            IfaceView {
                name: "lo".into(),
                ..Default::default()
            },
            IfaceView {
                name: "wlan0".into(),
                tx_bps: 1e6,
                tx_pps: 700.0,
                ..Default::default()
            },
        ],
        route_interface: Some(1),
        temperature_c: Some(51.3),
        throttled: Some("ok".into()),
    }
}

#[test]
fn full_layout_shows_every_part() {
    let t = vr_dashboard::render_text(&snapshot(true), &View::default(), 100, 40);
    for want in [
        "vr-stream -> 192.168.1.100:5004  1280x720@60  8000 kbit/s  profile low  up 01:02:05",
        "cpu2*",
        "cpu3*",
        "75%",
        "temperature 51.3 °C",
        "throttling  ok",
        "encoder 7950/8000 kbit/s",
        "QP 24",
        "camera   running  101",
        "encode   running  102",
        "network  running  103",
        "FIFO 90",
        "59.9",
        "latency, last 120 frames",
        "total    4.00      4.50",
        "wlan0 (route to receiver)",
        "RTCP: no receiver reports",
        "detect: 13.9 runs/s",
        "page: webrtc, capture->decoded p50 11.5 p99 25.2 ms",
        "q quit",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    for l in t.lines() {
        assert!(l.chars().count() <= 100);
    }
}

#[test]
fn waiting_state() {
    let t = vr_dashboard::render_text(&snapshot(false), &View::default(), 100, 40);
    assert!(
        t.starts_with("waiting for vr-stream (vr-stream): no /dev/shm/vr-stream-stats"),
        "{t}"
    );
    assert!(t.contains("cpu0"), "CPU bars still drawn:\n{t}");
}

#[test]
fn tiny_terminal_matches_the_expected_buffer() {
    let area = Rect::new(0, 0, 20, 5);
    let mut buf = Buffer::empty(area);
    ui::draw(area, &mut buf, &snapshot(true), &View::default());
    let mut expected = Buffer::with_lines([
        "vr-stream -> 192.168",
        "total p50 4.0 p99 4.",
        "page p50 11.5 p99 25",
        "fps cam 60 enc 60 ne",
        "drops 3 restarts 0  ",
    ]);
    expected.set_style(
        Rect::new(0, 0, 9, 1),
        ratatui::style::Style::default().add_modifier(ratatui::style::Modifier::BOLD),
    );
    assert_eq!(buf, expected);

    let mut buf = Buffer::empty(area);
    ui::draw(area, &mut buf, &snapshot(false), &View::default());
    assert_eq!(
        buf.content
            .iter()
            .take(20)
            .map(|c| c.symbol())
            .collect::<String>(),
        "waiting for vr-strea"
    );
}

#[test]
fn zero_size_and_odd_sizes_do_not_panic() {
    let snap = snapshot(true);
    for (w, h) in [
        (0, 0),
        (0, 10),
        (10, 0),
        (1, 1),
        (59, 23),
        (60, 24),
        (61, 80),
        (300, 24),
        (60, 100),
    ] {
        let area = Rect::new(0, 0, w, h);
        let mut buf = Buffer::empty(area);
        let view = View {
            help: true,
            ..Default::default()
        };
        ui::draw(area, &mut buf, &snap, &view);
        ui::draw(area, &mut buf, &snapshot(false), &View::default());
    }
}

#[test]
fn help_overlay_and_selection() {
    let snap = snapshot(true);
    let mut view = View {
        help: true,
        ..Default::default()
    };
    let t = vr_dashboard::render_text(&snap, &view, 100, 40);
    assert!(t.contains("p          pause / resume updates"), "{t}");
    view.help = false;
    view.step(&snap, 1);
    assert_eq!(view.stage, 1);
    view.step(&snap, -2);
    assert_eq!(view.stage, 2, "wraps around");
    view.toggle_focus();
    view.step(&snap, 1);
    assert_eq!(
        view.iface,
        Some(0),
        "from the route's interface (1) to the next, wrapping"
    );
    let t = vr_dashboard::render_text(&snap, &view, 100, 40);
    assert!(t.contains("lo\n") || t.contains("│lo "), "{t}");
}

#[test]
fn reader_refuses_another_layout_version() {
    use std::io::{Seek, SeekFrom, Write};
    let inst = format!("vr-dash-ver-{}", std::process::id());
    let name = vr_shm::names::stats_name(&inst);
    let seg = vr_shm::stats::Stats::create(&name).unwrap();
    seg.set_info(&vr_shm::stats::StreamInfo {
        supervisor_pid: std::process::id(),
        ..Default::default()
    });
    // A segment written by another build: layout version field (offset 8) = current - 1.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.seek(SeekFrom::Start(8)).unwrap();
    f.write_all(&(vr_shm::LAYOUT_VERSION - 1).to_ne_bytes())
        .unwrap();
    drop(f);
    let mut col = Collector::new(&inst, std::time::Duration::from_secs(2));
    let snap = col.collect();
    assert!(snap.stream.is_none(), "no garbage shown");
    let why = snap.waiting.clone().unwrap();
    assert!(
        why.contains(&format!(
            "layout version {}, this build reads version {}",
            vr_shm::LAYOUT_VERSION - 1,
            vr_shm::LAYOUT_VERSION
        )) && why.contains("different builds"),
        "{why}"
    );
    let t = vr_dashboard::render_text(&snap, &View::default(), 100, 40);
    assert!(t.contains("waiting for vr-stream"), "{t}");
    drop(seg);
}
