//! `vr-relay`: a userspace network impairment relay for tests, standing in for `tc netem`
//! (absent from this project's test kernels). It sits between vr-stream and vr-receive —
//! typically in its own network namespace — on the three ports of a stream: RTP (`--port`),
//! RTCP (+1) and FEC (+2). vr-stream sends to the relay's `--listen` address; the relay
//! forwards to `--to`; what the receiver sends back (RTCP, clock probes) returns to
//! whoever last sent on that port.
//!
//! RTP and FEC towards the receiver go through one [`vr_testkit::impair`] model (same link):
//! Gilbert–Elliott loss, delay ± jitter, reordering, deterministic with `--seed`. RTCP, in
//! both directions, gets the base delay only (no loss, no jitter), so the clock-offset
//! probes see a symmetric path.
//!
//! At exit (SIGINT/SIGTERM, or `--duration`) prints packet counts and the delay it
//! actually added to the media packets (p50/p99/max); `--json` prints them as JSON on stdout.
//! Exit status 0, or 2 on a bad argument or socket error.
#![forbid(unsafe_code)]

use clap::Parser;
use hdrhistogram::Histogram;
use nix::poll::{PollFd, PollFlags};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;
use vr_sys::time::monotonic_ns;
use vr_testkit::impair::{Fate, ImpairParams, Impairment};

/// Relay a vr-stream stream (RTP, RTCP, FEC ports) with loss, delay, jitter and reordering.
#[derive(Parser, Debug)]
#[command(name = "vr-relay", version, about)]
struct Cli {
    /// Address the sender sends to (the relay's address on the sender's side).
    #[arg(long)]
    listen: IpAddr,
    /// First port (RTP); RTCP is port + 1, FEC port + 2, on both sides.
    #[arg(long, default_value_t = 5004)]
    port: u16,
    /// The receiver's address.
    #[arg(long)]
    to: IpAddr,
    /// Long-run loss of RTP and FEC packets, per cent (0 <= loss < 100).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Mean loss burst length, packets (1 = independent losses).
    #[arg(long, default_value_t = 1.0)]
    burst: f64,
    /// One-way delay added, ms (RTP, FEC and RTCP).
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Uniform jitter around the delay of RTP and FEC, ± ms (at most the delay).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Share of RTP/FEC packets held back to arrive out of order, per cent.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// How long a reordered packet is held back beyond its turn, ms.
    #[arg(long, default_value_t = 2.0)]
    reorder_gap_ms: f64,
    /// Random seed: equal seeds give equal loss/delay decisions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// A datagram waiting for its release time.
struct Held {
    at_ns: u64,
    order: u64,
    /// Index of the socket to send it from (0..3 towards the receiver, 3..6 back).
    out: usize,
    to: Option<SocketAddr>,
    data: Vec<u8>,
    /// Arrival time of a media packet (for the added-delay statistics).
    media_arrival_ns: Option<u64>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.at_ns, self.order) == (o.at_ns, o.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at_ns, self.order).cmp(&(o.at_ns, o.order))
    }
}

fn ms(v: f64, name: &str) -> Result<Duration, String> {
    if !(0.0..=10_000.0).contains(&v) {
        return Err(format!("--{name} {v}: allowed 0..=10000 ms"));
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

fn main() {
    let cli: Cli = vr_sys::cli::parse_or_exit("vr-relay");
    if let Err(e) = run(&cli) {
        eprintln!("vr-relay: error: {e}");
        std::process::exit(2);
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    if cli.port == 0 || cli.port > 65533 {
        return Err(format!(
            "--port {}: allowed 1..=65533 (RTCP and FEC use the next two)",
            cli.port
        ));
    }
    let params = ImpairParams {
        loss_percent: cli.loss,
        burst: cli.burst,
        delay: ms(cli.delay_ms, "delay-ms")?,
        jitter: ms(cli.jitter_ms, "jitter-ms")?,
        reorder_percent: cli.reorder,
        reorder_gap: ms(cli.reorder_gap_ms, "reorder-gap-ms")?,
        seed: cli.seed,
    };
    let mut link = Impairment::new(params).map_err(|e| e.to_string())?;
    let base_delay = params.delay.as_nanos() as u64;
    // 0..3: sender side (bound on --listen); 3..6: receiver side (connected to --to).
    let mut socks = vec![];
    for k in 0..3u16 {
        let a = SocketAddr::new(cli.listen, cli.port + k);
        let s = UdpSocket::bind(a)
            .map_err(|e| format!("--listen {}: cannot bind udp {a}: {e}", cli.listen))?;
        socks.push(s);
    }
    for k in 0..3u16 {
        let any: IpAddr = if cli.to.is_ipv4() {
            "0.0.0.0".parse().unwrap()
        } else {
            "::".parse().unwrap()
        };
        let s = UdpSocket::bind((any, 0)).map_err(|e| e.to_string())?;
        let to = SocketAddr::new(cli.to, cli.port + k);
        s.connect(to)
            .map_err(|e| format!("--to {}: cannot reach {to}: {e}", cli.to))?;
        socks.push(s);
    }
    for s in &socks {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let _ = socket2::SockRef::from(s).set_recv_buffer_size(4 << 20);
        let _ = socket2::SockRef::from(s).set_send_buffer_size(4 << 20);
    }
    vr_sys::signal::install_stop_signals();
    eprintln!(
        "vr-relay: {}:{}-{} -> {}: loss {}% (burst {}), delay {} ms ± {} ms, reorder {}% (+{} ms), seed {}",
        cli.listen,
        cli.port,
        cli.port + 2,
        cli.to,
        cli.loss,
        cli.burst,
        cli.delay_ms,
        cli.jitter_ms,
        cli.reorder,
        cli.reorder_gap_ms,
        cli.seed
    );
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut order = 0u64;
    // Who last sent to each sender-side port (where the receiver's answers go back).
    let mut peers: [Option<SocketAddr>; 3] = [None; 3];
    let (mut media_in, mut media_dropped, mut reordered, mut rtcp_fwd, mut rtcp_back) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut added = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let start = monotonic_ns();
    let mut buf = vec![0u8; 65536];
    loop {
        let now = monotonic_ns();
        if vr_sys::signal::stop_signal() != 0
            || cli
                .duration
                .is_some_and(|d| now - start >= (d * 1e9) as u64)
        {
            break;
        }
        // Sleep until a datagram arrives or the next one is due (ns precision: ppoll).
        let wait_ns = held
            .peek()
            .map_or(5_000_000, |h| h.0.at_ns.saturating_sub(now).min(5_000_000));
        if wait_ns > 0 {
            let mut fds: Vec<PollFd> = socks
                .iter()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            let ts = nix::sys::time::TimeSpec::from_duration(Duration::from_nanos(wait_ns));
            let _ = nix::poll::ppoll(&mut fds, Some(ts), None);
        }
        for (i, s) in socks.iter().enumerate() {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let t = monotonic_ns();
                order += 1;
                let data = buf[..n].to_vec();
                if i < 3 {
                    peers[i] = Some(from);
                    if i == 1 {
                        rtcp_fwd += 1;
                        held.push(Reverse(Held {
                            at_ns: t + base_delay,
                            order,
                            out: 4,
                            to: None,
                            data,
                            media_arrival_ns: None,
                        }));
                        continue;
                    }
                    media_in += 1;
                    match link.on_packet(t) {
                        Fate::Drop => media_dropped += 1,
                        Fate::Deliver {
                            at_ns,
                            reordered: r,
                        } => {
                            reordered += r as u64;
                            held.push(Reverse(Held {
                                at_ns,
                                order,
                                out: i + 3,
                                to: None,
                                data,
                                media_arrival_ns: Some(t),
                            }));
                        }
                    }
                } else if let Some(peer) = peers[i - 3] {
                    rtcp_back += 1;
                    held.push(Reverse(Held {
                        at_ns: t + base_delay,
                        order,
                        out: i - 3,
                        to: Some(peer),
                        data,
                        media_arrival_ns: None,
                    }));
                }
            }
        }
        let now = monotonic_ns();
        while held.peek().is_some_and(|h| h.0.at_ns <= now) {
            let Reverse(h) = held.pop().expect("peeked");
            let s = &socks[h.out];
            let _ = match h.to {
                Some(to) => s.send_to(&h.data, to),
                None => s.send(&h.data),
            };
            if let Some(a) = h.media_arrival_ns {
                let _ = added.record(((monotonic_ns() - a) / 1000).max(1));
            }
        }
    }
    let q = |p: f64| added.value_at_quantile(p) as f64 / 1000.0;
    eprintln!(
        "vr-relay: media packets {media_in} dropped {media_dropped} reordered {reordered}; RTCP {rtcp_fwd} forward {rtcp_back} back; added delay p50 {:.2} p99 {:.2} max {:.2} ms",
        q(0.5),
        q(0.99),
        added.max() as f64 / 1000.0
    );
    if cli.json {
        let doc = serde_json::json!({
            "media_packets": media_in, "dropped": media_dropped, "reordered": reordered,
            "rtcp_forward": rtcp_fwd, "rtcp_back": rtcp_back,
            "added_delay_ms": if added.is_empty() { serde_json::Value::Null } else {
                serde_json::json!({ "p50": q(0.5), "p99": q(0.99), "max": added.max() as f64 / 1000.0 }) },
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
    }
    Ok(())
}
