//! What the YOLO tests and benches share (included with `#[path]` by tests/detect.rs,
//! tests/web.rs, benches/yolo_latency.rs and benches/yolo_models.rs).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Runs `scripts/fetch-yolo.sh --test-assets` (cached after the first run) and returns its
/// `(VR_YOLO_DIR, ORT_DYLIB_PATH)`.
pub fn fetch() -> (PathBuf, PathBuf) {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/fetch-yolo.sh"
        ))
        .arg("--test-assets")
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "scripts/fetch-yolo.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let var = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{k} missing: {text}"))
    };
    (var("VR_YOLO_DIR"), var("ORT_DYLIB_PATH"))
}

/// A JPEG decoded to interleaved 8-bit RGB: (pixels, width, height).
pub fn rgb_of(jpeg: &[u8]) -> (Vec<u8>, u32, u32) {
    use zune_jpeg::zune_core::{colorspace::ColorSpace, options::DecoderOptions};
    let mut d = zune_jpeg::JpegDecoder::new_with_options(
        std::io::Cursor::new(jpeg),
        DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB),
    );
    let px = d.decode().unwrap();
    let info = d.info().unwrap();
    (px, info.width as u32, info.height as u32)
}
