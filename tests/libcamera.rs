//! The libcamera source run for real: libcamera 0.7's virtual camera (a Debian trixie
//! root, scripts/libcamera-root.sh, with the /dev/udmabuf test double) → vr-stream built
//! with the `libcamera` feature (scripts/build-libcamera.sh: target/libcamera/release) →
//! RTP on 127.0.0.1 → ffmpeg on this machine, decoding from the SDP.
//!
//! The virtual camera plays a directory of JPEG frames made here from the real clip and
//! delivers them as NV12 through libcamera's request cycle (CameraManager → configure →
//! allocate → request → complete), as the Pi 5's PiSP pipeline handler does with YUV420.
//! Root only (mount namespace, chroot); under `CI=true` a missing prerequisite fails.
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One virtual camera run at a time: they share the RTP ports' neighbourhood and CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const W: usize = 1280;
const H: usize = 720;

/// The root and the directory of the libcamera build, or None (skipped) when missing.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    if !nix::unistd::geteuid().is_root() {
        skip("the libcamera tests need root (a mount namespace and chroot into the trixie root)");
        return None;
    }
    let bins = Path::new(REPO).join("target/libcamera/release");
    if !bins.join("vr-stream").exists() {
        skip(
            "no libcamera build in target/libcamera/release: scripts/build-libcamera.sh makes it \
             (scripts/test.sh's libcamera step)",
        );
        return None;
    }
    let out = Command::new("bash")
        .arg(Path::new(REPO).join("scripts/libcamera-root.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "scripts/libcamera-root.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Some((root, bins))
}

/// Writes frames `first..first + n` of the real clip as JPEGs `0.jpg`, `1.jpg`… (4:2:0,
/// quality 2) into `dir`, and returns each one's luma as a JPEG decoder sees it (full
/// range, as libcamera's virtual camera hands it on: it does not convert the range).
fn jpeg_frames(dir: &Path, first: usize, n: usize) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(clip())
        .args([
            "-vf",
            &format!("select=between(n\\,{first}\\,{})", first + n - 1),
            "-fps_mode",
            "passthrough",
            "-pix_fmt",
            "yuvj420p",
            "-q:v",
            "2",
            "-start_number",
            "0",
        ])
        .arg(dir.join("%d.jpg"))
        .status()
        .expect("ffmpeg");
    assert!(st.success(), "ffmpeg could not write the JPEG frames");
    (0..n)
        .map(|i| {
            let out = Command::new("ffmpeg")
                .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
                .arg(dir.join(format!("{i}.jpg")))
                .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
                .output()
                .expect("ffmpeg");
            assert!(
                out.status.success() && out.stdout.len() == W * H,
                "decode {i}.jpg"
            );
            out.stdout
        })
        .collect()
}

/// libcamera's virtual pipeline configuration: one camera per frames directory, offering
/// W×H at 30 and 60 fps.
fn cameras_yaml(dirs: &[&Path]) -> String {
    let mut y = String::from("%YAML 1.1\n---\n");
    for (i, d) in dirs.iter().enumerate() {
        y += &format!(
            "\"Virtual{i}\":\n  supported_formats:\n    - width: {W}\n      height: {H}\n      \
             frame_rates:\n        - 30\n        - 60\n  frames:\n    path: \"{}\"\n  \
             location: \"CameraLocationFront\"\n  model: \"vr-stream test camera {i}\"\n",
            d.display()
        );
    }
    y
}

/// Runs `program` `args` in the root with the cameras of `yaml`, `dir` (the test's) bound
/// in, with a time limit.
fn in_root(root: &Path, dir: &Path, yaml: &str, program: &Path, args: &[&str]) -> Output {
    let cams = dir.join("virtual.yaml");
    std::fs::write(&cams, yaml).unwrap();
    let mut child = Command::new("bash")
        .arg(Path::new(REPO).join("scripts/in-libcamera-root.sh"))
        .arg(root)
        .arg("--cameras")
        .arg(&cams)
        .args(["--bind", REPO, "--bind"])
        .arg(dir)
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_virtual_camera_streams_to_ffmpeg_in_order_with_psnr_above_38() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((root, bins)) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n = 120;
    let refs = jpeg_frames(&dir.path().join("frames"), 0, n);
    let yaml = cameras_yaml(&[&dir.path().join("frames")]);
    let inst = instance("libcamera");
    let port = free_port_pair();
    let sdp = dir.path().join("stream.sdp");
    // The SDP first (this machine's build, the same stream settings), so that ffmpeg
    // listens before the first packet.
    let (p, s) = (port.to_string(), sdp.to_str().unwrap().to_string());
    let common_args = [
        "--ip",
        "127.0.0.1",
        "--port",
        p.as_str(),
        "--sdp",
        s.as_str(),
        "--width",
        "1280",
        "--height",
        "720",
        "--fps",
        "60",
        "--bitrate",
        "8000",
        "--no-web",
    ];
    let out = run_vr(
        &[&["--source", "pattern", "--sdp-only"], &common_args[..]].concat(),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ff = start_ffmpeg(&sdp, port);
    let stdout = ff.stdout.take().unwrap();
    let decoded = std::thread::spawn(move || {
        let mut frames = vec![];
        for_each_frame(stdout, W * H * 3 / 2, |f| frames.push(f[..W * H].to_vec()));
        frames
    });
    let frames = 600u64;
    let fr = frames.to_string();
    let vr = bins.join("vr-stream");
    let args = [
        &[
            "--source",
            "libcamera:0",
            "--frames",
            fr.as_str(),
            "--instance",
            inst.as_str(),
            "--json",
        ],
        &common_args[..],
    ]
    .concat();
    let t0 = Instant::now();
    let out = in_root(&root, dir.path(), &yaml, &vr, &args);
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "vr-stream in the root: {stderr}");
    std::thread::sleep(Duration::from_millis(700));
    interrupt(&ff);
    let _ = ff.wait();
    let decoded = decoded.join().unwrap();
    eprintln!("{stderr}");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    // At most 2% lost to latest-wins: the virtual camera completes the first requests ~1 ms
    // apart (all buffers are queued at the start), before the source notices it is faster
    // than asked and paces it; the newest of those wins (3-4 frames).
    assert_frames_accounted(&out.stdout, frames, frames / 50, &stderr);
    assert!(
        stderr.contains("delivers frames faster than the 60 fps asked for"),
        "the virtual camera was not paced: {stderr}"
    );
    let sent = summary_field(&out.stdout, "frames.sent").unwrap();
    // Each decoded frame is matched with the camera's source frame it is closest to: the
    // one matched before, or one of the next two (the camera plays its n frames in a loop,
    // so modulo n), or, when none of those is close (the first frame), any of them.
    let mut matched: Vec<(usize, f64)> = vec![];
    for y in &decoded {
        let near: Vec<usize> = match matched.last() {
            Some(&(prev, _)) => (0..3).map(|k| (prev + k) % n).collect(),
            None => vec![],
        };
        let best_of = |c: &mut dyn Iterator<Item = usize>| {
            c.map(|i| (i, psnr(y, &refs[i])))
                .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a })
        };
        let mut best = best_of(&mut near.iter().copied());
        if best.1 < 30.0 {
            best = best_of(&mut (0..n));
        }
        matched.push(best);
    }
    let mean = matched.iter().map(|m| m.1).sum::<f64>() / matched.len().max(1) as f64;
    let worst = matched.iter().map(|m| m.1).fold(f64::MAX, f64::min);
    // libcamera's virtual camera shows each image for 4 captures in a row (measured: runs
    // of 4 equal frames), then the next.
    let steps: Vec<usize> = matched
        .windows(2)
        .map(|w| (w[1].0 + n - w[0].0) % n)
        .collect();
    let advances = steps.iter().filter(|&&s| s > 0).count();
    eprintln!(
        "{} of {sent} frames decoded in {took:?}; PSNR-Y against the camera's frames mean \
         {mean:.2} dB, worst {worst:.2} dB; {advances} advances to the next image; first \
         matches {:?}",
        decoded.len(),
        matched.iter().take(12).map(|m| m.0).collect::<Vec<_>>()
    );
    assert!(
        decoded.len() as u64 * 100 >= sent * 99,
        "decoded {} of {sent}",
        decoded.len()
    );
    assert!(mean >= 38.0, "mean PSNR-Y {mean:.2} dB < 38");
    // In order: never back, never more than one image skipped (latest-wins drops).
    assert!(
        steps.iter().all(|&s| s <= 2),
        "frames out of order (steps between matched source frames): {steps:?}"
    );
    // The camera's frames, not one frame again and again: about one advance per 4 frames.
    assert!(
        advances * 4 + 8 >= decoded.len(),
        "{advances} advances over {} frames: {steps:?}",
        decoded.len()
    );
    // 600 frames at 60 fps: the camera paced them (FrameDurationLimits), ~10 s.
    assert!(
        took >= Duration::from_secs(9),
        "600 frames in {took:?}: not paced at 60 fps"
    );
}
