//! RTCP between vr-stream and real receivers on 127.0.0.1:
//! - GStreamer's rtpbin (an independent RTP stack) receives the stream and our sender
//!   reports, and its receiver reports about our SSRC reach vr-stream (with an RTT computed
//!   from GStreamer's LSR/DLSR, i.e. GStreamer understood our SRs);
//! - a receiver played by the test: SRs arrive once a second and agree with the RTP
//!   stream, a PLI brings an IDR within a few frames, an RR and a NACK are counted, a clock
//!   probe is answered with the sender's time, and a BYE ends the stream.

mod common;
use common::*;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vr_stream::rtcp::{self, Rtcp};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config_file(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("vr.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn gstreamer_rtpbin_receiver_reports_reach_the_sender() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port_pair();
    let local = free_port_pair();
    let dir = tempfile::tempdir().unwrap();
    let caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96";
    let mut gst = Command::new("gst-launch-1.0")
        .args(["-q", "rtpbin", "name=rb"])
        .args([
            "udpsrc",
            &format!("port={port}"),
            &format!("caps={caps}"),
            "!",
            "rb.recv_rtp_sink_0",
        ])
        .args([
            "rb.",
            "!",
            "rtph264depay",
            "!",
            "h264parse",
            "!",
            "fakesink",
        ])
        .args([
            "udpsrc",
            &format!("port={}", port + 1),
            "!",
            "rb.recv_rtcp_sink_0",
        ])
        .args([
            "rb.send_rtcp_src_0",
            "!",
            "udpsink",
            "host=127.0.0.1",
            &format!("port={local}"),
            "sync=false",
            "async=false",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good)");
    wait_bound(&mut gst, "GStreamer", &[port, port + 1]);
    let cfg = config_file(
        dir.path(),
        &format!("[stream]\nrtcp_local_port = {local}\n"),
    );
    let inst = instance("rtcp-gst");
    let p = port.to_string();
    // 10 s: rtpbin reports every 5 s (RFC 3550's minimum interval), with a random offset.
    let out = run_vr(
        &[
            "--ip",
            "127.0.0.1",
            "--port",
            &p,
            "--sdp",
            "",
            "--config",
            &cfg,
            "--instance",
            &inst,
            "--frames",
            "600",
        ],
        Duration::from_secs(60),
    );
    let _ = gst.kill();
    let _ = gst.wait();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("no --json summary ({err}): {e}"));
    let r = &sum["rtcp"];
    eprintln!("RTCP at the sender: {r}");
    assert!(r["reports"].as_u64().unwrap() >= 1, "{r}");
    // No loss on loopback. (rtpbin may report -1 in all: it counts a packet twice at the
    // start; RFC 3550 §6.4.1 allows negative totals.)
    assert_eq!(r["last_fraction_lost_pct"].as_f64(), Some(0.0), "{r}");
    assert!(
        [0, -1].contains(&r["cumulative_lost"].as_i64().unwrap()),
        "{r}"
    );
    let rtt_ms = r["rtt_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no RTT (GStreamer's LSR did not match our SR): {r}"));
    assert!(rtt_ms < 100.0, "{r}");
}

/// Whether an RTP payload starts an IDR slice (single NAL unit type 5 or the first FU-A
/// fragment of one).
fn starts_idr(payload: &[u8]) -> bool {
    match payload.first().map(|b| b & 0x1f) {
        Some(5) => true,
        Some(28) => payload
            .get(1)
            .is_some_and(|f| f & 0x80 != 0 && f & 0x1f == 5),
        _ => false,
    }
}

#[test]
fn sr_pli_rr_nack_clock_probe_and_bye_with_a_test_receiver() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port_pair();
    let rtp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let rtcp_sock = UdpSocket::bind(("127.0.0.1", port + 1)).unwrap();
    rtp.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    rtcp_sock.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // No periodic IDR within the run: the only IDRs are the first frame and the PLI's.
    let cfg = config_file(dir.path(), "[encoder]\nkeyint = 1000\n");
    let inst = instance("rtcp-test");
    let p = port.to_string();
    let vr = std::thread::spawn(move || {
        run_vr(
            &[
                "--ip",
                "127.0.0.1",
                "--port",
                &p,
                "--sdp",
                "",
                "--config",
                &cfg,
                "--instance",
                &inst,
                "--frames",
                "300",
                "--width",
                "640",
                "--height",
                "360",
            ],
            Duration::from_secs(60),
        )
    });

    let mut buf = [0u8; 2048];
    let mut ssrc = None;
    let mut frames: Vec<u32> = vec![]; // RTP timestamps in arrival order
    let mut idr_ts: Vec<u32> = vec![];
    let mut last_ts = 0u32;
    let mut srs: Vec<(Instant, rtcp::SenderInfo)> = vec![];
    let mut sender = None;
    let mut pli_at_frame = None;
    let mut probe_answer = None;
    let mut bye = false;
    let t0 = Instant::now();
    while !vr.is_finished() && t0.elapsed() < Duration::from_secs(60) {
        if let Ok(n) = rtp.recv(&mut buf) {
            let pk = vr_stream::rtp::parse_rtp(&buf[..n], 1).expect("valid RTP");
            ssrc = Some(pk.ssrc);
            if frames.last() != Some(&pk.timestamp) {
                frames.push(pk.timestamp);
            }
            last_ts = pk.timestamp;
            if starts_idr(pk.payload) && idr_ts.last() != Some(&pk.timestamp) {
                idr_ts.push(pk.timestamp);
            }
        }
        while let Ok((n, from)) = rtcp_sock.recv_from(&mut buf) {
            if let Some((t1, k, t2, t3)) = vr_stream::clock::parse_answer(&buf[..n]) {
                probe_answer = Some((t1, k, t2, t3, vr_stream::rt::realtime().to_ntp()));
                continue;
            }
            for p in rtcp::parse_compound(&buf[..n]).expect("valid RTCP from vr-stream") {
                match p {
                    Rtcp::SenderReport { ssrc: s, info, .. } => {
                        assert_eq!(Some(s), ssrc, "SR about the RTP stream's SSRC");
                        // The SR's RTP time is "now" in the stream's timeline: within
                        // 200 ms of the newest frame's timestamp.
                        let d = info.rtp_ts.wrapping_sub(last_ts) as i32;
                        assert!(
                            d.abs() < 18_000,
                            "SR rtp_ts {} vs last frame {last_ts}",
                            info.rtp_ts
                        );
                        srs.push((Instant::now(), info));
                        sender = Some(from);
                    }
                    Rtcp::Sdes { cname, .. } => assert!(cname.unwrap().starts_with("vr-stream@")),
                    Rtcp::Bye { ssrcs } => {
                        assert_eq!(ssrcs, vec![ssrc.unwrap()]);
                        bye = true;
                    }
                    Rtcp::ReceiverReport { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        // After the second SR: PLI, RR (LSR = that SR), NACK, clock probe — once.
        if pli_at_frame.is_none() && srs.len() >= 2 {
            let to = sender.unwrap();
            let s = ssrc.unwrap();
            let mut b = vec![];
            let lsr = rtcp::ntp_middle32(srs.last().unwrap().1.ntp);
            rtcp::write_rr(
                &mut b,
                0x7e57,
                &[rtcp::ReportBlock {
                    ssrc: s,
                    fraction_lost: 3,
                    cumulative_lost: 2,
                    ext_highest_seq: 1,
                    jitter: 45,
                    lsr,
                    dlsr: 0,
                }],
            );
            rtcp::write_pli(&mut b, 0x7e57, s);
            rtcp::write_nack(&mut b, 0x7e57, s, &[10, 11, 12]);
            rtcp_sock.send_to(&b, to).unwrap();
            // Someone else's report (ffmpeg-like, other SSRC) must change nothing.
            let mut other = vec![];
            rtcp::write_rr(
                &mut other,
                0x0bad,
                &[rtcp::ReportBlock {
                    ssrc: s ^ 1,
                    fraction_lost: 200,
                    ..Default::default()
                }],
            );
            rtcp_sock.send_to(&other, to).unwrap();
            let t1 = vr_stream::rt::realtime().to_ntp();
            rtcp_sock
                .send_to(&vr_stream::clock::request(t1, 9), to)
                .unwrap();
            pli_at_frame = Some(frames.len());
        }
    }
    let out = vr.join().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    // Drain what came after the last RTP packet (the BYE).
    std::thread::sleep(Duration::from_millis(100));
    while let Ok(n) = rtcp_sock.recv(&mut buf) {
        if let Ok(ps) = rtcp::parse_compound(&buf[..n]) {
            bye |= ps.iter().any(|p| matches!(p, Rtcp::Bye { .. }));
        }
    }
    eprintln!(
        "{} frames, IDR at {:?}, {} SRs, PLI after frame {:?}",
        frames.len(),
        idr_ts
            .iter()
            .map(|t| frames.iter().position(|f| f == t))
            .collect::<Vec<_>>(),
        srs.len(),
        pli_at_frame
    );
    assert!(frames.len() >= 290, "{} frames received", frames.len());
    // One SR a second over a 5 s stream.
    assert!((4..=7).contains(&srs.len()), "{} SRs", srs.len());
    assert!(
        srs.windows(2)
            .all(|w| w[1].1.packets >= w[0].1.packets && w[1].1.octets > w[0].1.octets)
    );
    let gaps: Vec<u128> = srs
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_millis())
        .collect();
    assert!(
        gaps.iter().all(|&g| (700..=1400).contains(&g)),
        "SR gaps {gaps:?} ms"
    );
    // The PLI's IDR: the first IDR after the first frame, within 4 frames of the PLI.
    assert_eq!(idr_ts.len(), 2, "IDRs: {idr_ts:?}");
    assert_eq!(idr_ts[0], frames[0]);
    let at = frames.iter().position(|&f| f == idr_ts[1]).unwrap();
    let pli = pli_at_frame.unwrap();
    assert!(
        at >= pli && at <= pli + 4,
        "IDR at frame {at}, PLI sent after frame {pli}"
    );
    // Clock probe: answered with the sender's wall clock, receive then send time (same
    // machine: t1 <= t2 <= t3 <= t4). (This loop reads RTCP only between 5 ms RTP waits,
    // so its t4 is late; tests/receive.rs checks vr-receive's offset estimate.)
    let (t1, k, t2, t3, t4) = probe_answer.expect("clock probe answered");
    assert_eq!(k, 9);
    assert!(t1 <= t2 && t2 <= t3 && t3 <= t4, "{t1} {t2} {t3} {t4}");
    assert!(bye, "no BYE at the end");
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("no --json summary ({err}): {e}"));
    let r = &sum["rtcp"];
    // What the receiver report said (fraction lost 3/256), and the PLI and NACK acted on.
    assert_eq!(r["reports"], 1, "{r}");
    assert_eq!(
        r["last_fraction_lost_pct"].as_f64(),
        Some(3.0 * 100.0 / 256.0),
        "{r}"
    );
    assert_eq!(r["cumulative_lost"], 2, "{r}");
    assert_eq!(r["jitter_ms"].as_f64(), Some(45.0 / 90.0), "{r}");
    assert!(r["rtt_ms"].is_f64(), "{r}");
    assert_eq!(
        (&r["pli"], &r["nack_packets"]),
        (&1.into(), &3.into()),
        "{r}"
    );
    // The human line says the same.
    assert!(
        e.contains("vr-stream: RTCP: 1 receiver report blocks (last: 1.2% lost, 2 lost in all, jitter 0.50 ms, RTT "),
        "{e}"
    );
}
