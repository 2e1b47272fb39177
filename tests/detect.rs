//! The detector on a real photo (`dog.jpg` from Debian's darknet package) with the real
//! YOLOv3-tiny (darknet weights converted by scripts/darknet2onnx.py), through the Rust
//! pipeline — letterbox, ONNX Runtime session, decode, NMS — against OpenCV's own darknet
//! implementation (scripts/yolo-reference.py, run by scripts/fetch-yolo.sh): the dog,
//! bicycle and car/truck detections within 0.02 in score and IoU >= 0.9 in box. The same
//! photo as an I420 frame (the JPEG → I420 path of webcam frames) finds the same objects.
//! `vr-stream --yolo` on the real clip: ffmpeg still decodes >= 99% of the frames, the
//! detect stage runs and publishes; without a library or model: one clear error, exit 1,
//! nothing left behind.

mod common;
use common::*;
#[path = "support/yolo.rs"]
mod yolo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vr_stream::detect::onnx::{Detector, DetectorParams, load_runtime};
use vr_stream::detect::{Detection, iou};
use yolo::rgb_of;

/// The tests here stream or run the model flat out: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Assets {
    dir: PathBuf,
    lib: PathBuf,
}

/// scripts/fetch-yolo.sh --test-assets (cached after the first run).
fn assets() -> Assets {
    let (dir, lib) = yolo::fetch();
    Assets { dir, lib }
}

impl Assets {
    /// `dir`/vr.toml: the fetched ONNX Runtime and `model` in `[detect]`, then `extra`
    /// (TOML, more sections).
    fn config(&self, dir: &Path, model: &Path, extra: &str) -> PathBuf {
        let cfg = dir.join("vr.toml");
        let (lib, model) = (self.lib.display().to_string(), model.display().to_string());
        let toml = format!("[detect]\nonnxruntime = {lib:?}\nmodel = {model:?}\n{extra}");
        std::fs::write(&cfg, toml).unwrap();
        cfg
    }

    /// YOLOv3-tiny at 320, the model of the stream tests.
    fn tiny(&self) -> PathBuf {
        self.dir.join("yolov3-tiny-320.onnx")
    }
}

/// vr-stream sends `frames` of the real clip with `yolo_flag` (`--yolo`, `--yolo-overlay`)
/// and the detector in `cfg` to vr-receive (`--json`, then `rx_extra`); returns the
/// receiver's JSON summary once both ended, vr-stream having exited 0.
fn send_to_vr_receive(yolo_flag: &str, frames: &str, cfg: &Path, rx_extra: &[&str]) -> Value {
    let inst = instance("yolo-rx");
    let port = free_port_pair();
    let rx = vr_receive_json(port, rx_extra);
    let source = format!("file:{}", clip().display());
    let port = port.to_string();
    let args = ["--source", &source, "--ip", "127.0.0.1", "--port", &port];
    let more = ["--sdp", "", "--instance", &inst, "--frames", frames];
    let cfg = ["--config", cfg.to_str().unwrap()];
    let out = run_vr(
        &[&[yolo_flag][..], &args, &more, &cfg].concat(),
        Duration::from_secs(60),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    let o = rx.wait_with_output().unwrap();
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))
}

struct Ref {
    class: u16,
    name: String,
    score: f32,
    bbox: [f32; 4],
}

/// `reference-{name}.json` of scripts/fetch-yolo.sh (`name`: "320", "yolo11n-416"...).
fn reference(a: &Assets, name: &str) -> Vec<Ref> {
    let j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(a.dir.join(format!("reference-{name}.json"))).unwrap(),
    )
    .unwrap();
    j["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b: Vec<f32> = d["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            Ref {
                class: d["class"].as_u64().unwrap() as u16,
                name: d["name"].as_str().unwrap().into(),
                score: d["score"].as_f64().unwrap() as f32,
                bbox: [b[0], b[1], b[2], b[3]],
            }
        })
        .collect()
}

fn best_match<'a>(dets: &'a [Detection], r: &Ref) -> Option<&'a Detection> {
    dets.iter()
        .filter(|d| d.class == r.class)
        .max_by(|a, b| iou(&a.bbox, &r.bbox).total_cmp(&iou(&b.bbox, &r.bbox)))
}

/// Runs `model(size)` through the Rust detector (letterbox, session, decode, NMS) on
/// dog.jpg at 320 and 416 and compares with `reference-{tag}{size}.json` (the independent
/// implementation's detections): the dog, the bicycle and the car or truck are found with
/// scores within 0.02 and IoU >= `min_iou`, and as many detections as the reference.
fn dog_jpg_matches_the_reference(model: impl Fn(u32) -> PathBuf, tag: &str, min_iou: f32) {
    let _serial = serial();
    let a = assets();
    load_runtime(&a.lib).unwrap();
    let jpeg = std::fs::read(a.dir.join("photos/dog.jpg")).unwrap();
    let (rgb, w, h) = rgb_of(&jpeg);
    for size in [320u32, 416] {
        let mut det = Detector::open(DetectorParams {
            model: model(size),
            size,
            threads: 2,
            conf: 0.25,
            iou: 0.45,
            classes: vec![],
            max: 100,
        })
        .unwrap();
        assert_eq!(det.size(), size);
        let (dets, t) = det.detect_rgb(&rgb, w, h).unwrap();
        let refs = reference(&a, &format!("{tag}{size}"));
        eprintln!(
            "{tag}{size}: prep {:?} infer {:?} post {:?}",
            t.prep, t.infer, t.post
        );
        for d in &dets {
            eprintln!(
                "  ours: class {} score {:.4} box {:?}",
                d.class,
                d.score,
                d.bbox.map(|v| v.round())
            );
        }
        let wanted = [1u16, 2, 7, 16];
        let mut checked = vec![];
        for r in refs.iter().filter(|r| wanted.contains(&r.class)) {
            let m = best_match(&dets, r)
                .unwrap_or_else(|| panic!("{size}: no {} (reference score {})", r.name, r.score));
            let (dscore, o) = ((m.score - r.score).abs(), iou(&m.bbox, &r.bbox));
            eprintln!(
                "  {} ref {:.4} ours {:.4} (diff {dscore:.4}), IoU {o:.4}",
                r.name, r.score, m.score
            );
            assert!(
                dscore <= 0.02,
                "{tag}{size}: {} score {} vs reference {}",
                r.name,
                m.score,
                r.score
            );
            assert!(
                o >= min_iou,
                "{tag}{size}: {} box {:?} vs reference {:?}: IoU {o}",
                r.name,
                m.bbox,
                r.bbox
            );
            checked.push(r.class);
        }
        for c in [1u16, 16] {
            assert!(
                checked.contains(&c),
                "{tag}{size}: reference lacks class {c}"
            );
        }
        assert!(
            checked.contains(&2) || checked.contains(&7),
            "{tag}{size}: no car or truck"
        );
        let classes = |v: &mut Vec<u16>| {
            v.sort();
            v.clone()
        };
        assert_eq!(
            classes(&mut dets.iter().map(|d| d.class).collect()),
            classes(&mut refs.iter().map(|r| r.class).collect()),
            "{tag}{size}: the same classes, as many times, as the reference"
        );
    }
}

#[test]
fn dog_jpg_matches_opencv_darknet_through_letterbox_session_decode_and_nms() {
    let dir = assets().dir;
    dog_jpg_matches_the_reference(|s| dir.join(format!("yolov3-tiny-{s}.onnx")), "", 0.9);
}

/// YOLO11n (the default model, `[1, 84, N]` output) against onnxruntime's Python API with
/// the reference script's own letterbox (OpenCV), decode and NMS (OpenCV's NMSBoxes).
#[test]
fn yolo11n_on_dog_jpg_matches_an_independent_decode_and_nms() {
    let dir = assets().dir;
    dog_jpg_matches_the_reference(|_| dir.join("yolo11n.onnx"), "yolo11n-", 0.95);
}

#[test]
fn the_same_photo_as_an_i420_frame_finds_the_same_objects() {
    let _serial = serial();
    let a = assets();
    load_runtime(&a.lib).unwrap();
    let jpeg = std::fs::read(a.dir.join("photos/dog.jpg")).unwrap();
    let (_, w, h) = rgb_of(&jpeg);
    let mut scratch = vec![0u8; (w * h * 3) as usize];
    let mut i420 = vec![0u8; (w * h * 3 / 2) as usize];
    vr_stream::source::v4l2::mjpeg_to_i420(&jpeg, w as usize, h as usize, &mut scratch, &mut i420)
        .unwrap();
    let mut det = Detector::open(DetectorParams {
        model: a.dir.join("yolov3-tiny-320.onnx"),
        size: 320,
        threads: 2,
        conf: 0.25,
        iou: 0.45,
        classes: vec![],
        max: 100,
    })
    .unwrap();
    let (dets, t) = det.detect_i420(&i420, w, h).unwrap();
    eprintln!(
        "I420 320: prep {:?} infer {:?} post {:?}",
        t.prep, t.infer, t.post
    );
    for r in reference(&a, "320").iter().filter(|r| r.score >= 0.35) {
        let m = best_match(&dets, r).unwrap_or_else(|| panic!("no {} from the I420 frame", r.name));
        let (dscore, o) = ((m.score - r.score).abs(), iou(&m.bbox, &r.bbox));
        eprintln!(
            "  {} ref {:.4} ours {:.4} (diff {dscore:.4}), IoU {o:.4}",
            r.name, r.score, m.score
        );
        // 4:2:0 chroma and limited-range rounding move scores a little.
        assert!(
            dscore <= 0.08 && o >= 0.85,
            "{}: score {} vs {}, IoU {o}",
            r.name,
            m.score,
            r.score
        );
    }
    // A class filter: only dogs.
    let mut dogs = Detector::open(DetectorParams {
        model: a.dir.join("yolov3-tiny-320.onnx"),
        size: 320,
        threads: 1,
        conf: 0.25,
        iou: 0.45,
        classes: vec![16],
        max: 100,
    })
    .unwrap();
    let (d, _) = dogs.detect_i420(&i420, w, h).unwrap();
    assert!(!d.is_empty() && d.iter().all(|d| d.class == 16), "{d:?}");
}

#[test]
fn a_missing_library_or_model_is_named_with_the_fix() {
    let _serial = serial();
    let e = load_runtime(std::path::Path::new("/nonexistent/libonnxruntime.so"))
        .map(|_| ())
        .err();
    // (If another test loaded the runtime first, loading is a no-op: then only the model.)
    if let Some(e) = e {
        let m = e.to_string();
        assert!(
            m.contains("/nonexistent/libonnxruntime.so") && m.contains("run vr-stream-fetch-yolo"),
            "{m}"
        );
    }
    let a = assets();
    load_runtime(&a.lib).unwrap();
    let e = Detector::open(DetectorParams {
        model: "/nonexistent/m.onnx".into(),
        size: 320,
        threads: 1,
        conf: 0.25,
        iou: 0.45,
        classes: vec![],
        max: 10,
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("/nonexistent/m.onnx"), "{e}");
}

#[test]
fn yolo_on_the_real_clip_leaves_the_video_whole() {
    let _serial = serial();
    let a = assets();
    let clip = clip();
    let inst = instance("yolo");
    let port = free_port_pair();
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("s.sdp");
    let cfg = a.config(dir.path(), &a.tiny(), "");
    let source = format!("file:{}", clip.display());
    let args = [
        "--source",
        source.as_str(),
        "--ip",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--sdp",
        sdp.to_str().unwrap(),
        "--instance",
        &inst,
        "--config",
        cfg.to_str().unwrap(),
        "--frames",
        "300",
    ];
    let out = run_vr(
        &[&args[..], &["--sdp-only"]].concat(),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ff = start_ffmpeg(&sdp, port);
    let stdout = ff.stdout.take().unwrap();
    let (reader, frames) = spawn_frame_reader(stdout, 1280 * 720 * 3 / 2, |_| {});
    let out = run_vr(&[&args[..], &["--yolo"]].concat(), Duration::from_secs(60));
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{e}");
    wait_settled(&frames);
    interrupt(&ff);
    let _ = ff.wait();
    reader.join().unwrap();
    let decoded = frames.load(std::sync::atomic::Ordering::Relaxed) as u64;
    let sent = summary_field(&out.stdout, "frames.sent").unwrap();
    eprintln!(
        "{}",
        e.lines()
            .filter(|l| l.contains("detect")
                || l.contains("total (")
                || l.contains("frames captured"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every frame sent decodes (the detector breaks nothing in the video). Frames dropped
    // at the ring (latest-wins) are counted and bounded: in fresh-clone CI runs on this
    // 2-CPU VM the stages' CPU stalled for 78-164 ms in some --yolo runs (10-23 drops);
    // never reproduced outside CI, cause not found yet (see the closing note of
    // 2026-12-04).
    let drops = summary_field(&out.stdout, "frames.ring_drops").unwrap();
    assert_eq!(sent + drops, 300, "{e}");
    assert!(
        drops <= 30,
        "{drops} frames dropped at the ring with --yolo: {e}"
    );
    assert!(
        decoded * 100 >= 99 * sent,
        "ffmpeg decoded {decoded} of {sent} sent with --yolo"
    );
    // The detect stage's figures in the --json summary.
    let run = summary_field(&out.stdout, "detect.inferences").expect("detect.inferences");
    let found = summary_field(&out.stdout, "detect.detections").expect("detect.detections");
    assert!(run >= 10, "the detector ran on {run} frames: {e}");
    assert!(found > 0, "no detections in {run} runs: {e}");
    assert!(
        e.contains("stage detect pid") && e.contains("policy SCHED_OTHER"),
        "{e}"
    );
    assert!(leftover_segments(&inst).is_empty() && processes_of(&inst).is_empty());
}

#[test]
fn yolo_without_library_or_model_fails_at_start_and_leaves_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // A shared library that is not ONNX Runtime: this process's libc.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let libc = maps
        .split_whitespace()
        .find(|w| w.contains("/libc.so") || w.contains("/libc-"))
        .expect("libc in /proc/self/maps")
        .to_string();
    let not_ort = format!("[detect]\nonnxruntime = {libc:?}\n");
    for (n, toml, want) in [
        (
            0,
            "[detect]\nonnxruntime = \"/nonexistent/libonnxruntime.so\"\n",
            "/nonexistent/libonnxruntime.so",
        ),
        (
            1,
            "[detect]\nmodel = \"/nonexistent/yolo.onnx\"\n",
            "/nonexistent/yolo.onnx",
        ),
        (2, not_ort.as_str(), libc.as_str()),
    ] {
        let mut toml = toml.to_string();
        if n == 1 {
            toml.push_str(&format!(
                "onnxruntime = {:?}\n",
                assets().lib.display().to_string()
            ));
        }
        let cfg = dir.path().join(format!("c{n}.toml"));
        std::fs::write(&cfg, toml).unwrap();
        let inst = instance(&format!("yolo-bad{n}"));
        let out = run_vr(
            &[
                "--yolo",
                "--config",
                cfg.to_str().unwrap(),
                "--instance",
                &inst,
                "--frames",
                "30",
                "--sdp",
                "",
            ],
            Duration::from_secs(20),
        );
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{e}");
        assert!(e.contains(want) && e.contains("--yolo"), "{e}");
        assert!(!e.contains("panicked"), "{e}");
        assert!(leftover_segments(&inst).is_empty() && processes_of(&inst).is_empty());
    }
}

#[test]
fn detections_reach_vr_receive_as_rtcp_app_packets_naming_received_frames() {
    let _serial = serial();
    let a = assets();
    let dir = tempfile::tempdir().unwrap();
    let cfg = a.config(dir.path(), &a.tiny(), "");
    let j = send_to_vr_receive("--yolo", "300", &cfg, &[]);
    let d = &j["detections"];
    eprintln!("{d}");
    let msgs = d["messages"].as_u64().expect("detection messages");
    assert!(msgs >= 10, "{d}");
    // Every message names a frame the receiver got (RTP timestamp) — none invented.
    assert!(
        d["matched_frames"].as_u64().unwrap() * 10 >= msgs * 9,
        "{d}"
    );
    assert_eq!(d["last"]["frame"], serde_json::json!([1280, 720]));
    for it in d["last"]["items"].as_array().unwrap() {
        let b: Vec<f64> = it["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            b[0] <= b[2] && b[1] <= b[3] && b[2] <= 1280.0 && b[3] <= 720.0,
            "{it}"
        );
        assert!(it["score"].as_f64().unwrap() >= 0.25, "{it}");
    }
    // Capture → detections at the receiver: about one inference (tens of ms), not seconds.
    let age = d["age_ms"]["p50"].as_f64().unwrap();
    assert!(age > 1.0 && age < 1000.0, "{d}");
}

#[test]
fn yolo_overlay_draws_the_boxes_into_the_video() {
    let _serial = serial();
    use vr_stream::source::FrameSource;
    let a = assets();
    let clip = clip();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.h264");
    let cfg = a.config(dir.path(), &a.tiny(), "");
    let j = send_to_vr_receive(
        "--yolo-overlay",
        "200",
        &cfg,
        &["-o", file.to_str().unwrap()],
    );
    let got = j["frames"]["complete"].as_u64().unwrap() as usize;
    assert!(got >= 190, "{j}");
    // Decoded frame i against source frame i: the outlines change the chroma a lot along
    // lines; the encoder alone (8 Mbit/s) hardly ever moves chroma by 48 levels.
    let mut ff = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-i",
            file.to_str().unwrap(),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut src = vr_stream::source::y4m::Y4mSource::open(&clip, false).unwrap();
    let (w, h) = (1280usize, 720usize);
    let fb = w * h * 3 / 2;
    let sources: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            let mut s = vec![0u8; fb];
            src.next_frame(&mut s).unwrap();
            s
        })
        .collect();
    // A loaded machine can drop a frame in the ring: match each decoded frame with the
    // closest (luma) of the next few source frames.
    let mut per_frame = vec![];
    let mut next = 0usize;
    for_each_frame(ff.stdout.take().unwrap(), fb, |d| {
        let sad = |s: &[u8]| {
            (0..w * h)
                .step_by(97)
                .map(|i| (d[i] as i64 - s[i] as i64).abs())
                .sum::<i64>()
        };
        let q = (next..(next + 4).min(sources.len()))
            .min_by_key(|&k| sad(&sources[k]))
            .unwrap_or(next);
        let s = &sources[q.min(sources.len() - 1)];
        let c = (w * h..fb)
            .filter(|&i| (d[i] as i32 - s[i] as i32).abs() > 48)
            .count();
        per_frame.push(c);
        next = q + 1;
    });
    let _ = ff.wait();
    assert_eq!(per_frame.len(), got);
    let late = &per_frame[per_frame.len() - 90..];
    let with_boxes = late.iter().filter(|&&c| c > 1000).count();
    eprintln!("chroma samples moved > 48 levels, last 90 frames: {late:?}");
    // Frames drawn while the newest result was empty carry none (seen: 72 of 100 with).
    assert!(
        with_boxes >= 35,
        "only {with_boxes} of the last 90 frames carry outlines: {late:?}"
    );
    assert!(
        per_frame[0] < 1000,
        "the first frame (no detection yet) is untouched: {}",
        per_frame[0]
    );
}

#[test]
fn a_detect_stage_that_keeps_failing_is_dropped_and_the_video_goes_on() {
    let _serial = serial();
    let a = assets();
    let inst = instance("yolo-fail");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::copy(a.dir.join("yolov3-tiny-320.onnx"), &model).unwrap();
    let cfg = a.config(
        dir.path(),
        &model,
        "[supervise]\nbackoff_ms = 20\nmax_restarts = 2\n",
    );
    let port = free_port_pair();
    let vr = Command::new(bin())
        .args([
            "--yolo",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--sdp",
            "",
            "--instance",
            &inst,
            "--config",
            cfg.to_str().unwrap(),
        ])
        .args([
            "--width", "640", "--height", "360", "--frames", "360", "--json",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ctl = wait_streaming(&inst);
    // The detector runs (its first inference is counted)...
    let t0 = std::time::Instant::now();
    while ctl.stats().detect().inferences == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the detector never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...then the model goes away and the running detector is killed: every restart fails.
    std::fs::remove_file(&model).unwrap();
    let pid = ctl
        .stage(vr_stream::shm::stats::Stage::Detect)
        .pid
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(pid > 0);
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let out = vr.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the stream must not end with the detector: {e}"
    );
    assert!(
        e.contains("streaming on without detection") && e.contains("m.onnx"),
        "{e}"
    );
    // The video went on to the end: every frame captured was sent or counted as a ring
    // drop (latest-wins). A few drops are allowed: on this development VM (no isolated
    // CPUs, a kernel without full preemption) a kernel thread can hold the stages' CPU for
    // tens of ms (khugepaged seen at 31 ms), while the detector's restarts fork and load
    // ONNX Runtime.
    let (captured, sent) = (
        summary_field(&out.stdout, "frames.captured").unwrap(),
        summary_field(&out.stdout, "frames.sent").unwrap(),
    );
    let drops = summary_field(&out.stdout, "frames.ring_drops").unwrap();
    assert_eq!(captured, 360, "{e}");
    assert_eq!(sent + drops, 360, "{e}");
    assert!(sent >= 342, "{e}");
    assert!(leftover_segments(&inst).is_empty() && processes_of(&inst).is_empty());
}

/// `vr-stream --yolo` as a user runs it after the documented fetch command: no ONNX Runtime
/// or YOLO variable in the environment and no `[detect]` paths in any configuration. It
/// finds the runtime and YOLO11n where the command put them and streams the real clip with
/// detections.
#[test]
fn after_the_fetch_command_yolo_needs_no_environment_variable() {
    let _serial = serial();
    let vars = ["VR_YOLO_DIR", "VR_STREAM_CACHE", "ORT_DYLIB_PATH"];
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/fetch-yolo.sh"
        ))
        .env_remove(vars[0])
        .env_remove(vars[1])
        .env_remove(vars[2])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the fetch command failed: {e}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("VR_YOLO_DIR="))
        .unwrap()
        .to_string();
    let source = format!("file:{}", clip().display());
    let inst = instance("yolo-default");
    let port = free_port_pair().to_string();
    let mut cmd = Command::new(bin());
    cmd.args([
        "--yolo",
        "--source",
        &source,
        "--frames",
        "180",
        "--ip",
        "127.0.0.1",
        "--port",
        &port,
        "--sdp",
        "",
        "--no-web",
        "--instance",
        &inst,
        "--json",
    ]);
    for v in vars {
        cmd.env_remove(v);
    }
    let out = cmd.output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    let model = format!("detector {dir}/yolo11n.onnx");
    assert!(e.contains(&model), "wanted '{model}': {e}");
    let run = summary_field(&out.stdout, "detect.inferences").expect("detect.inferences");
    let found = summary_field(&out.stdout, "detect.detections").expect("detect.detections");
    assert!(run >= 5, "the detector ran on {run} frames: {e}");
    assert!(found > 0, "no detections in {run} runs: {e}");
    assert!(leftover_segments(&inst).is_empty() && processes_of(&inst).is_empty());
}

/// With nothing fetched (a new HOME, /var/cache/vr-stream hidden by a tmpfs in a private
/// mount namespace), and then with only the runtime there, `--yolo` stops before starting
/// anything with one error line that names what is missing, where it looked and the
/// command that fetches it.
#[test]
fn without_the_fetch_command_yolo_names_it_in_one_line() {
    let _serial = serial();
    if !nix::unistd::geteuid().is_root() {
        skip("needs root to hide /var/cache/vr-stream in a private mount namespace");
        return;
    }
    let lib = assets().lib;
    let home = tempfile::tempdir().unwrap();
    let cached = home.path().join(".cache/vr-stream/yolo");
    for (n, want) in [
        (
            0,
            "ONNX Runtime not found (lib/libonnxruntime.so is in none of",
        ),
        (
            1,
            "the detection model not found (yolo11n.onnx is in none of",
        ),
    ] {
        if n == 1 {
            std::fs::create_dir_all(cached.join("lib")).unwrap();
            // A copy: a symlink into /var/cache/vr-stream would point into the hidden tree.
            std::fs::copy(&lib, cached.join("lib/libonnxruntime.so")).unwrap();
        }
        let inst = instance(&format!("yolo-unfetched{n}"));
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "if [ -d /var/cache/vr-stream ]; then mount -t tmpfs none /var/cache/vr-stream || exit 99; fi; exec \"$0\" \"$@\"",
            )
            .arg(bin())
            .args(["--yolo", "--frames", "30", "--sdp", "", "--no-web", "--instance", &inst])
            .env("HOME", home.path())
            .env_remove("VR_YOLO_DIR")
            .env_remove("ORT_DYLIB_PATH")
            .output()
            .expect("unshare (util-linux)");
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{e}");
        let lines: Vec<&str> = e.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{e}");
        let looked = format!(
            "{}, /var/cache/vr-stream/yolo): run vr-stream-fetch-yolo",
            cached.display()
        );
        assert!(
            lines[0].contains(want) && lines[0].contains(&looked),
            "wanted '{want}' and '{looked}': {e}"
        );
        assert!(!e.contains("panicked"), "{e}");
        assert!(leftover_segments(&inst).is_empty() && processes_of(&inst).is_empty());
    }
}
