//! MJPEG (as USB webcams send it) decoded to I420 by the V4L2 source's converter, checked
//! against ffmpeg's own decode of the same JPEG. No camera here: the frame comes from
//! ffmpeg's mjpeg encoder, with and without Huffman tables (webcams omit them).

mod common;
use common::psnr;
use std::process::Command;
use vr_stream::source::v4l2::mjpeg_to_i420;

#[test]
fn mjpeg_frame_matches_ffmpeg_decode() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (320usize, 240usize);
    let jpg = dir.path().join("f.jpg");
    let st = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240",
            "-frames:v",
            "1",
            "-pix_fmt",
            "yuvj422p",
            "-huffman",
            "default",
            "-f",
            "mjpeg",
        ])
        .arg(&jpg)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    let reference = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(&jpg)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(reference.len(), w * h * 3 / 2);
    let data = std::fs::read(&jpg).unwrap();
    let mut scratch = vec![0u8; w * h * 3];
    let mut out = vec![0u8; w * h * 3 / 2];
    mjpeg_to_i420(&data, w, h, &mut scratch, &mut out).unwrap();
    let py = psnr(&out[..w * h], &reference[..w * h]);
    let pc = psnr(&out[w * h..], &reference[w * h..]);
    assert!(
        py > 40.0 && pc > 30.0,
        "PSNR Y {py:.1} dB, chroma {pc:.1} dB"
    );

    // As UVC webcams send MJPEG: an APP0 "AVI1" segment and no DHT segment (the decoder
    // must use the standard tables of JPEG Annex K.3). Rebuild the frame that way: drop
    // every APP0 and DHT segment of ffmpeg's JPEG and put an AVI1 APP0 after SOI.
    let mut stripped = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00,
    ];
    let mut i = 2;
    loop {
        assert_eq!(data[i], 0xFF);
        let m = data[i + 1];
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if m == 0xDA {
            stripped.extend_from_slice(&data[i..]);
            break;
        }
        if m != 0xE0 && m != 0xC4 {
            stripped.extend_from_slice(&data[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    assert!(stripped.len() < data.len());
    // Encoded with -huffman default (the standard tables), as webcams do.
    mjpeg_to_i420(&stripped, w, h, &mut scratch, &mut out).unwrap();
    assert!(psnr(&out[..w * h], &reference[..w * h]) > 40.0);

    // Wrong size and garbage are errors, not panics.
    assert!(
        mjpeg_to_i420(
            &data,
            640,
            480,
            &mut vec![0; 640 * 480 * 3],
            &mut vec![0; 640 * 480 * 3 / 2]
        )
        .unwrap_err()
        .contains("320x240")
    );
    assert!(mjpeg_to_i420(&data[..100], w, h, &mut scratch, &mut out).is_err());
    assert!(mjpeg_to_i420(b"not a jpeg", w, h, &mut scratch, &mut out).is_err());
}
