//! FEC cost per frame (criterion): Reed–Solomon encode of the recovery packets of a real
//! x264 720p60 8 Mbit/s access unit (an IDR and a P frame of the 1280x720 pattern) at the
//! default 20% overhead, and the receiver's rebuild of as many lost packets as there are
//! recovery packets; the baseline measured in the same run is packetizing the same access
//! unit (the work the sender does for it anyway).
//!
//! Run: `cargo bench --bench fec`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vr_stream::fec::{self, FecEncoder};
use vr_stream::rtp::{PacketBuf, Packetizer, RtpParams};

mod common;
use common::access_units;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fec_720p_20pct");
    let params = RtpParams {
        ssrc: 1,
        payload_type: 96,
        payload_size: 1200,
        capture_time_ext_id: Some(1),
    };
    for (name, au) in access_units() {
        let mut pk = Packetizer::new(params, 0);
        let mut media = PacketBuf::with_capacity(1 << 20);
        pk.packetize(&au, 90_000, Some(1), &mut media).unwrap();
        let k = media.len();
        let m = fec::recovery_count(k, 20);
        let id = format!("{name}_{}B_{k}+{m}pkts", au.len());
        g.throughput(Throughput::Bytes(media.bytes() as u64));
        let mut fec_out = PacketBuf::with_capacity(1 << 20);
        let mut enc = FecEncoder::new(0);
        g.bench_with_input(BenchmarkId::new("encode", &id), &media, |b, media| {
            b.iter(|| {
                fec_out.clear();
                enc.protect(black_box(media), 20, 127, &mut fec_out)
                    .unwrap()
            })
        });
        fec_out.clear();
        enc.protect(&media, 20, 127, &mut fec_out).unwrap();
        let fecs: Vec<fec::FecPacket> = fec_out
            .iter()
            .map(|p| fec::parse_fec(p, 127).unwrap())
            .collect();
        // Lose the first m media packets: the worst case the code still repairs.
        let have: Vec<(usize, &[u8])> = (m..k).map(|i| (i, media.get(i))).collect();
        g.bench_with_input(BenchmarkId::new("rebuild_m_lost", &id), &have, |b, have| {
            b.iter(|| fec::recover(black_box(have), &fecs).unwrap())
        });
        let mut pk2 = Packetizer::new(params, 0);
        let mut pkts = PacketBuf::with_capacity(1 << 20);
        g.bench_with_input(BenchmarkId::new("packetize_baseline", &id), &au, |b, au| {
            b.iter(|| {
                pk2.packetize(black_box(au), 90_000, Some(1), &mut pkts)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
