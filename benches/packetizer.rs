//! Packetizer throughput (criterion): a real x264 access unit of the 1280x720 pattern
//! (an IDR and a P frame) packetized into a reused caller-owned buffer, against a plain
//! `memcpy` of the same bytes as the baseline measured in the same run.
//!
//! Run: `cargo bench --bench packetizer`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vr_stream::rtp::{PacketBuf, Packetizer, RtpParams};

mod common;
use common::access_units;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("packetize_720p");
    let mut pk = Packetizer::new(
        RtpParams {
            ssrc: 1,
            payload_type: 96,
            payload_size: 1200,
            capture_time_ext_id: Some(1),
        },
        0,
    );
    let mut pkts = PacketBuf::with_capacity(1 << 20);
    let mut copy = Vec::with_capacity(1 << 20);
    for (name, au) in access_units() {
        g.throughput(Throughput::Bytes(au.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("rtp_h264", format!("{name}_{}B", au.len())),
            &au,
            |b, au| {
                b.iter(|| {
                    pk.packetize(black_box(au), 90_000, Some(1), &mut pkts)
                        .unwrap()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("memcpy_baseline", format!("{name}_{}B", au.len())),
            &au,
            |b, au| {
                b.iter(|| {
                    copy.clear();
                    copy.extend_from_slice(black_box(au));
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
