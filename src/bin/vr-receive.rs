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
use vr_stream::receiver::{FrameOut, Receiver, ReceiverConfig, Verdict};
use vr_stream::rt::{MonotonicNs, monotonic, monotonic_ns, realtime};
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
    let (port, payload_type, ext_id) = stream_params(cli)?;
    let mut net = Sockets::open(cli, port)?;
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
    let mut sum = Summary::new();
    let mut heal = Healing::default();
    let mut peer = Peer::default();
    let mut feedback = Feedback::default();
    let mut last_print = monotonic_ns();
    let start = monotonic_ns();
    // Wall clock = monotonic + this (for latency against the sender's wall clock).
    let mono_to_real = realtime().0 as i64 - monotonic_ns() as i64;
    let proto = if cli.tcp { "tcp (RFC 4571)" } else { "udp" };
    let (rtp_addr, rtcp_addr, fec_addr) = net.addrs;
    eprintln!("vr-receive: listening on {proto} {rtp_addr} (RTCP {rtcp_addr}, FEC {fec_addr})");
    loop {
        let now = monotonic_ns();
        // After a BYE, one reorder window for media still on its way (RTCP can overtake
        // the last frame's packets on a jittery path).
        let c = rx.counts();
        if vr_stream::rt::stop_signal() != 0
            || peer
                .bye_at
                .is_some_and(|t| now >= t + cli.reorder_ms * 1_000_000)
            || cli
                .duration
                .is_some_and(|d| now - start >= (d * 1e9) as u64)
            || cli
                .frames
                .is_some_and(|n| c.complete + c.recovered + c.lost >= n)
        {
            break;
        }
        net.wait(PollTimeout::from(5u8));
        net.read_media(&mut rx);
        net.read_rtcp(&mut rx, &mut sum, &mut peer);
        // Frames.
        let now = monotonic_ns();
        while let Some(f) = rx.poll(MonotonicNs(now)) {
            if !heal.passes(&f, now, cli.keep_broken, &mut sum) {
                continue;
            }
            sum.on_frame(&f, mono_to_real);
            if let Some(o) = out.as_mut() {
                o.write_all(&f.au)
                    .map_err(|e| format!("writing the stream: {e}"))?;
                let _ = o.flush();
            }
        }
        // A frame that stalled without its tail: ask for the IDR now (once per frame).
        if cli.pli_after_ms > 0
            && let Some(ts) = rx.stalled(MonotonicNs(now), cli.pli_after_ms * 1_000_000)
            && feedback.stalled_ts != Some(ts)
        {
            feedback.stalled_ts = Some(ts);
            feedback.suspect = true;
            heal.lost_at = now;
        }
        if !cli.no_rtcp
            && let Some(to) = peer.sender
        {
            for d in feedback.due(now, &mut rx, &mut sum, heal.lost_at) {
                let _ = net.rtcp.send_to(&d, to);
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
    eprintln!("vr-receive: total: {}", line(&rx, &sum.hist, &sum));
    if cli.json {
        let doc = json_summary(&mut rx, &sum);
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
    }
    Ok(())
}

/// The RTP port, payload type and abs-capture-time extension id: from the options, else
/// from `--sdp`, else the defaults (5004, 96, 1).
///
/// Errors: the SDP cannot be read or parsed, a port without room for RTCP and FEC
/// (port + 1, + 2), `--json` with `-o -`.
fn stream_params(cli: &Cli) -> Result<(u16, u8, u8), String> {
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
    Ok((port, payload_type, ext_id))
}

/// The receiver's sockets: RTP (UDP, or a TCP listener and its connection with
/// `--tcp`), RTCP on port + 1 and FEC on port + 2, all non-blocking.
struct Sockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    fec: UdpSocket,
    tcp_listener: Option<std::net::TcpListener>,
    tcp_conn: Option<std::net::TcpStream>,
    /// Bytes of the TCP stream not yet framed into packets (RFC 4571).
    tcp_buf: Vec<u8>,
    /// One datagram or one TCP read.
    buf: Vec<u8>,
    /// The RTP, RTCP and FEC addresses, for messages.
    addrs: (SocketAddr, SocketAddr, SocketAddr),
}

impl Sockets {
    /// Binds the sockets of `port` on `--bind`. Errors name the port that cannot be bound.
    fn open(cli: &Cli, port: u16) -> Result<Sockets, String> {
        let rtp_addr = SocketAddr::new(cli.bind, port);
        let rtp = bind_udp("--port", rtp_addr)?;
        let rtcp_addr = SocketAddr::new(cli.bind, port + 1);
        let rtcp = bind_udp("RTCP port", rtcp_addr)?;
        let fec_addr = SocketAddr::new(cli.bind, port + 2);
        let fec = bind_udp("FEC port", fec_addr)?;
        for s in [&rtp, &rtcp, &fec] {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
        }
        let _ = socket2::SockRef::from(&rtp).set_recv_buffer_size(4 << 20);
        let tcp_listener = if cli.tcp {
            let l = std::net::TcpListener::bind(rtp_addr)
                .map_err(|e| format!("--port {port}: cannot listen on tcp {rtp_addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        } else {
            None
        };
        Ok(Sockets {
            rtp,
            rtcp,
            fec,
            tcp_listener,
            tcp_conn: None,
            tcp_buf: Vec::with_capacity(1 << 20),
            buf: vec![0u8; 65536],
            addrs: (rtp_addr, rtcp_addr, fec_addr),
        })
    }

    /// Waits until a socket is readable, at most `timeout`.
    fn wait(&self, timeout: PollTimeout) {
        let mut fds = vec![
            PollFd::new(self.rtp.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.rtcp.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.fec.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(l) = &self.tcp_listener {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        if let Some(c) = &self.tcp_conn {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        let _ = poll(&mut fds, timeout);
    }

    /// Hands every RTP and FEC packet waiting to `rx`, with its arrival time.
    fn read_media(&mut self, rx: &mut Receiver) {
        self.read_tcp(rx);
        let buf = &mut self.buf;
        while let Ok(n) = self.rtp.recv(buf) {
            rx.on_packet(&buf[..n], monotonic());
        }
        while let Ok(n) = self.fec.recv(buf) {
            rx.on_fec(&buf[..n], monotonic());
        }
        // Media is sent before its FEC: what arrived while the FEC socket was read belongs
        // in front of it.
        while let Ok(n) = self.rtp.recv(buf) {
            rx.on_packet(&buf[..n], monotonic());
        }
    }

    /// RTP over TCP: takes a new connection in place of the old (the sender reconnected),
    /// and hands the packets of what the connection has to `rx`.
    fn read_tcp(&mut self, rx: &mut Receiver) {
        if let Some(l) = &self.tcp_listener
            && let Ok((c, from)) = l.accept()
        {
            let _ = c.set_nonblocking(true);
            eprintln!("vr-receive: TCP connection from {from}");
            self.tcp_conn = Some(c);
            self.tcp_buf.clear();
        }
        let Some(c) = self.tcp_conn.as_mut() else {
            return;
        };
        use std::io::Read;
        loop {
            match c.read(&mut self.buf) {
                Ok(0) => {
                    eprintln!("vr-receive: TCP connection closed by the sender");
                    self.tcp_conn = None;
                    break;
                }
                Ok(n) => {
                    self.tcp_buf.extend_from_slice(&self.buf[..n]);
                    let t = monotonic();
                    let used =
                        vr_stream::net::rfc4571_packets(&self.tcp_buf, |p| rx.on_packet(p, t));
                    self.tcp_buf.drain(..used);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    eprintln!("vr-receive: TCP connection: {e}");
                    self.tcp_conn = None;
                    break;
                }
            }
        }
    }

    /// Reads the RTCP socket: clock answers go to the offset estimator; sender reports
    /// (of the stream's SSRC) to the reception statistics and say where the sender is;
    /// detection messages (RTCP APP) are counted and matched to the frames received; a
    /// BYE of the stream's SSRC starts the end.
    fn read_rtcp(&mut self, rx: &mut Receiver, sum: &mut Summary, peer: &mut Peer) {
        while let Ok((n, from)) = self.rtcp.recv_from(&mut self.buf) {
            let data = &self.buf[..n];
            let arrival_ntp = realtime().to_ntp();
            if let Some((t1, _, t2, t3)) = clock::parse_answer(data) {
                if let Some(s) = clock::sample(t1, t2, t3, arrival_ntp) {
                    sum.offset.add(s);
                }
                continue;
            }
            let Ok(packets) = rtcp::parse_compound(data) else {
                continue;
            };
            // Before the first RTP packet any SSRC is the stream's.
            let stream = rx.ssrc();
            let ours = |ssrc: u32| stream.is_none_or(|s| s == ssrc);
            for p in packets {
                match p {
                    Rtcp::SenderReport { ssrc, info, .. } if ours(ssrc) => {
                        rx.reception().on_sender_report(info.ntp, arrival_ntp);
                        peer.sender = Some(from);
                    }
                    Rtcp::App {
                        ssrc, name, data, ..
                    } if name == vr_stream::detect::wire::APP_NAME && ours(ssrc) => {
                        if let Ok(w) = vr_stream::detect::wire::decode(&data) {
                            sum.on_detections(w);
                        }
                    }
                    Rtcp::Bye { ssrcs } if stream.is_some_and(|s| ssrcs.contains(&s)) => {
                        peer.bye_at.get_or_insert(monotonic_ns());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// What the RTCP socket told about the sender.
#[derive(Default)]
struct Peer {
    /// Where its sender reports come from: where our RTCP goes.
    sender: Option<SocketAddr>,
    /// When its BYE came (monotonic ns).
    bye_at: Option<u64>,
}

/// The picture's state after losses: frames after an unrecoverable loss reference a
/// picture the decoder does not have, until an IDR heals it.
#[derive(Default)]
struct Healing {
    /// Frames since the first loss not yet healed by an IDR (None: the picture is whole).
    broken_for: Option<u64>,
    /// Frames since the latest unrecoverable loss of the current break.
    since_loss: u64,
    /// When the latest frame was declared lost (or stalled), monotonic ns.
    lost_at: u64,
}

impl Healing {
    /// Whether frame `f` (out of the receiver at `now`) goes to the output: not a lost
    /// one, and not one of a broken picture unless `keep_broken` (those held back are
    /// counted in `sum`, as is each healed break).
    fn passes(&mut self, f: &FrameOut, now: u64, keep_broken: bool, sum: &mut Summary) -> bool {
        if f.verdict == Verdict::Lost {
            *self.broken_for.get_or_insert(0) += 1;
            self.since_loss = 0;
            self.lost_at = now;
            return false;
        }
        let Some(n) = self.broken_for else {
            return true;
        };
        self.since_loss += 1;
        if f.keyframe {
            sum.broken.push(n + 1);
            sum.recovery.push(self.since_loss);
            self.broken_for = None;
            return true;
        }
        self.broken_for = Some(n + 1);
        if !keep_broken {
            sum.held_back += 1;
            return false;
        }
        true
    }
}

/// The receiver's RTCP: receiver reports every [`RR_INTERVAL_NS`], PLIs, clock probes.
#[derive(Default)]
struct Feedback {
    last_rr: u64,
    last_pli: u64,
    last_probe: u64,
    probe_n: u32,
    /// The frame last seen stalled (see `--pli-after-ms`).
    stalled_ts: Option<u64>,
    /// A stalled frame still wants a PLI.
    suspect: bool,
}

impl Feedback {
    /// The datagrams due at `now` for the sender, about the stream's SSRC (none before the
    /// first RTP packet): a receiver report (with a PLI when one is due) and a clock probe.
    /// `lost_at`: when the latest frame was lost or stalled.
    fn due(
        &mut self,
        now: u64,
        rx: &mut Receiver,
        sum: &mut Summary,
        lost_at: u64,
    ) -> Vec<Vec<u8>> {
        let mut out = vec![];
        let Some(ssrc) = rx.ssrc() else {
            return out;
        };
        let me = ssrc ^ 0x5a5a_5a5a;
        // Repeat the PLI when its IDR is overdue; and at once when a frame is lost (or
        // stalled) one round trip after the last PLI went out: that frame left the
        // sender after the PLI arrived, so it is the IDR or a frame after it, and
        // nothing else is coming to heal the picture. (Losses within the round trip are
        // of frames encoded before the PLI arrived; the IDR is on its way.)
        let rtt = sum.offset.best().map_or(DEFAULT_RTT_NS, |b| b.rtt_ns);
        let pli_due = (rx.wants_keyframe() || std::mem::take(&mut self.suspect))
            && (now - self.last_pli >= PLI_INTERVAL_NS || lost_at >= self.last_pli + rtt);
        if now - self.last_rr >= RR_INTERVAL_NS || pli_due {
            let mut rr = Vec::with_capacity(256);
            let block = rx.reception().report_block(ssrc, realtime().to_ntp());
            rtcp::write_rr(&mut rr, me, &[block]);
            if pli_due {
                rtcp::write_pli(&mut rr, me, ssrc);
                self.last_pli = now;
                sum.plis += 1;
            }
            out.push(rr);
            self.last_rr = now;
        }
        if now - self.last_probe >= PROBE_INTERVAL_NS {
            self.probe_n += 1;
            out.push(clock::request(realtime().to_ntp(), self.probe_n).to_vec());
            self.last_probe = now;
        }
        out
    }
}

impl Summary {
    fn new() -> Summary {
        let new_hist =
            || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
        Summary {
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
        }
    }

    /// Counts a frame that goes out, and its capture → complete latency when it carries
    /// abs-capture-time (`mono_to_real`: wall clock − monotonic clock, ns).
    fn on_frame(&mut self, f: &FrameOut, mono_to_real: i64) {
        self.bytes += f.au.len() as u64;
        self.keyframes += f.keyframe as u64;
        let Some(ntp) = f.capture_ntp else {
            return;
        };
        if self.recent.len() == 256 {
            self.recent.pop_front();
        }
        let capture = vr_stream::rtp::unix_ns_from_ntp(ntp);
        self.recent.push_back((f.ts as u32, capture));
        let offset = self.offset.best().map_or(0, |s| s.offset_ns);
        let capture_local = capture - offset as i128;
        let done = f.last_arrival.0 as i128 + mono_to_real as i128;
        let lat_us = ((done - capture_local) / 1000).max(1) as u64;
        let _ = self.hist.record(lat_us.min(60_000_000));
        let _ = self.window.record(lat_us.min(60_000_000));
    }

    /// Counts a detection message, and its age when its frame was received.
    fn on_detections(&mut self, w: vr_stream::detect::wire::WireDetections) {
        self.det_msgs += 1;
        self.det_total += w.detections.len() as u64;
        if let Some(&(_, cap)) = self.recent.iter().find(|(ts, _)| *ts == w.rtp_ts) {
            self.det_matched += 1;
            let offset = self.offset.best().map_or(0, |s| s.offset_ns) as i128;
            let age_us = ((realtime().0 as i128 - (cap - offset)) / 1000).max(1) as u64;
            let _ = self.det_age.record(age_us.min(60_000_000));
        }
        self.det_last = Some(w);
    }
}

/// The `--json` document of a finished run.
fn json_summary(rx: &mut Receiver, sum: &Summary) -> serde_json::Value {
    let c = rx.counts();
    let off = sum.offset.best();
    serde_json::json!({
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
    })
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
