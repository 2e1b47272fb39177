//! `vr-receive`: the reference receiver for vr-stream. RTP over UDP in, whole access units
//! out (Annex-B, `-o FILE` or `-o -` for `ffplay -`), with per-frame verdicts (complete,
//! recovered by FEC from port + 2, lost; late packets counted) and the capture → complete latency of every frame, from the
//! sender's abs-capture-time corrected by the clock offset between the two machines
//! (clock probes to the sender's RTCP socket, minimum-RTT sample: `vr_stream::clock`).
//! RTCP: receiver reports every 500 ms and a PLI when a frame is lost (repeated every
//! 50 ms until an IDR arrives), to the address the sender reports come from. Frames
//! after a loss are held back until that IDR (`--keep-broken` writes them anyway).
//!
//! Prints a line every `--interval` seconds and a summary at exit (`--json`: one JSON
//! document). Exit status 0, or 2 on a bad argument or socket error.
#![forbid(unsafe_code)]

use clap::Parser;
use hdrhistogram::Histogram;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use vr_stream::clock::{self, OffsetEstimator};
use vr_stream::receiver::{Receiver, ReceiverConfig, Verdict};
use vr_stream::rt::{monotonic_ns, realtime};
use vr_stream::rtcp::{self, Rtcp};

/// Receive a vr-stream RTP stream, write its access units, report loss and latency.
#[derive(Parser, Debug)]
#[command(name = "vr-receive", version, about)]
struct Cli {
    /// RTP port to listen on (RTCP: port + 1, FEC: port + 2) [default: the SDP's, or 5004].
    #[arg(long)]
    port: Option<u16>,
    /// Take port, payload type and abs-capture-time id from this SDP file (vr-stream
    /// writes one: stream.sdp); explicit options win.
    #[arg(long, value_name = "FILE")]
    sdp: Option<String>,
    /// Local address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Write the access units (Annex-B H.264) to FILE, or `-` for stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<String>,
    /// RTP payload type of the video [default: the SDP's, or 96].
    #[arg(long)]
    payload_type: Option<u8>,
    /// Header extension id of abs-capture-time (the sender's stream.capture_time_ext_id)
    /// [default: the SDP's, or 1].
    #[arg(long)]
    ext_id: Option<u8>,
    /// RTP payload type of the FEC packets (received on port + 2).
    #[arg(long, default_value_t = 127)]
    fec_payload_type: u8,
    /// How long an incomplete frame waits for reordered packets, ms.
    #[arg(long, default_value_t = 20)]
    reorder_ms: u64,
    /// Seconds between progress lines (0 = none).
    #[arg(long, default_value_t = 1)]
    interval: u64,
    /// Stop after N frames (complete + lost).
    #[arg(long)]
    frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// An incomplete frame that has had no packet for this long, and that FEC cannot
    /// rebuild, brings a PLI at once, ms (its lost verdict still waits for a later frame
    /// and the reorder window): a frame whose tail was lost is then healed by the second
    /// frame after it. 0 disables.
    #[arg(long, default_value_t = 4)]
    pli_after_ms: u64,
    /// Do not send RTCP (receiver reports, PLI) or clock probes.
    #[arg(long)]
    no_rtcp: bool,
    /// Take RTP over TCP (RFC 4571 framing) on --port, from `vr-stream --tcp`: listens,
    /// and takes a new connection in place of the old one. RTCP stays on UDP port + 1.
    #[arg(long)]
    tcp: bool,
    /// Print the summary as one JSON document on stdout (not with `-o -`).
    #[arg(long)]
    json: bool,
    /// Also write the frames that follow a lost frame before the next IDR (they reference
    /// a picture the decoder does not have: artifacts). Default: hold them back, as game
    /// streaming clients do, and resume at the IDR the PLI asks for.
    #[arg(long)]
    keep_broken: bool,
}

/// Receiver reports interval, ns.
const RR_INTERVAL_NS: u64 = 500_000_000;
/// A PLI is repeated this often until an IDR arrives, ns (the IDR answering it can be
/// lost without a trace: it is the largest frame).
const PLI_INTERVAL_NS: u64 = 50_000_000;
/// Round-trip time assumed before the first clock probe has measured one, ns.
const DEFAULT_RTT_NS: u64 = 20_000_000;
/// Clock probe interval, ns.
const PROBE_INTERVAL_NS: u64 = 1_000_000_000;

struct Summary {
    hist: Histogram<u64>,
    window: Histogram<u64>,
    plis: u64,
    offset: OffsetEstimator,
    bytes: u64,
    keyframes: u64,
    /// Frames held back while waiting for an IDR after a loss.
    held_back: u64,
    /// Frames from each loss to the IDR that healed it (the lost frame counts as 1).
    /// Per healed break: frames after the latest unrecoverable loss up to and including
    /// the IDR that healed it (the IDR the last PLI asked for).
    recovery: Vec<u64>,
    /// Per healed break: frames from the first lost frame to the IDR, both counted (longer
    /// than `recovery` when the IDR or a frame before it was lost too).
    broken: Vec<u64>,
    /// Detection messages (RTCP APP "VRDT") received, and how many named a frame we got.
    det_msgs: u64,
    det_matched: u64,
    det_total: u64,
    /// Capture → detections received, µs (for messages whose frame we got).
    det_age: Histogram<u64>,
    det_last: Option<vr_stream::detect::wire::WireDetections>,
    /// Recent frames: RTP timestamp → capture time (Unix ns, sender clock).
    recent: std::collections::VecDeque<(u32, i128)>,
}

/// `{"losses", "p50", "max"}` of a list of frame counts, or null when empty.
fn spread(v: &[u64]) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    let mut r = v.to_vec();
    r.sort_unstable();
    serde_json::json!({ "losses": r.len(), "p50": r[r.len() / 2], "max": r[r.len() - 1] })
}

/// A UDP socket bound to `addr`; the error names the port by `what` (`--port`, `RTCP
/// port`, ...), e.g. "RTCP port 5005: cannot listen on udp 0.0.0.0:5005: Address in use".
fn bind_udp(what: &str, addr: SocketAddr) -> Result<UdpSocket, String> {
    UdpSocket::bind(addr)
        .map_err(|e| format!("{what} {}: cannot listen on udp {addr}: {e}", addr.port()))
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn main() {
    let cli: Cli = vr_stream::cli::parse_or_exit("vr-receive");
    if let Err(e) = run(&cli) {
        eprintln!("vr-receive: error: {e}");
        std::process::exit(2);
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let sdp = match &cli.sdp {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("--sdp {path}: {e}"))?;
            Some(vr_stream::sdp::read_sdp(&text).map_err(|e| format!("--sdp {path}: {e}"))?)
        }
        None => None,
    };
    let port = cli.port.or(sdp.as_ref().map(|s| s.port)).unwrap_or(5004);
    let payload_type = cli
        .payload_type
        .or(sdp.as_ref().map(|s| s.payload_type))
        .unwrap_or(96);
    let ext_id = cli
        .ext_id
        .or(sdp.as_ref().and_then(|s| s.capture_time_ext_id))
        .unwrap_or(1);
    if port > 65533 || port == 0 {
        return Err(format!(
            "--port {port}: allowed 1..=65533 (RTCP uses port + 1, FEC port + 2)"
        ));
    }
    if cli.json && cli.output.as_deref() == Some("-") {
        return Err("--json and -o - both want stdout: write the stream to a file".into());
    }
    let rtp_addr = SocketAddr::new(cli.bind, port);
    let rtp = bind_udp("--port", rtp_addr)?;
    let rtcp_addr = SocketAddr::new(cli.bind, port + 1);
    let rtcp_sock = bind_udp("RTCP port", rtcp_addr)?;
    let fec_addr = SocketAddr::new(cli.bind, port + 2);
    let fec_sock = bind_udp("FEC port", fec_addr)?;
    for s in [&rtp, &rtcp_sock, &fec_sock] {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let _ = socket2::SockRef::from(&rtp).set_recv_buffer_size(4 << 20);
    let tcp_listener = if cli.tcp {
        let l = std::net::TcpListener::bind(rtp_addr)
            .map_err(|e| format!("--port {}: cannot listen on tcp {rtp_addr}: {e}", port))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        Some(l)
    } else {
        None
    };
    let mut tcp_conn: Option<std::net::TcpStream> = None;
    let mut tcp_buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut out: Option<Box<dyn Write>> = match cli.output.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::BufWriter::new(std::io::stdout()))),
        Some(p) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("-o {p}: {e}"))?,
        ))),
    };
    vr_stream::rt::install_stop_signals();
    let mut rx = Receiver::new(ReceiverConfig {
        payload_type,
        capture_time_ext_id: ext_id,
        reorder_window_ns: cli.reorder_ms * 1_000_000,
        fec_payload_type: cli.fec_payload_type,
    });
    let new_hist =
        || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut sum = Summary {
        hist: new_hist(),
        window: new_hist(),
        plis: 0,
        offset: OffsetEstimator::new(16),
        bytes: 0,
        keyframes: 0,
        held_back: 0,
        recovery: vec![],
        broken: vec![],
        det_msgs: 0,
        det_matched: 0,
        det_total: 0,
        det_age: new_hist(),
        det_last: None,
        recent: std::collections::VecDeque::with_capacity(256),
    };
    // Frames since the first loss not yet healed by an IDR (None: the picture is whole).
    // Frames since the first unrecoverable loss of the current break, and since the latest.
    let mut broken_for: Option<u64> = None;
    let mut since_loss = 0u64;
    // When the latest frame was declared lost (monotonic ns).
    let mut lost_at = 0u64;
    // The frame last seen stalled (see `--pli-after-ms`), and whether it still wants a PLI.
    let (mut stalled_ts, mut suspect) = (None::<u64>, false);
    let mut sender: Option<SocketAddr> = None;
    let (mut last_rr, mut last_pli, mut last_probe, mut last_print) =
        (0u64, 0u64, 0u64, monotonic_ns());
    let mut probe_n = 0u32;
    let mut bye_at: Option<u64> = None;
    let start = monotonic_ns();
    // Wall clock = monotonic + this (for latency against the sender's wall clock).
    let mono_to_real = realtime().0 as i64 - monotonic_ns() as i64;
    let mut buf = vec![0u8; 65536];
    let mut rtcp_out = Vec::with_capacity(256);
    let proto = if cli.tcp { "tcp (RFC 4571)" } else { "udp" };
    eprintln!("vr-receive: listening on {proto} {rtp_addr} (RTCP {rtcp_addr}, FEC {fec_addr})");
    loop {
        let now = monotonic_ns();
        // After a BYE, one reorder window for media still on its way (RTCP can overtake
        // the last frame's packets on a jittery path).
        if vr_stream::rt::stop_signal() != 0
            || bye_at.is_some_and(|t| now >= t + cli.reorder_ms * 1_000_000)
            || cli
                .duration
                .is_some_and(|d| now - start >= (d * 1e9) as u64)
        {
            break;
        }
        let c = rx.counts();
        if cli
            .frames
            .is_some_and(|n| c.complete + c.recovered + c.lost >= n)
        {
            break;
        }
        let mut fds = vec![
            PollFd::new(rtp.as_fd(), PollFlags::POLLIN),
            PollFd::new(rtcp_sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(fec_sock.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(l) = &tcp_listener {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        if let Some(c) = &tcp_conn {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        let _ = poll(&mut fds, PollTimeout::from(5u8));
        drop(fds);
        // RTP over TCP: a new connection replaces the old (the sender reconnected).
        if let Some(l) = &tcp_listener
            && let Ok((c, from)) = l.accept()
        {
            let _ = c.set_nonblocking(true);
            eprintln!("vr-receive: TCP connection from {from}");
            tcp_conn = Some(c);
            tcp_buf.clear();
        }
        if let Some(c) = tcp_conn.as_mut() {
            use std::io::Read;
            loop {
                match c.read(&mut buf) {
                    Ok(0) => {
                        eprintln!("vr-receive: TCP connection closed by the sender");
                        tcp_conn = None;
                        break;
                    }
                    Ok(n) => {
                        tcp_buf.extend_from_slice(&buf[..n]);
                        let t = monotonic_ns();
                        let used =
                            vr_stream::net::rfc4571_packets(&tcp_buf, |p| rx.on_packet(p, t));
                        tcp_buf.drain(..used);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("vr-receive: TCP connection: {e}");
                        tcp_conn = None;
                        break;
                    }
                }
            }
        }
        // RTP.
        while let Ok(n) = rtp.recv(&mut buf) {
            rx.on_packet(&buf[..n], monotonic_ns());
        }
        while let Ok(n) = fec_sock.recv(&mut buf) {
            rx.on_fec(&buf[..n], monotonic_ns());
        }
        // Media is sent before its FEC: what arrived while the FEC socket was read belongs
        // in front of it.
        while let Ok(n) = rtp.recv(&mut buf) {
            rx.on_packet(&buf[..n], monotonic_ns());
        }
        // RTCP and clock answers.
        while let Ok((n, from)) = rtcp_sock.recv_from(&mut buf) {
            let arrival_ntp = realtime().to_ntp();
            if let Some((t1, _, t2, t3)) = clock::parse_answer(&buf[..n]) {
                if let Some(s) = clock::sample(t1, t2, t3, arrival_ntp) {
                    sum.offset.add(s);
                }
                continue;
            }
            let Ok(packets) = rtcp::parse_compound(&buf[..n]) else {
                continue;
            };
            for p in packets {
                match p {
                    Rtcp::SenderReport { ssrc, info, .. }
                        if rx.ssrc().is_none_or(|s| s == ssrc) =>
                    {
                        rx.reception().on_sender_report(info.ntp, arrival_ntp);
                        sender = Some(from);
                    }
                    Rtcp::App {
                        ssrc, name, data, ..
                    } if name == vr_stream::detect::wire::APP_NAME
                        && rx.ssrc().is_none_or(|s| s == ssrc) =>
                    {
                        if let Ok(w) = vr_stream::detect::wire::decode(&data) {
                            sum.det_msgs += 1;
                            sum.det_total += w.detections.len() as u64;
                            if let Some(&(_, cap)) =
                                sum.recent.iter().find(|(ts, _)| *ts == w.rtp_ts)
                            {
                                sum.det_matched += 1;
                                let offset = sum.offset.best().map_or(0, |s| s.offset_ns) as i128;
                                let age_us =
                                    ((realtime().0 as i128 - (cap - offset)) / 1000).max(1) as u64;
                                let _ = sum.det_age.record(age_us.min(60_000_000));
                            }
                            sum.det_last = Some(w);
                        }
                    }
                    Rtcp::Bye { ssrcs } if rx.ssrc().is_some_and(|s| ssrcs.contains(&s)) => {
                        bye_at.get_or_insert(monotonic_ns());
                    }
                    _ => {}
                }
            }
        }
        // Frames.
        let now = monotonic_ns();
        while let Some(f) = rx.poll(now) {
            if f.verdict == Verdict::Lost {
                *broken_for.get_or_insert(0) += 1;
                since_loss = 0;
                lost_at = now;
                continue;
            }
            if let Some(n) = broken_for {
                since_loss += 1;
                if f.keyframe {
                    sum.broken.push(n + 1);
                    sum.recovery.push(since_loss);
                    broken_for = None;
                } else {
                    broken_for = Some(n + 1);
                    if !cli.keep_broken {
                        sum.held_back += 1;
                        continue;
                    }
                }
            }
            sum.bytes += f.au.len() as u64;
            sum.keyframes += f.keyframe as u64;
            if let Some(ntp) = f.capture_ntp {
                if sum.recent.len() == 256 {
                    sum.recent.pop_front();
                }
                sum.recent
                    .push_back((f.ts as u32, vr_stream::rtp::unix_ns_from_ntp(ntp)));
                let offset = sum.offset.best().map_or(0, |s| s.offset_ns);
                let capture_local = vr_stream::rtp::unix_ns_from_ntp(ntp) - offset as i128;
                let done = f.last_arrival_ns as i128 + mono_to_real as i128;
                let lat_us = ((done - capture_local) / 1000).max(1) as u64;
                let _ = sum.hist.record(lat_us.min(60_000_000));
                let _ = sum.window.record(lat_us.min(60_000_000));
            }
            if let Some(o) = out.as_mut() {
                o.write_all(&f.au)
                    .map_err(|e| format!("writing the stream: {e}"))?;
                let _ = o.flush();
            }
        }
        // A frame that stalled without its tail: ask for the IDR now (once per frame).
        if cli.pli_after_ms > 0
            && let Some(ts) = rx.stalled(now, cli.pli_after_ms * 1_000_000)
            && stalled_ts != Some(ts)
        {
            stalled_ts = Some(ts);
            suspect = true;
            lost_at = now;
        }
        // RTCP out.
        if !cli.no_rtcp
            && let (Some(to), Some(ssrc)) = (sender, rx.ssrc())
        {
            let me = ssrc ^ 0x5a5a_5a5a;
            // Repeat the PLI when its IDR is overdue; and at once when a frame is lost (or
            // stalled) one round trip after the last PLI went out: that frame left the
            // sender after the PLI arrived, so it is the IDR or a frame after it, and
            // nothing else is coming to heal the picture. (Losses within the round trip are
            // of frames encoded before the PLI arrived; the IDR is on its way.)
            let rtt = sum.offset.best().map_or(DEFAULT_RTT_NS, |b| b.rtt_ns);
            let pli_due = (rx.wants_keyframe() || std::mem::take(&mut suspect))
                && (now - last_pli >= PLI_INTERVAL_NS || lost_at >= last_pli + rtt);
            if now - last_rr >= RR_INTERVAL_NS || pli_due {
                rtcp_out.clear();
                let block = rx.reception().report_block(ssrc, realtime().to_ntp());
                rtcp::write_rr(&mut rtcp_out, me, &[block]);
                if pli_due {
                    rtcp::write_pli(&mut rtcp_out, me, ssrc);
                    last_pli = now;
                    sum.plis += 1;
                }
                let _ = rtcp_sock.send_to(&rtcp_out, to);
                last_rr = now;
            }
            if now - last_probe >= PROBE_INTERVAL_NS {
                probe_n += 1;
                let _ = rtcp_sock.send_to(&clock::request(realtime().to_ntp(), probe_n), to);
                last_probe = now;
            }
        }
        if cli.interval > 0 && now - last_print >= cli.interval * 1_000_000_000 {
            last_print = now;
            eprintln!("vr-receive: {}", line(&rx, &sum.window, &sum));
            sum.window.reset();
        }
    }
    // Whatever is still pending leaves now.
    while let Some(f) = rx.drain() {
        if f.verdict != Verdict::Lost
            && let Some(o) = out.as_mut()
        {
            let _ = o.write_all(&f.au);
        }
    }
    if let Some(mut o) = out {
        o.flush().map_err(|e| format!("writing the stream: {e}"))?;
    }
    let c = rx.counts();
    eprintln!("vr-receive: total: {}", line(&rx, &sum.hist, &sum));
    if cli.json {
        let off = sum.offset.best();
        let doc = serde_json::json!({
            "frames": { "complete": c.complete, "recovered": c.recovered, "lost": c.lost },
            "packets": { "late": c.late_packets, "duplicate": c.duplicate_packets, "ignored": c.ignored_packets, "lost": rx.reception().lost(),
                "fec_received": c.fec_packets, "fec_rebuilt": c.fec_rebuilt },
            "keyframes": sum.keyframes,
            "bytes": sum.bytes,
            "pli_sent": sum.plis,
            "held_back": sum.held_back,
            "recovery_frames": spread(&sum.recovery),
            "broken_frames": spread(&sum.broken),
            "latency_ms": if sum.hist.is_empty() { serde_json::Value::Null } else { serde_json::json!({
                "samples": sum.hist.len(), "p50": pct(&sum.hist, 0.5), "p95": pct(&sum.hist, 0.95), "p99": pct(&sum.hist, 0.99), "max": sum.hist.max() as f64 / 1000.0 }) },
            "detections": if sum.det_msgs == 0 { serde_json::Value::Null } else { serde_json::json!({
                "messages": sum.det_msgs, "matched_frames": sum.det_matched, "detections": sum.det_total,
                "age_ms": if sum.det_age.is_empty() { serde_json::Value::Null } else { serde_json::json!({ "p50": pct(&sum.det_age, 0.5), "p99": pct(&sum.det_age, 0.99), "max": sum.det_age.max() as f64 / 1000.0 }) },
                "last": sum.det_last.as_ref().map(|w| serde_json::json!({ "rtp_ts": w.rtp_ts, "frame": [w.frame.0, w.frame.1],
                    "items": w.detections.iter().map(|d| serde_json::json!({ "class": d.class, "score": d.score, "box": d.bbox })).collect::<Vec<_>>() })) }) },
            "clock": off.map(|s| serde_json::json!({ "offset_ms": s.offset_ns as f64 / 1e6, "rtt_ms": s.rtt_ns as f64 / 1e6, "samples": sum.offset.len() })),
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
    }
    Ok(())
}

fn line(rx: &Receiver, h: &Histogram<u64>, sum: &Summary) -> String {
    let c = rx.counts();
    let lat = if h.is_empty() {
        "latency n/a".to_string()
    } else {
        format!(
            "capture->complete p50 {:.2} p95 {:.2} p99 {:.2} max {:.2} ms",
            pct(h, 0.5),
            pct(h, 0.95),
            pct(h, 0.99),
            h.max() as f64 / 1000.0
        )
    };
    let clock = match sum.offset.best() {
        Some(s) => format!(
            "clock offset {:+.2} ms (rtt {:.2} ms)",
            s.offset_ns as f64 / 1e6,
            s.rtt_ns as f64 / 1e6
        ),
        None => "clock offset unknown (same clock assumed)".into(),
    };
    format!(
        "frames complete {} recovered {} lost {} held back {}; late packets {}; PLI {}; {lat}; {clock}",
        c.complete, c.recovered, c.lost, sum.held_back, c.late_packets, sum.plis
    )
}
