//! The x264 settings, read back from the bitstream by an independent parser (ffmpeg's
//! trace_headers bitstream filter): no reordering (VUI bitstream restriction with
//! max_num_reorder_frames = 0), no B-slices, SPS/PPS before every IDR.

use std::process::Command;
use vr_stream::config::EncoderConfig;
use vr_stream::encode::{EncoderParams, VideoEncoder, X264Encoder};
use vr_stream::source::{SourceFormat, pattern};

fn encode_to_file(intra_refresh: bool, threads: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let fmt = SourceFormat {
        width: 640,
        height: 360,
        fps_num: 60,
        fps_den: 1,
    };
    let enc = EncoderConfig {
        bitrate_kbps: 3000,
        keyint: if intra_refresh { 0 } else { 30 },
        intra_refresh,
        threads,
        ..vr_stream::config::load(&[]).unwrap().encoder
    };
    let mut e = X264Encoder::new(&EncoderParams { format: fmt, enc }).unwrap();
    let mut buf = vec![0u8; fmt.frame_bytes()];
    let mut out = vec![];
    for i in 0..70 {
        pattern::draw(&mut buf, fmt.width, fmt.height, i);
        out.extend_from_slice(e.encode(&buf, false).unwrap().data);
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.h264");
    std::fs::write(&p, &out).unwrap();
    (dir, p)
}

fn trace(p: &std::path::Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-i"])
        .arg(p)
        .args(["-c:v", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn values<'a>(t: &'a str, key: &str) -> Vec<&'a str> {
    t.lines()
        .filter(|l| l.split_whitespace().nth(4) == Some(key))
        .filter_map(|l| l.split_whitespace().last())
        .collect()
}

#[test]
fn sps_says_no_reordering_and_idrs_carry_parameter_sets() {
    for threads in [1, 2] {
        let (_d, p) = encode_to_file(false, threads);
        let t = trace(&p);
        let nal_types = values(&t, "nal_unit_type");
        let sps = nal_types.iter().filter(|v| **v == "7").count();
        // IDR pictures 0, 30, 60 (slices of one picture counted once below via first_mb 0).
        assert!(sps >= 3, "an SPS with every IDR: {sps}");
        let restr = values(&t, "bitstream_restriction_flag");
        assert_eq!(
            restr.len(),
            sps,
            "every SPS has a VUI bitstream restriction"
        );
        assert!(restr.iter().all(|v| *v == "1"));
        let reorder = values(&t, "max_num_reorder_frames");
        assert_eq!(reorder.len(), sps);
        assert!(reorder.iter().all(|v| *v == "0"), "{reorder:?}");
        // slice_type 1/6 = B: none.
        assert!(
            values(&t, "slice_type")
                .iter()
                .all(|v| *v != "1" && *v != "6")
        );
        if threads == 2 {
            // Sliced threads: more than one slice per picture.
            let firsts = values(&t, "first_mb_in_slice");
            assert!(
                firsts.iter().filter(|v| **v != "0").count() >= 70,
                "sliced: {}",
                firsts.len()
            );
        }
    }
}

#[test]
fn intra_refresh_sends_one_idr_only() {
    let (_d, p) = encode_to_file(true, 1);
    let t = trace(&p);
    // 70 frames, one IDR slice only (the first frame): intra refresh, no periodic IDR.
    assert_eq!(
        values(&t, "nal_unit_type")
            .iter()
            .filter(|v| **v == "5")
            .count(),
        1,
        "one IDR slice"
    );
    assert!(
        values(&t, "max_num_reorder_frames")
            .iter()
            .all(|v| *v == "0")
    );
}
