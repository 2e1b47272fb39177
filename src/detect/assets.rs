//! Where `--yolo` finds ONNX Runtime and the model when the configuration names neither:
//! the directory `vr-stream-fetch-yolo` (scripts/fetch-yolo.sh) fills.
//!
//! Directories looked in, in order ([`search_dirs`]): `$VR_YOLO_DIR`, then
//! `~/.cache/vr-stream/yolo` (the command run as a user), then `/var/cache/vr-stream/yolo`
//! (the command run as root: every user and vr-stream.service). In each: the library
//! [`LIBRARY`] and the model [`DEFAULT_MODEL`]. `detect.onnxruntime` (else
//! `ORT_DYLIB_PATH`) and `detect.model` override the search.

use super::onnx::{DetectError, Detector, load_runtime};
use crate::config::DetectConfig;
use std::path::{Path, PathBuf};

/// The library's path inside a fetched directory (a symlink to the versioned file).
pub const LIBRARY: &str = "lib/libonnxruntime.so";
/// The model used when `detect.model` is empty: Ultralytics YOLO11n (COCO, output
/// `[1, 84, N]`), which finds more on the test photos than YOLOv3-tiny at less inference
/// time at 320 (docs/detection.md).
pub const DEFAULT_MODEL: &str = "yolo11n.onnx";
/// The command that fetches both, as named in errors.
pub const FETCH_COMMAND: &str =
    "vr-stream-fetch-yolo (in a source checkout: bash scripts/fetch-yolo.sh)";
/// The system-wide directory (the command run as root).
pub const SYSTEM_DIR: &str = "/var/cache/vr-stream/yolo";

/// The directories searched, in order: `yolo_dir` (`$VR_YOLO_DIR`), `home` +
/// `.cache/vr-stream/yolo`, [`SYSTEM_DIR`]. Empty values are skipped.
pub fn dirs_from(yolo_dir: Option<&Path>, home: Option<&Path>) -> Vec<PathBuf> {
    let mut v = vec![];
    if let Some(d) = yolo_dir.filter(|d| !d.as_os_str().is_empty()) {
        v.push(d.to_path_buf());
    }
    if let Some(h) = home.filter(|h| !h.as_os_str().is_empty()) {
        v.push(h.join(".cache/vr-stream/yolo"));
    }
    v.push(PathBuf::from(SYSTEM_DIR));
    v
}

/// [`dirs_from`] with this process's `VR_YOLO_DIR` and `HOME`.
pub fn search_dirs() -> Vec<PathBuf> {
    let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
    dirs_from(var("VR_YOLO_DIR").as_deref(), var("HOME").as_deref())
}

/// The path in force for one piece: `configured` if not empty, else `overridden` (an
/// environment variable), else `file` in the first of `dirs` where `exists` says it is.
///
/// Errors: [`DetectError::NotFetched`] naming `what`, the directories looked in and
/// [`FETCH_COMMAND`].
pub fn pick(
    what: &'static str,
    configured: &str,
    overridden: Option<PathBuf>,
    dirs: &[PathBuf],
    file: &str,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, DetectError> {
    if !configured.is_empty() {
        return Ok(PathBuf::from(configured));
    }
    if let Some(p) = overridden.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p);
    }
    dirs.iter()
        .map(|d| d.join(file))
        .find(|p| exists(p))
        .ok_or_else(|| DetectError::NotFetched {
            what,
            file: file.to_string(),
            looked: dirs.to_vec(),
        })
}

/// The ONNX Runtime library in force for `d` (see the module doc).
///
/// Errors: [`DetectError::NotFetched`].
pub fn library(d: &DetectConfig) -> Result<PathBuf, DetectError> {
    pick(
        "ONNX Runtime",
        &d.onnxruntime,
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        &search_dirs(),
        LIBRARY,
        |p| p.exists(),
    )
}

/// The model in force for `d` (see the module doc).
///
/// Errors: [`DetectError::NotFetched`].
pub fn model(d: &DetectConfig) -> Result<PathBuf, DetectError> {
    pick(
        "the detection model",
        &d.model,
        None,
        &search_dirs(),
        DEFAULT_MODEL,
        |p| p.is_file(),
    )
}

/// Finds and loads ONNX Runtime, then opens the model, as `d` says: what the supervisor,
/// the detect stage and quick-bench do before detecting.
///
/// Errors: [`DetectError::NotFetched`] when a piece is neither configured nor fetched,
/// else those of [`load_runtime`] and [`Detector::open`].
pub fn open(d: &DetectConfig) -> Result<Detector, DetectError> {
    load_runtime(&library(d)?)?;
    Detector::open(d.params(model(d)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_order_is_config_then_variable_then_dirs() {
        let dirs = dirs_from(Some(Path::new("/y")), Some(Path::new("/home/u")));
        assert_eq!(
            dirs,
            [
                PathBuf::from("/y"),
                "/home/u/.cache/vr-stream/yolo".into(),
                SYSTEM_DIR.into()
            ]
        );
        assert_eq!(
            dirs_from(None, Some(Path::new(""))),
            [PathBuf::from(SYSTEM_DIR)]
        );
        let only_system = |p: &Path| p.starts_with(SYSTEM_DIR);
        let got = |c: &str, o: Option<&str>| {
            pick("x", c, o.map(PathBuf::from), &dirs, LIBRARY, only_system)
        };
        assert_eq!(got("/c.so", Some("/e.so")).unwrap(), PathBuf::from("/c.so"));
        assert_eq!(got("", Some("/e.so")).unwrap(), PathBuf::from("/e.so"));
        assert_eq!(got("", None).unwrap(), Path::new(SYSTEM_DIR).join(LIBRARY));
        let home_too = |p: &Path| !p.starts_with("/y");
        assert_eq!(
            pick("x", "", None, &dirs, LIBRARY, home_too).unwrap(),
            PathBuf::from("/home/u/.cache/vr-stream/yolo/lib/libonnxruntime.so")
        );
    }

    #[test]
    fn nothing_found_is_one_line_naming_the_command() {
        let dirs = dirs_from(None, Some(Path::new("/home/u")));
        let e = pick("ONNX Runtime", "", None, &dirs, LIBRARY, |_| false)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("ONNX Runtime not found"), "{e}");
        assert!(
            e.contains("/home/u/.cache/vr-stream/yolo, /var/cache/vr-stream/yolo"),
            "{e}"
        );
        assert!(e.contains("run vr-stream-fetch-yolo"), "{e}");
    }
}
