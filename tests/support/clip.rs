//! The real test clip, shared by the tests (tests/common) and the benches (benches/common).

use std::path::PathBuf;
use std::process::Command;

/// The 720p60 real clip (`box-720p60.y4m`, ../shared/ASSETS.md) in `$VR_STREAM_ASSETS` or
/// `~/.cache/vr-stream/assets`; fetched by scripts/fetch-assets.sh when missing. Panics
/// when the fetch fails or leaves no clip (nothing can run without it).
pub fn clip() -> PathBuf {
    let dir = std::env::var_os("VR_STREAM_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vr-stream/assets")
        });
    let p = dir.join("box-720p60.y4m");
    if !p.exists() {
        let fetch = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fetch-assets.sh");
        let st = Command::new("bash")
            .arg(fetch)
            .status()
            .unwrap_or_else(|e| panic!("run {fetch}: {e}"));
        assert!(st.success(), "{fetch} failed");
    }
    assert!(p.exists(), "{} missing after fetch-assets", p.display());
    p
}
