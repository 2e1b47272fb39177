//! End to end: vr-stream → RTP/UDP on 127.0.0.1 → ffmpeg (an independent decoder reading
//! the SDP file vr-stream wrote) → raw frames compared with the source.

mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// Random access to the frames of an I420 Y4M file with plain `FRAME\n` lines.
struct Y4mFrames {
    f: std::fs::File,
    header: u64,
    frame: u64,
    count: u64,
}

impl Y4mFrames {
    fn open(p: &std::path::Path, frame: u64) -> Y4mFrames {
        let f = std::fs::File::open(p).unwrap();
        let mut head = vec![0u8; 512];
        f.read_at(&mut head, 0).unwrap();
        let header = head.iter().position(|&b| b == b'\n').unwrap() as u64 + 1;
        let count = (f.metadata().unwrap().len() - header) / (6 + frame);
        Y4mFrames {
            f,
            header,
            frame,
            count,
        }
    }

    fn luma(&self, i: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.f
            .read_exact_at(&mut v, self.header + i * (6 + self.frame) + 6)
            .unwrap();
        v
    }
}

/// The streaming tests pin their stages to the same CPUs: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What a stream to ffmpeg left: vr-stream's stderr and its `--json` exit summary, with
/// `frames.sent` from it.
struct Streamed {
    stderr: String,
    summary: serde_json::Value,
    sent: u64,
}

fn stream_to_ffmpeg(
    tag: &str,
    source: &str,
    extra: &[&str],
    frame_bytes: usize,
    on_frame: impl FnMut(&[u8]) + Send + 'static,
) -> Streamed {
    stream_to_ffmpeg_fed(tag, source, source, None, extra, frame_bytes, on_frame)
}

/// [`stream_to_ffmpeg`] with `feed` (a command line) writing vr-stream's standard input
/// (`--source -`); the SDP is written beforehand from `sdp_source` (same size and rate).
fn stream_to_ffmpeg_fed(
    tag: &str,
    source: &str,
    sdp_source: &str,
    feed: Option<&[&str]>,
    extra: &[&str],
    frame_bytes: usize,
    on_frame: impl FnMut(&[u8]) + Send + 'static,
) -> Streamed {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let inst = instance(tag);
    let port = free_port_pair().to_string();
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("stream.sdp");
    let sdp_s = sdp.to_str().unwrap();
    let mut args = vec![
        "--source",
        source,
        "--ip",
        "127.0.0.1",
        "--port",
        &port,
        "--sdp",
        sdp_s,
        "--instance",
        &inst,
    ];
    args.extend_from_slice(extra);
    // The SDP first, so that the receiver listens before the first packet is sent.
    let mut sdp_args = args.clone();
    sdp_args[1] = sdp_source;
    sdp_args.push("--sdp-only");
    let out = run_vr(&sdp_args, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sdp_text = std::fs::read_to_string(&sdp).unwrap();
    assert!(
        sdp_text.contains("packetization-mode=1") && sdp_text.contains("sprop-parameter-sets="),
        "{sdp_text}"
    );

    let mut ff = start_ffmpeg(&sdp, port.parse().unwrap());
    let stdout = ff.stdout.take().unwrap();
    let (reader, decoded) = spawn_frame_reader(stdout, frame_bytes, on_frame);
    let mut feeder = feed.map(|cmd| {
        std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", cmd[0]))
    });
    let stdin = match feeder.as_mut() {
        Some(f) => std::process::Stdio::from(f.stdout.take().unwrap()),
        None => std::process::Stdio::null(),
    };
    let out = run_vr_stdin(&args, Duration::from_secs(120), stdin);
    if let Some(mut f) = feeder {
        assert!(f.wait().unwrap().success(), "the feeder failed");
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "vr-stream failed: {stderr}");
    wait_settled(&decoded);
    interrupt(&ff);
    let t0 = std::time::Instant::now();
    while ff.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = ff.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap();
    let sent = summary_field(&out.stdout, "frames.sent").expect("the --json summary");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad = schema_violations("vr-stream-summary.schema.json", &doc);
    assert!(bad.is_empty(), "{bad}{doc}");
    assert!(doc["error"].is_null(), "{doc}");
    assert!(
        doc["latency_ms"]["total"]["frames"].as_u64() > Some(0),
        "{doc}"
    );
    // ffmpeg listened on the RTP port the whole time: no "nobody is listening" line.
    assert_eq!(doc["network"]["nobody_listening"], false, "{doc}");
    assert!(!stderr.contains("nobody is listening"), "{stderr}");
    assert_eq!(
        summary_field(&out.stdout, "network.send_errors"),
        Some(0),
        "{stderr}"
    );
    assert!(
        leftover_segments(&inst).is_empty(),
        "segments left: {:?}",
        leftover_segments(&inst)
    );
    assert!(
        processes_of(&inst).is_empty(),
        "processes left: {:?}",
        processes_of(&inst)
    );
    Streamed {
        stderr,
        summary: doc,
        sent,
    }
}

/// Streams the real clip (or its first `feed_frames` frames through a pipe, `feed`) to
/// ffmpeg and checks what vr-stream sent (at least 98% of a file, 97% of a pipe) and what
/// ffmpeg decodes: at least 99% of the frames sent, in order, mean
/// PSNR-Y at least 38 dB against the source frames.
fn clip_through_ffmpeg(tag: &str, source: &str, feed: Option<&[&str]>, extra: &[&str], count: u64) {
    let clip = clip();
    let (w, h) = (1280usize, 720usize);
    let fb = w * h * 3 / 2;
    let src = Y4mFrames::open(&clip, fb as u64);
    assert_eq!(src.count, 600);
    let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, f64)>::new()));
    let res2 = results.clone();
    let mut next = 0u64;
    let on_frame = move |f: &[u8]| {
        // Match each decoded frame with its source frame: the next one expected, or (after
        // a loss) the best of the following few.
        let y = &f[..w * h];
        let mut best = (next, psnr(y, &src.luma(next.min(src.count - 1), w * h)));
        if best.1 < 30.0 {
            for j in next + 1..(next + 8).min(src.count) {
                let p = psnr(y, &src.luma(j, w * h));
                if p > best.1 {
                    best = (j, p);
                }
            }
        }
        next = best.0 + 1;
        res2.lock().unwrap().push(best);
    };
    let file = format!("file:{}", clip.display());
    let mut args = vec!["--bitrate", "8000"];
    args.extend_from_slice(extra);
    let Streamed { stderr, sent, .. } =
        stream_to_ffmpeg_fed(tag, source, &file, feed, &args, fb, on_frame);
    let res = results.lock().unwrap();
    // Frames the sender itself dropped (latest-wins ring) would show here. From a file
    // vr-stream paces the frames itself: at most 2% may go (1% was exceeded once on this
    // VM: 9 of 600 dropped while the guest stalled, x264 max 40.6 ms against p50 6.1 ms and
    // the SCHED_FIFO camera stage itself 11.9 ms late once). From a pipe the feeder's pace
    // is what arrives: `ffmpeg -re` decoding the clip on the same two CPUs falls behind and
    // then writes frames back to back, and latest-wins rightly keeps the newer one (a fresh
    // CI run: 4 of 300 dropped, encode p99 5.5 ms): at most 3%.
    let least = if feed.is_some() {
        count * 97
    } else {
        count * 98
    };
    assert!(sent * 100 >= least, "sent only {sent} of {count}: {stderr}");
    let decoded = res.len() as u64;
    let mean = res.iter().map(|r| r.1).sum::<f64>() / res.len().max(1) as f64;
    let worst = res.iter().map(|r| r.1).fold(f64::MAX, f64::min);
    let missing: Vec<u64> = (0..count)
        .filter(|i| !res.iter().any(|r| r.0 == *i))
        .collect();
    eprintln!(
        "decoded {decoded}/{sent} frames, PSNR-Y mean {mean:.2} dB, worst {worst:.2} dB, source frames not decoded: {missing:?}"
    );
    assert!(
        decoded * 100 >= sent * 99,
        "decoded {decoded} of {sent}\n{stderr}"
    );
    assert!(mean >= 38.0, "mean PSNR-Y {mean:.2} dB < 38");
    // Matched source frames are in order without repeats.
    assert!(res.windows(2).all(|p| p[1].0 > p[0].0));
}

#[test]
fn real_clip_720p60_8mbps_is_decoded_by_ffmpeg_with_psnr_above_38() {
    let file = format!("file:{}", clip().display());
    clip_through_ffmpeg("clip", &file, None, &[], 600);
}

/// ffmpeg writing the clip in real time (`-re`) to vr-stream's standard input.
fn feeder(format: &[&str], frames: u64) -> Vec<String> {
    let mut v: Vec<String> = ["ffmpeg", "-nostdin", "-v", "error", "-re", "-i"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(clip().display().to_string());
    v.extend(["-frames:v".to_string(), frames.to_string()]);
    v.extend(format.iter().map(|s| s.to_string()));
    v.push("-".into());
    v
}

#[test]
fn y4m_on_stdin_is_decoded_by_ffmpeg_with_psnr_above_38() {
    let feed = feeder(&["-f", "yuv4mpegpipe"], 300);
    let feed: Vec<&str> = feed.iter().map(|s| s.as_str()).collect();
    clip_through_ffmpeg("pipey4m", "-", Some(&feed), &[], 300);
}

#[test]
fn raw_i420_on_stdin_is_decoded_by_ffmpeg_with_psnr_above_38() {
    let feed = feeder(&["-f", "rawvideo", "-pix_fmt", "yuv420p"], 300);
    let feed: Vec<&str> = feed.iter().map(|s| s.as_str()).collect();
    let raw = [
        "--pipe-format",
        "i420",
        "--width",
        "1280",
        "--height",
        "720",
        "--fps",
        "60",
    ];
    clip_through_ffmpeg("pipei420", "-", Some(&feed), &raw, 300);
}

/// Streams 400 frames of the 640x360 pattern (plus `extra` flags) to ffmpeg and returns
/// vr-stream's stderr, the frames sent and the frame ids read from the decoded pictures.
fn pattern_through_ffmpeg(tag: &str, extra: &[&str]) -> (Streamed, Vec<u64>) {
    let (w, h) = (640u32, 360u32);
    let fb = (w * h * 3 / 2) as usize;
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Option<u64>>::new()));
    let ids2 = ids.clone();
    let on_frame = move |f: &[u8]| {
        ids2.lock()
            .unwrap()
            .push(vr_stream::source::pattern::read_id(
                &f[..(w * h) as usize],
                w,
                h,
            ))
    };
    let mut args = vec![
        "--width",
        "640",
        "--height",
        "360",
        "--frames",
        "400",
        "--bitrate",
        "4000",
    ];
    args.extend_from_slice(extra);
    let streamed = stream_to_ffmpeg(tag, "pattern", &args, fb, on_frame);
    let read = ids
        .lock()
        .unwrap()
        .iter()
        .map(|i| i.expect("every decoded frame carries a readable id"))
        .collect();
    (streamed, read)
}

#[test]
fn pattern_frame_ids_arrive_in_order_without_duplicates() {
    let (Streamed { stderr, sent, .. }, read) = pattern_through_ffmpeg("pattern", &[]);
    assert!(sent >= 396, "sent only {sent} of 400: {stderr}");
    eprintln!("pattern: decoded {} of {sent} sent frames", read.len());
    assert!(
        read.len() as u64 * 100 >= sent * 99,
        "decoded {} of {sent}",
        read.len()
    );
    assert!(
        read.windows(2).all(|p| p[1] > p[0]),
        "ids not strictly increasing: {read:?}"
    );
    assert!(read.iter().all(|&i| i < 400));
}

#[test]
fn stereo_pattern_pair_arrives_side_by_side() {
    // Two patterns of 320x240, composed into 640x240; the right one draws id + 1000000.
    let (w, h) = (320usize, 240usize);
    let fb = 2 * w * h * 3 / 2;
    let ids = std::sync::Arc::new(std::sync::Mutex::new(
        Vec::<(Option<u64>, Option<u64>)>::new(),
    ));
    let ids2 = ids.clone();
    let on_frame = move |f: &[u8]| {
        let half = |x0: usize| -> Vec<u8> {
            (0..h)
                .flat_map(|y| f[y * 2 * w + x0..y * 2 * w + x0 + w].to_vec())
                .collect()
        };
        let read = |x0| vr_stream::source::pattern::read_id(&half(x0), w as u32, h as u32);
        ids2.lock().unwrap().push((read(0), read(w)));
    };
    let args = [
        "--stereo",
        "--width",
        "320",
        "--height",
        "240",
        "--frames",
        "240",
        "--bitrate",
        "3000",
    ];
    let Streamed { stderr, sent, .. } = stream_to_ffmpeg("stereo", "pattern", &args, fb, on_frame);
    assert!(
        stderr.contains("640x240"),
        "the composed frame is twice as wide: {stderr}"
    );
    let got = ids.lock().unwrap().clone();
    eprintln!("stereo: decoded {} of {sent} sent frames", got.len());
    assert!(
        got.len() as u64 * 100 >= sent * 98,
        "decoded {} of {sent}",
        got.len()
    );
    for (l, r) in &got {
        let (l, r) = (
            l.expect("left half id readable"),
            r.expect("right half id readable"),
        );
        assert_eq!(
            r,
            l + vr_stream::source::stereo::RIGHT_PATTERN_ID_OFFSET,
            "halves from the two sources, same instant"
        );
    }
    let left: Vec<u64> = got.iter().map(|p| p.0.unwrap()).collect();
    assert!(
        left.windows(2).all(|p| p[1] > p[0]),
        "ids increasing: {left:?}"
    );
}

#[test]
fn gstreamer_plays_the_sdp_too() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (w, h) = (640u32, 360u32);
    let inst = instance("gst");
    let port = free_port_pair();
    let ports = port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("stream.sdp");
    let args = [
        "--source",
        "pattern",
        "--width",
        "640",
        "--height",
        "360",
        "--frames",
        "300",
        "--port",
        &ports,
        "--sdp",
        sdp.to_str().unwrap(),
        "--instance",
        &inst,
    ];
    let mut sdp_args = args.to_vec();
    sdp_args.push("--sdp-only");
    assert!(run_vr(&sdp_args, Duration::from_secs(20)).status.success());
    // sdpdemux (RTP session from the SDP) -> depayload -> OpenH264 decoder -> raw I420 on
    // the standard output.
    let pipeline = format!(
        "filesrc location={} ! sdpdemux latency=0 ! rtph264depay ! h264parse ! openh264dec ! videoconvert ! video/x-raw,format=I420 ! fdsink",
        sdp.display(),
    );
    let mut gst = std::process::Command::new("gst-launch-1.0")
        .args(["-q", "-e"])
        .args(pipeline.split_whitespace())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 (gstreamer1.0-tools, -plugins-bad)");
    let (ids, decoded) = read_pattern_ids_counted(gst.stdout.take().unwrap(), w, h);
    wait_bound(&mut gst, "GStreamer", &[port]);
    std::thread::sleep(Duration::from_millis(300));
    let out = run_vr(&args, Duration::from_secs(60));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    let sent = summary_field(&out.stdout, "frames.sent").unwrap();
    wait_settled(&decoded);
    interrupt(&gst);
    let mut gst = gst;
    let t0 = std::time::Instant::now();
    while gst.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = gst.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ids: Vec<u64> = ids
        .join()
        .unwrap()
        .into_iter()
        .map(|id| id.expect("readable id"))
        .collect();
    eprintln!("GStreamer: decoded {} of {sent} sent frames", ids.len());
    assert!(
        ids.len() as u64 * 100 >= sent * 99,
        "GStreamer decoded {} of {sent}",
        ids.len()
    );
    assert!(ids.windows(2).all(|p| p[1] > p[0]), "{ids:?}");
}

#[test]
fn ultra_low_profile_intra_refresh_is_decoded_by_ffmpeg() {
    let (streamed, read) = pattern_through_ffmpeg("ultralow", &["--profile", "ultra_low"]);
    let Streamed {
        stderr,
        summary,
        sent,
    } = streamed;
    assert_eq!(
        summary["frames"]["idr"], 1,
        "intra refresh: one IDR only: {summary} {stderr}"
    );
    eprintln!("ultra_low: decoded {} of {sent} sent frames", read.len());
    assert!(
        read.len() as u64 * 100 >= sent * 99,
        "decoded {} of {sent}",
        read.len()
    );
    assert!(read.windows(2).all(|p| p[1] > p[0]));
}

#[test]
fn intra_refresh_stream_repeats_sps_pps_in_band_every_second() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let port = rx.local_addr().unwrap().port().to_string();
    let inst = instance("inband");
    let reader = std::thread::spawn(move || {
        // IDR access units: the RTP timestamps of packets that start an IDR slice (a frame
        // has one slice per x264 slice thread).
        let (mut param_sets, mut idr, mut packets) = (0, std::collections::BTreeSet::new(), 0);
        let mut b = [0u8; 2048];
        while let Ok(n) = rx.recv(&mut b) {
            let p = vr_stream::rtp::parse_rtp(&b[..n], 1).expect("RTP");
            packets += 1;
            match p.payload[0] & 0x1f {
                24 if p.payload[3] & 0x1f == 7 => param_sets += 1,
                5 => {
                    idr.insert(p.timestamp);
                }
                28 if p.payload[1] & 0x80 != 0 && p.payload[1] & 0x1f == 5 => {
                    idr.insert(p.timestamp);
                }
                _ => {}
            }
        }
        (param_sets, idr.len(), packets)
    });
    let out = run_vr(
        &[
            "--profile",
            "ultra_low",
            "--source",
            "pattern",
            "--width",
            "320",
            "--height",
            "240",
            "--frames",
            "180",
            "--port",
            &port,
            "--sdp",
            "",
            "--instance",
            &inst,
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (param_sets, idr, packets) = reader.join().unwrap();
    assert!(packets >= 180);
    assert_eq!(idr, 1, "one IDR access unit (frame 0)");
    // Frame 0 (the IDR) and then once a second at 60 fps: frames 60 and 120.
    assert_eq!(param_sets, 3, "SPS/PPS STAP-A packets");
}

/// A 320x180 pattern stream of `frames` frames to 127.0.0.1:`port`, no SDP file, no
/// viewer page.
fn small_pattern_args<'a>(port: &'a str, inst: &'a str, frames: &'a str) -> [&'a str; 15] {
    [
        "--ip",
        "127.0.0.1",
        "--port",
        port,
        "--sdp",
        "",
        "--instance",
        inst,
        "--no-web",
        "--width",
        "320",
        "--height",
        "180",
        "--frames",
        frames,
    ]
}

/// Nobody on the RTP port: the exit summary says so on one line, with how to start a
/// receiver, instead of a count of send errors; a receiver that binds the port (vr-receive)
/// silences it.
#[test]
fn a_stream_nobody_listens_to_says_so_in_one_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port_pair();
    let p = port.to_string();
    let inst = instance("nobody");
    let args = small_pattern_args(&p, &inst, "120");
    let out = run_vr(&args, Duration::from_secs(30));
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{e}");
    let lines: Vec<&str> = e
        .lines()
        .filter(|l| l.contains("nobody is listening"))
        .collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(
        lines[0].contains(&format!("127.0.0.1:{port}"))
            && lines[0].contains(&format!("vr-receive --port {port}"))
            && lines[0].contains("ffplay"),
        "{e}"
    );
    assert_eq!(
        summary_field(&out.stdout, "network.send_errors"),
        Some(0),
        "refusals are not counted as errors: {e}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["network"]["nobody_listening"], true, "{doc}");
    assert!(doc["network"]["refused"].as_u64() > Some(0), "{doc}");

    // The same with vr-receive listening.
    let mut rx = std::process::Command::new(env!("CARGO_BIN_EXE_vr-receive"))
        .args(["--port", &p, "--duration", "30", "-o", "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("vr-receive");
    wait_bound(&mut rx, "vr-receive", &[port]);
    let out = run_vr(&args, Duration::from_secs(30));
    let _ = rx.kill();
    let _ = rx.wait();
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{e}");
    assert!(!e.contains("nobody is listening"), "{e}");
    assert_eq!(
        summary_field(&out.stdout, "network.send_errors"),
        Some(0),
        "{e}"
    );
    assert!(leftover_segments(&inst).is_empty() && processes_of(&inst).is_empty());
}

/// Streams 300 pattern frames (keyint 60: 5 IDRs) while `spam` sends PLIs naming
/// `media(ssrc)` every 5 ms from a socket bound to `from_ip`; returns the IDR count of the
/// exit summary. The test reads the SSRC from the RTP packets and the sender's RTCP address
/// from its sender reports, as anyone on the network could.
fn idrs_under_pli_spam(tag: &str, from_ip: &str, media: fn(u32) -> u32) -> u64 {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port_pair();
    let rtp = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let rtcp = std::net::UdpSocket::bind(("127.0.0.1", port + 1)).unwrap();
    rtp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rtcp.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let inst = instance(tag);
    let p = port.to_string();
    let vr = std::process::Command::new(bin())
        .args(small_pattern_args(&p, &inst, "300"))
        .arg("--json")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = rtp.recv(&mut buf).expect("an RTP packet");
    assert!(n >= 12);
    let ssrc = u32::from_be_bytes(buf[8..12].try_into().unwrap());
    // The first sender report (PT 200) gives the sender's RTCP address.
    let sender = loop {
        let (n, from) = rtcp.recv_from(&mut buf).expect("a sender report");
        if n >= 8 && buf[1] == 200 {
            break from;
        }
    };
    // Keep draining RTP so that nothing is refused; stop when the stream ends.
    rtp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let drain = std::thread::spawn(move || while rtp.recv(&mut [0u8; 2048]).is_ok() {});
    let spammer = std::net::UdpSocket::bind((from_ip, 0)).unwrap();
    let mut pli = vec![];
    vr_stream::rtcp::write_pli(&mut pli, 0x0bad_f00d, media(ssrc));
    let mut vr = vr;
    let status = loop {
        if let Some(st) = vr.try_wait().unwrap() {
            break st;
        }
        let _ = spammer.send_to(&pli, sender);
        std::thread::sleep(Duration::from_millis(5));
    };
    let (mut e, mut json) = (String::new(), vec![]);
    std::io::Read::read_to_string(&mut vr.stderr.take().unwrap(), &mut e).unwrap();
    std::io::Read::read_to_end(&mut vr.stdout.take().unwrap(), &mut json).unwrap();
    drain.join().unwrap();
    assert!(status.success(), "{e}");
    assert!(leftover_segments(&inst).is_empty() && processes_of(&inst).is_empty());
    summary_field(&json, "frames.idr").expect("IDR count")
}

/// Anyone who can reach the RTCP port could otherwise force an IDR every few frames:
/// PLIs from another host, or naming another media SSRC (0 included), are ignored; the
/// same PLIs from the receiver's host naming our SSRC are obeyed (the control).
#[test]
fn plis_from_another_host_or_about_another_ssrc_force_no_idr() {
    let from_elsewhere = idrs_under_pli_spam("pli-other-host", "127.0.0.2", |s| s);
    assert!(
        from_elsewhere <= 6,
        "PLIs from 127.0.0.2 made {from_elsewhere} IDRs in 300 frames"
    );
    let ssrc_zero = idrs_under_pli_spam("pli-ssrc-0", "127.0.0.1", |_| 0);
    assert!(
        ssrc_zero <= 6,
        "PLIs naming SSRC 0 made {ssrc_zero} IDRs in 300 frames"
    );
    let other_ssrc = idrs_under_pli_spam("pli-ssrc-other", "127.0.0.1", |s| s ^ 1);
    assert!(
        other_ssrc <= 6,
        "PLIs naming another SSRC made {other_ssrc} IDRs"
    );
    let receiver = idrs_under_pli_spam("pli-receiver", "127.0.0.1", |s| s);
    assert!(
        receiver >= 20,
        "the receiver's own PLIs made only {receiver} IDRs in 300 frames"
    );
}
