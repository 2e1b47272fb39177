//! The fuzz targets' inputs on stable Rust: every file of `fuzz/corpus/TARGET/` (the
//! committed seeds, and any crash cargo-fuzz found and we kept) through
//! `vr_testkit::fuzzing::TARGET`, plus seeds built here from the real writers (so the
//! committed ones can be regenerated: `VR_WRITE_FUZZ_SEEDS=1 cargo test --test
//! fuzz_corpus`).

use std::path::PathBuf;
use vr_stream::rtp::{PacketBuf, Packetizer, RtpParams};
use vr_testkit::fuzzing;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn framed(pkts: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = vec![];
    for p in pkts {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(&p);
    }
    out
}

fn stream_packets() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut pk = Packetizer::new(
        RtpParams {
            ssrc: 0x1234,
            payload_type: 96,
            payload_size: 300,
            capture_time_ext_id: Some(1),
        },
        65530,
    );
    let mut fec = vr_stream::fec::FecEncoder::new(0);
    let (mut media, mut fecs) = (vec![], vec![]);
    for i in 0..3u32 {
        let mut au = vec![];
        if i == 0 {
            au.extend_from_slice(&[
                0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
            ]);
        }
        au.extend_from_slice(&[0, 0, 0, 1, if i == 0 { 0x65 } else { 0x41 }]);
        au.extend((0..700 + 100 * i).map(|k| (k % 251 + 1) as u8));
        let mut buf = PacketBuf::default();
        pk.packetize(&au, 1500 * i, Some(1 << 32), &mut buf)
            .unwrap();
        let mut f = PacketBuf::default();
        fec.protect(&buf, 50, 127, &mut f).unwrap();
        media.extend(buf.iter().map(|p| p.to_vec()));
        fecs.extend(f.iter().map(|p| p.to_vec()));
    }
    (media, fecs)
}

/// Seeds from the real writers, per target.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use vr_stream::rtcp::*;
    let (media, fecs) = stream_packets();
    let mut out = vec![];
    out.push(("depacketizer", "three-frames", framed(media.clone())));
    let mut reordered = media.clone();
    reordered.swap(1, 3);
    reordered.remove(5);
    out.push((
        "depacketizer",
        "reordered-lossy-with-fec",
        framed(reordered.into_iter().chain(fecs.clone())),
    ));
    let block = ReportBlock {
        ssrc: 0x1234,
        fraction_lost: 12,
        cumulative_lost: 40,
        ext_highest_seq: 70_000,
        jitter: 90,
        lsr: 0x1234_5678,
        dlsr: 0x8000,
    };
    let mut sr = vec![];
    write_sr(
        &mut sr,
        0x1234,
        &SenderInfo {
            ntp: 0xe000_0000_8000_0000,
            rtp_ts: 9000,
            packets: 10,
            octets: 9000,
        },
        &[block],
    );
    write_sdes_cname(&mut sr, 0x1234, "vr-stream@pi");
    out.push(("rtcp", "sr-sdes", sr));
    let mut rr = vec![];
    write_rr(&mut rr, 7, &[block]);
    write_pli(&mut rr, 7, 0x1234);
    write_nack(&mut rr, 7, 0x1234, &[5, 6, 7, 40, 1000]);
    write_bye(&mut rr, 7);
    out.push(("rtcp", "rr-pli-nack-bye", rr));
    out.push((
        "rtcp",
        "clock-answer",
        vr_stream::clock::answer(&vr_stream::clock::request(1 << 40, 3), 2 << 40, 3 << 40)
            .unwrap()
            .to_vec(),
    ));
    out.push((
        "fec",
        "frame-with-fec",
        framed(media[..4].iter().cloned().chain(fecs[..2].iter().cloned())),
    ));
    out.push((
        "fec",
        "roundtrip-8-packets",
        vec![7, 0b1010_0110, 10, 200, 3, 50, 255, 0, 9, 77],
    ));
    let sdp = vr_stream::sdp::write_sdp(&vr_stream::sdp::SdpParams {
        origin: "10.0.0.2".parse().unwrap(),
        dest: "10.0.0.9".parse().unwrap(),
        port: 5004,
        payload_type: 96,
        parameter_sets: &[
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ],
        capture_time_ext_id: Some(1),
        fps: (60, 1),
        session_id: 1,
    })
    .unwrap();
    out.push(("sdp", "vr-stream", sdp.into_bytes()));
    out
}

fn run(target: &str, data: &[u8]) {
    match target {
        "depacketizer" => fuzzing::depacketizer(data),
        "rtcp" => fuzzing::rtcp(data),
        "fec" => fuzzing::fec(data),
        "sdp" => fuzzing::sdp(data),
        _ => panic!("unknown fuzz target {target}"),
    }
}

#[test]
fn seeds_from_the_writers_pass_every_target() {
    let write = std::env::var_os("VR_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, data) in seeds() {
        run(target, &data);
        if write {
            std::fs::create_dir_all(corpus_dir(target)).unwrap();
            std::fs::write(corpus_dir(target).join(name), &data).unwrap();
        }
    }
}

#[test]
fn committed_corpus_files_pass_their_targets() {
    let mut n = 0;
    for target in ["depacketizer", "rtcp", "fec", "sdp"] {
        let dir = corpus_dir(target);
        let entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .collect();
        assert!(!entries.is_empty(), "no seeds in {}", dir.display());
        for e in entries {
            let data = std::fs::read(e.path()).unwrap();
            run(target, &data);
            n += 1;
        }
    }
    assert!(n >= 8);
}

#[test]
fn every_prefix_and_bit_flip_of_the_seeds_is_handled() {
    // A poor man's fuzzer on stable, so CI covers truncation and corruption paths.
    for (target, _, data) in seeds() {
        for len in 0..data.len().min(200) {
            run(target, &data[..len]);
        }
        for i in 0..data.len().min(400) {
            let mut d = data.clone();
            d[i] ^= 1 << (i % 8);
            run(target, &d);
        }
    }
}
