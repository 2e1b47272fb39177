//! Packets per second and CPU per packet on 127.0.0.1:
//!
//! - sender: the same 14-packet frames (a 720p60 8 Mbit/s P frame is ~12–17 packets of
//!   1200 B) sent with `UdpSender` in sendmmsg batches of 64 (what the network stage does)
//!   against the baseline of one `send(2)` per packet (`std::net::UdpSocket::send`),
//!   measured in the same run. Per frame: time of the send call(s), p50/p99/max; overall:
//!   packets/s while sending back to back and CPU ns per packet (the sending thread's
//!   CLOCK_THREAD_CPUTIME_ID).
//! - receiver: vr-receive's path — `recv(2)` per packet into `Receiver::on_packet` and
//!   `poll` — on the packets of real frames, its thread CPU per packet, packets/s; and the
//!   state machine alone (no socket) per packet.
//!
//! Run: `cargo bench --bench udp_io`. Under `cargo test` it runs a few hundred frames.

use hdrhistogram::Histogram;
use std::net::UdpSocket;
use std::time::Instant;
use vr_stream::net::UdpSender;
use vr_stream::receiver::{Receiver, ReceiverConfig};
use vr_stream::rt::MonotonicNs;
use vr_stream::rtp::{PacketBuf, Packetizer, RtpParams};

fn thread_cpu_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn frames(n: usize) -> Vec<PacketBuf> {
    let mut pk = Packetizer::new(
        RtpParams {
            ssrc: 5,
            payload_type: 96,
            payload_size: 1200,
            capture_time_ext_id: Some(1),
        },
        0,
    );
    (0..n)
        .map(|i| {
            let mut au = vec![0, 0, 0, 1, if i == 0 { 0x65 } else { 0x41 }];
            au.extend((0..16_500).map(|k| ((k * 7 + i) % 251 + 1) as u8));
            let mut b = PacketBuf::default();
            pk.packetize(&au, (i * 1500) as u32, Some(1 << 32), &mut b)
                .unwrap();
            b
        })
        .collect()
}

/// Drains `s` until `stop` packets or 2 s of silence; returns packets seen.
fn drain(s: UdpSocket, stop: u64) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut b = [0u8; 2048];
        let mut n = 0;
        while n < stop && s.recv(&mut b).is_ok() {
            n += 1;
        }
        n
    })
}

struct Result {
    name: &'static str,
    per_frame_us: (f64, f64, f64),
    pps: f64,
    cpu_ns_per_pkt: f64,
    delivered: u64,
    sent: u64,
}

fn send_run(name: &'static str, fr: &[PacketBuf], batch: Option<usize>) -> Result {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = socket2::SockRef::from(&rx).set_recv_buffer_size(16 << 20);
    let dest = rx.local_addr().unwrap();
    let total: u64 = fr.iter().map(|f| f.len() as u64).sum();
    let h = drain(rx, total);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
    let mut sent = 0u64;
    let (cpu0, t0) = (thread_cpu_ns(), Instant::now());
    match batch {
        Some(b) => {
            let mut tx = UdpSender::new(dest, 0, b).unwrap();
            for f in fr {
                let s = Instant::now();
                sent += tx.send(f).packets;
                hist.saturating_record(s.elapsed().as_nanos() as u64);
            }
        }
        None => {
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let _ = socket2::SockRef::from(&tx).set_send_buffer_size(4 << 20);
            tx.connect(dest).unwrap();
            for f in fr {
                let s = Instant::now();
                for p in f.iter() {
                    sent += tx.send(p).is_ok() as u64;
                }
                hist.saturating_record(s.elapsed().as_nanos() as u64);
            }
        }
    }
    let (cpu, wall) = (thread_cpu_ns() - cpu0, t0.elapsed());
    let delivered = h.join().unwrap();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Result {
        name,
        per_frame_us: (us(0.5), us(0.99), hist.max() as f64 / 1000.0),
        pps: sent as f64 / wall.as_secs_f64(),
        cpu_ns_per_pkt: cpu as f64 / sent.max(1) as f64,
        delivered,
        sent,
    }
}

fn main() {
    let quick =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let n = if quick { 300 } else { 6000 };
    let fr = frames(n);
    let pkts: usize = fr.iter().map(|f| f.len()).sum();
    println!(
        "udp_io: {n} frames of {} packets ({pkts} packets, 1200 B payloads), 127.0.0.1",
        fr[1].len()
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>12} {:>10} {:>10}",
        "sender (per frame, µs)", "p50", "p99", "max", "packets/s", "CPU ns/pkt", "delivered"
    );
    // Alternate the two, twice, so neither always runs on a cold cache.
    let mut rows = vec![];
    for _ in 0..2 {
        rows.push(send_run("one send(2) per packet (baseline)", &fr, None));
        rows.push(send_run("sendmmsg, batch 64 (UdpSender)", &fr, Some(64)));
    }
    for r in &rows {
        println!(
            "{:<34} {:>9.1} {:>9.1} {:>9.1} {:>12.0} {:>10.0} {:>5}/{:<5}",
            r.name,
            r.per_frame_us.0,
            r.per_frame_us.1,
            r.per_frame_us.2,
            r.pps,
            r.cpu_ns_per_pkt,
            r.delivered,
            r.sent
        );
    }

    // Receiver: the packets of the frames through a socket into the state machine.
    let cfg = ReceiverConfig {
        payload_type: 96,
        capture_time_ext_id: 1,
        reorder_window_ns: 20_000_000,
        fec_payload_type: 127,
    };
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = socket2::SockRef::from(&rx).set_recv_buffer_size(64 << 20);
    let dest = rx.local_addr().unwrap();
    let mut tx = UdpSender::new(dest, 0, 64).unwrap();
    // Four frames at a time into the socket (loopback delivers them during sendmmsg; the
    // default receive buffer holds that much), then the receive side drains them, timed.
    let mut queued = 0;
    let mut r = Receiver::new(cfg);
    let mut b = vec![0u8; 2048];
    rx.set_nonblocking(true).unwrap();
    let (mut got, mut out, mut cpu, mut wall) = (0u64, 0u64, 0u64, std::time::Duration::ZERO);
    for chunk in fr.chunks(4) {
        for f in chunk {
            queued += tx.send(f).packets;
        }
        let (cpu0, t0) = (thread_cpu_ns(), Instant::now());
        while let Ok(len) = rx.recv(&mut b) {
            got += 1;
            r.on_packet(&b[..len], MonotonicNs(got * 1000));
            while r.poll(MonotonicNs(got * 1000)).is_some() {
                out += 1;
            }
        }
        cpu += thread_cpu_ns() - cpu0;
        wall += t0.elapsed();
    }
    println!(
        "receiver (recv + Receiver): {got} of {queued} packets, {out} frames out: {:.0} packets/s, {:.0} CPU ns/pkt",
        got as f64 / wall.as_secs_f64(),
        cpu as f64 / got.max(1) as f64
    );
    // The state machine alone, per packet.
    let all: Vec<Vec<u8>> = fr
        .iter()
        .flat_map(|f| f.iter().map(|p| p.to_vec()).collect::<Vec<_>>())
        .collect();
    let mut r = Receiver::new(cfg);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
    let t0 = Instant::now();
    for (i, p) in all.iter().enumerate() {
        let s = Instant::now();
        r.on_packet(p, MonotonicNs(i as u64 * 1000));
        while r.poll(MonotonicNs(i as u64 * 1000)).is_some() {}
        hist.saturating_record(s.elapsed().as_nanos() as u64);
    }
    println!(
        "Receiver::on_packet + poll alone: p50 {} ns, p99 {} ns, max {:.1} µs per packet; {:.0} packets/s",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max() as f64 / 1000.0,
        all.len() as f64 / t0.elapsed().as_secs_f64()
    );
}
