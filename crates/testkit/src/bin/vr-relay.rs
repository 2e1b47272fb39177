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

/// What the relay counted, and the delay it added to the media packets (µs).
struct Counts {
    media_in: u64,
    media_dropped: u64,
    reordered: u64,
    rtcp_fwd: u64,
    rtcp_back: u64,
    added: Histogram<u64>,
}

impl Counts {
    fn new() -> Counts {
        Counts {
            media_in: 0,
            media_dropped: 0,
            reordered: 0,
            rtcp_fwd: 0,
            rtcp_back: 0,
            added: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        }
    }

    /// The summary line on stderr and, with `json`, the document on stdout.
    fn print(&self, json: bool) {
        let added = &self.added;
        let q = |p: f64| added.value_at_quantile(p) as f64 / 1000.0;
        eprintln!(
            "vr-relay: media packets {} dropped {} reordered {}; RTCP {} forward {} back; added delay p50 {:.2} p99 {:.2} max {:.2} ms",
            self.media_in,
            self.media_dropped,
            self.reordered,
            self.rtcp_fwd,
            self.rtcp_back,
            q(0.5),
            q(0.99),
            added.max() as f64 / 1000.0
        );
        if json {
            let doc = serde_json::json!({
                "media_packets": self.media_in, "dropped": self.media_dropped,
                "reordered": self.reordered,
                "rtcp_forward": self.rtcp_fwd, "rtcp_back": self.rtcp_back,
                "added_delay_ms": if added.is_empty() { serde_json::Value::Null } else {
                    serde_json::json!({ "p50": q(0.5), "p99": q(0.99), "max": added.max() as f64 / 1000.0 }) },
            });
            println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
        }
    }
}

/// The relay's sockets and the datagrams it holds back.
struct Relay {
    /// 0..3: sender side (bound on `--listen`, ports RTP, RTCP, FEC); 3..6: receiver side
    /// (connected to `--to`, same ports).
    socks: Vec<UdpSocket>,
    /// Datagrams waiting for their release time, earliest first.
    held: BinaryHeap<Reverse<Held>>,
    /// Arrival order, to keep equal release times in order.
    order: u64,
    /// Who last sent to each sender-side port (where the receiver's answers go back).
    peers: [Option<SocketAddr>; 3],
    /// The media link (RTP and FEC towards the receiver).
    link: Impairment,
    /// One-way delay of RTCP, ns.
    base_delay: u64,
    counts: Counts,
}

impl Relay {
    fn open(cli: &Cli, link: Impairment, base_delay: u64) -> Result<Relay, String> {
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
        Ok(Relay {
            socks,
            held: BinaryHeap::new(),
            order: 0,
            peers: [None; 3],
            link,
            base_delay,
            counts: Counts::new(),
        })
    }

    /// Sleeps until a datagram arrives or the next held one is due, at most 5 ms (ns
    /// precision: ppoll).
    fn wait(&self, now: u64) {
        let wait_ns = self
            .held
            .peek()
            .map_or(5_000_000, |h| h.0.at_ns.saturating_sub(now).min(5_000_000));
        if wait_ns > 0 {
            let mut fds: Vec<PollFd> = self
                .socks
                .iter()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            let ts = nix::sys::time::TimeSpec::from_duration(Duration::from_nanos(wait_ns));
            let _ = nix::poll::ppoll(&mut fds, Some(ts), None);
        }
    }

    /// Reads every socket dry and holds what arrived.
    fn receive(&mut self, buf: &mut [u8]) {
        for i in 0..self.socks.len() {
            while let Ok((n, from)) = self.socks[i].recv_from(buf) {
                let t = monotonic_ns();
                self.order += 1;
                self.route(i, from, buf[..n].to_vec(), t);
            }
        }
    }

    /// Where a datagram that arrived at socket `i` from `from` at `t` goes: RTCP forward
    /// and back after the base delay, RTP/FEC through the impaired link.
    fn route(&mut self, i: usize, from: SocketAddr, data: Vec<u8>, t: u64) {
        let hold = |at_ns, out, to, media_arrival_ns| {
            Reverse(Held {
                at_ns,
                order: self.order,
                out,
                to,
                data,
                media_arrival_ns,
            })
        };
        let c = &mut self.counts;
        if i >= 3 {
            if let Some(peer) = self.peers[i - 3] {
                c.rtcp_back += 1;
                self.held
                    .push(hold(t + self.base_delay, i - 3, Some(peer), None));
            }
            return;
        }
        self.peers[i] = Some(from);
        if i == 1 {
            c.rtcp_fwd += 1;
            self.held.push(hold(t + self.base_delay, 4, None, None));
            return;
        }
        c.media_in += 1;
        match self.link.on_packet(t) {
            Fate::Drop => c.media_dropped += 1,
            Fate::Deliver { at_ns, reordered } => {
                c.reordered += reordered as u64;
                self.held.push(hold(at_ns, i + 3, None, Some(t)));
            }
        }
    }

    /// Sends every held datagram that is due.
    fn release(&mut self) {
        let now = monotonic_ns();
        while self.held.peek().is_some_and(|h| h.0.at_ns <= now) {
            let Reverse(h) = self.held.pop().expect("peeked");
            let s = &self.socks[h.out];
            let _ = match h.to {
                Some(to) => s.send_to(&h.data, to),
                None => s.send(&h.data),
            };
            if let Some(a) = h.media_arrival_ns {
                let _ = self
                    .counts
                    .added
                    .record(((monotonic_ns() - a) / 1000).max(1));
            }
        }
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
    let link = Impairment::new(params).map_err(|e| e.to_string())?;
    let mut relay = Relay::open(cli, link, params.delay.as_nanos() as u64)?;
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
        relay.wait(now);
        relay.receive(&mut buf);
        relay.release();
    }
    relay.counts.print(cli.json);
    Ok(())
}
