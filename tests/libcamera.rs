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

/// The last line of stderr that [`in_root`] adds: what the private /dev/shm held at the end.
const SHM_LINE: &str = "libcamera-test: /dev/shm at the end:";

/// Runs `program` `args` in the root with the cameras of `yaml`, `dir` (the test's) bound
/// in, with a time limit; then lists the root's private /dev/shm on the last line of stderr
/// ([`SHM_LINE`], [`shm_left`]).
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
        .args([
            "--",
            "sh",
            "-c",
            &format!("\"$0\" \"$@\"; rc=$?; echo \"{SHM_LINE}\" $(ls -A /dev/shm) >&2; exit $rc"),
        ])
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

/// The segments of vr-stream instance `inst` left in the root's /dev/shm ([`in_root`]).
fn shm_left(stderr: &str, inst: &str) -> Vec<String> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(SHM_LINE))
        .unwrap_or_else(|| panic!("no /dev/shm listing: {stderr}"));
    line.split_whitespace()
        .filter(|n| n.starts_with(inst))
        .map(String::from)
        .collect()
}

#[test]
fn a_camera_that_does_not_exist_and_a_size_it_cannot_give_are_one_clear_error_each() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((root, bins)) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    jpeg_frames(&dir.path().join("frames"), 0, 4);
    let yaml = cameras_yaml(&[&dir.path().join("frames")]);
    let vr = bins.join("vr-stream");
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "libcamera:3",
            &[],
            "camera libcamera:3: no such camera (1 camera(s) found)",
        ),
        (
            "libcamera:/no/such/id",
            &[],
            "camera libcamera:/no/such/id: no such camera (1 camera(s) found)",
        ),
        (
            "libcamera:0",
            &["--width", "640", "--height", "480"],
            "640x480 in YUV420 or NV12 is not offered (the camera adjusted the request to \
             1280x720 NV12); NV12 at 1280x720 (--width/--height, source.width/height)",
        ),
    ];
    for (i, (source, extra, want)) in cases.iter().enumerate() {
        let inst = instance(&format!("lcerr{i}"));
        let p = free_port_pair().to_string();
        let args = [
            &[
                "--source",
                source,
                "--ip",
                "127.0.0.1",
                "--port",
                p.as_str(),
                "--no-web",
                "--frames",
                "10",
                "--instance",
                inst.as_str(),
            ],
            *extra,
        ]
        .concat();
        let out = in_root(&root, dir.path(), &yaml, &vr, &args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{source} {extra:?} succeeded: {stderr}"
        );
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("vr-stream: error:") || l.starts_with("error:"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "one error line for {source} {extra:?}: {stderr}"
        );
        assert!(
            errors[0].contains(want),
            "{source} {extra:?}: {}",
            errors[0]
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(shm_left(&stderr, &inst), Vec::<String>::new(), "{stderr}");
    }
}

/// What one streaming run gave: vr-stream's stderr, the luma planes ffmpeg decoded, and the
/// wall time of the run in the root.
struct Streamed {
    stderr: String,
    lumas: Vec<Vec<u8>>,
    took: Duration,
    /// The `--json` exit summary.
    summary: serde_json::Value,
}

/// Streams `frames` frames from the libcamera source(s) in `source_args` (e.g.
/// `--source libcamera:0`) of the vr-stream in the root to ffmpeg here, `width` pixels wide
/// (twice W for stereo), 8 Mbit/s. `sdp_args` are the same with pattern sources, for the
/// SDP written first by this machine's vr-stream (so that ffmpeg listens before the first
/// packet). Checks what every run must show: vr-stream succeeded and left no segment in
/// the root's /dev/shm, the capture time is the camera's (capture -> ring p50 under 20 ms),
/// the camera was paced, every frame was captured, at most `max_lost` not sent (the virtual
/// camera completes the first requests ~1 ms apart, as all buffers are queued at the
/// start, before the source notices it is faster than asked; latest-wins keeps the newest),
/// and at least `decoded_pct`% of those sent were decoded.
#[allow(clippy::too_many_arguments)]
fn stream(
    root: &Path,
    bins: &Path,
    dir: &Path,
    yaml: &str,
    source_args: &[&str],
    sdp_args: &[&str],
    width: usize,
    frames: u64,
    max_lost: u64,
    decoded_pct: u64,
) -> Streamed {
    let inst = instance("libcamera");
    let port = free_port_pair();
    let sdp = dir.join("stream.sdp");
    let (p, s) = (port.to_string(), sdp.to_str().unwrap().to_string());
    let fr = frames.to_string();
    // The Pi 5's layout on this 2-CPU machine: the default maps the camera, network and
    // encode stages all onto CPU 1, where the camera stage's libcamera threads (SCHED_FIFO
    // 90, inherited) preempt a single x264 thread that, on the Pi, has CPUs 2-3 beside it.
    // Measured so in CI: encode p99 20.7 ms at 60 fps and 13 frames lost to latest-wins.
    // Here the encoder has CPU 1 to itself, as its slice threads do on the Pi.
    let layout = dir.join("layout.toml");
    std::fs::write(
        &layout,
        "[stages.camera]\ncpu = 0\n[stages.network]\ncpu = 0\n[stages.encode]\ncpus = \"1\"\n",
    )
    .unwrap();
    let layout = layout.to_str().unwrap().to_string();
    let common = [
        "--config",
        layout.as_str(),
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
        &[sdp_args, &["--sdp-only"], &common[..]].concat(),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ff = start_ffmpeg(&sdp, port);
    let stdout = ff.stdout.take().unwrap();
    let luma = width * H;
    // Frames ffmpeg decoded so far: the sampler below takes its first look at the camera
    // stage once frames flow end to end.
    let decoded_n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let decoded = {
        let n = decoded_n.clone();
        std::thread::spawn(move || {
            let mut lumas = vec![];
            for_each_frame(stdout, luma * 3 / 2, |f| {
                lumas.push(f[..luma].to_vec());
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
            lumas
        })
    };
    let args = [
        source_args,
        &[
            "--frames",
            fr.as_str(),
            "--instance",
            inst.as_str(),
            "--json",
        ],
        &common[..],
    ]
    .concat();
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (inst, ended, n) = (inst.clone(), ended.clone(), decoded_n.clone());
        std::thread::spawn(move || resources_over_the_run(&inst, &ended, &n))
    };
    let t0 = Instant::now();
    let out = in_root(root, dir, yaml, &bins.join("vr-stream"), &args);
    let took = t0.elapsed();
    ended.store(true, std::sync::atomic::Ordering::Relaxed);
    let (early, late) = sampler.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "vr-stream in the root: {stderr}");
    wait_settled(&decoded_n);
    interrupt(&ff);
    let _ = ff.wait();
    let lumas = decoded.join().unwrap();
    eprintln!("{stderr}");
    assert_eq!(shm_left(&stderr, &inst), Vec::<String>::new(), "{stderr}");
    // The capture time is the camera's SensorTimestamp (CLOCK_BOOTTIME) moved to
    // CLOCK_MONOTONIC: capture -> ring is then the copy's time, not the offset between the
    // clocks (or garbage).
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no --json summary ({e}): {stderr}"));
    let cam = &doc["latency_ms"]["camera"];
    assert!(
        cam["p50"].as_f64().is_some_and(|v| v > 0.0 && v < 20.0),
        "capture -> ring {cam}"
    );
    eprintln!(
        "capture -> ring p50 {} ms p99 {} ms; capture -> last packet p50 {} ms, p99 {} ms",
        cam["p50"],
        cam["p99"],
        doc["latency_ms"]["total"]["p50"],
        doc["latency_ms"]["total"]["p99"]
    );
    assert!(
        stderr.contains("delivers frames faster than the 60 fps asked for"),
        "the virtual camera was not paced: {stderr}"
    );
    // All captured; at most `max_lost` not sent (latest-wins, or a pair in flight at the end).
    let field = |k: &str| summary_field(&out.stdout, &format!("frames.{k}")).unwrap();
    assert_eq!(field("captured"), frames, "{stderr}");
    assert!(
        field("sent") + max_lost >= frames,
        "sent {} of {frames} (at most {max_lost} may be lost): {stderr}",
        field("sent")
    );
    // Buffers are recycled: the camera stage (it holds the camera's buffers and requests)
    // gained no descriptors or resident memory from 1 s of frames decoded to its end.
    assert!(!early.is_empty(), "the camera stage was never seen");
    for (pid, (fds0, kb0)) in &early {
        if let Some((fds1, kb1)) = late.get(pid) {
            eprintln!("pid {pid}: fds {fds0} -> {fds1}, VmRSS {kb0} -> {kb1} kB");
            assert!(fds1 <= fds0, "pid {pid}: descriptors {fds0} -> {fds1}");
            assert!(kb1 <= &(kb0 + 4096), "pid {pid}: VmRSS {kb0} -> {kb1} kB");
        }
    }
    let sent = summary_field(&out.stdout, "frames.sent").unwrap();
    assert!(
        lumas.len() as u64 * 100 >= sent * decoded_pct,
        "decoded {} of {sent} (at least {decoded_pct}%)",
        lumas.len()
    );
    Streamed {
        stderr,
        lumas,
        took,
        summary: doc,
    }
}

/// Open descriptors and VmRSS (kB) by PID.
type Resources = std::collections::HashMap<u32, (usize, u64)>;

/// Frames decoded end to end before the first look at the camera stage: by then it has
/// configured the camera, allocated its buffers and queued its requests (1 s at 60 fps).
const STREAMING_AFTER: usize = 60;

/// The open descriptors and VmRSS (kB) of the camera stage of vr-stream instance `inst`
/// (which holds the camera's buffers and requests; it runs in the root but is this
/// machine's process) once `decoded` frames reached [`STREAMING_AFTER`] (a look taken
/// before then, while the stage was still opening the camera, saw 8 descriptors, then 9),
/// and at each one's last look before it ended (or `ended` is set): (early, late), by PID.
fn resources_over_the_run(
    inst: &str,
    ended: &std::sync::atomic::AtomicBool,
    decoded: &std::sync::atomic::AtomicUsize,
) -> (Resources, Resources) {
    let look = || -> Resources {
        processes_of(inst)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("\0stage\0camera\0"))
            })
            .filter_map(|pid| {
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let kb = vr_stream::rt::status_field_kb(&status, "VmRSS:")?;
                Some((pid, (fds, kb)))
            })
            .collect()
    };
    let t0 = Instant::now();
    let mut seen = false;
    let (mut early, mut late) = (Resources::new(), Resources::new());
    while t0.elapsed() < Duration::from_secs(120)
        && !ended.load(std::sync::atomic::Ordering::Relaxed)
    {
        let now = look();
        if seen && now.is_empty() {
            break;
        }
        seen |= !now.is_empty();
        if decoded.load(std::sync::atomic::Ordering::Relaxed) >= STREAMING_AFTER {
            // A stage's first look once frames flow (one started later, a restart, from
            // its own first look), and its last look while it lived.
            for (pid, r) in &now {
                early.entry(*pid).or_insert(*r);
            }
            late.extend(now);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (early, late)
}

/// Matches each decoded luma plane (W×H) with the camera's source frame (`refs`, played in
/// a loop) it is closest to — the one matched before or one of the next two, or, when none
/// of those is close (the first frame), any — and checks what a camera's stream must show:
/// mean PSNR-Y at least 38 dB, in order (never back, at most one image skipped to
/// latest-wins), and the camera's sequence, not one frame again and again: libcamera's
/// virtual camera shows each image for 4 captures in a row (measured: runs of 4), so about
/// one advance per 4 frames. `what` names the camera in messages.
fn check_camera_frames(what: &str, lumas: &[Vec<u8>], refs: &[Vec<u8>], gaps: bool) {
    let n = refs.len();
    let mut matched: Vec<(usize, f64)> = vec![];
    for y in lumas {
        let best_of = |c: &mut dyn Iterator<Item = usize>| {
            c.map(|i| (i, psnr(y, &refs[i])))
                .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a })
        };
        let mut best = match matched.last() {
            Some(&(prev, _)) => best_of(&mut (0..3).map(|k| (prev + k) % n)),
            None => (0, f64::MIN),
        };
        if best.1 < 30.0 {
            best = best_of(&mut (0..n));
        }
        matched.push(best);
    }
    let mean = matched.iter().map(|m| m.1).sum::<f64>() / matched.len().max(1) as f64;
    let worst = matched.iter().map(|m| m.1).fold(f64::MAX, f64::min);
    let steps: Vec<usize> = matched
        .windows(2)
        .map(|w| (w[1].0 + n - w[0].0) % n)
        .collect();
    let advances = steps.iter().filter(|&&s| s > 0).count();
    eprintln!(
        "{what}: {} frames, PSNR-Y against the camera's frames mean {mean:.2} dB, worst \
         {worst:.2} dB; {advances} advances to the next image; first matches {:?}",
        lumas.len(),
        matched.iter().take(12).map(|m| m.0).collect::<Vec<_>>()
    );
    assert!(mean >= 38.0, "{what}: mean PSNR-Y {mean:.2} dB < 38");
    // `gaps`: frames ffmpeg lost or concealed (UDP, large frames) may skip images or
    // repeat one; still never backwards (a step of more than half the loop).
    let max_step = if gaps { n / 2 - 1 } else { 2 };
    assert!(
        steps.iter().all(|&s| s <= max_step),
        "{what}: frames out of order (steps between matched source frames): {steps:?}"
    );
    let slack = if gaps { lumas.len() / 10 } else { 8 };
    assert!(
        advances * 4 + slack >= lumas.len(),
        "{what}: {advances} advances over {} frames: {steps:?}",
        lumas.len()
    );
}

/// Column range `x0..x0 + w` of each `stride`-wide luma plane, as W×H planes.
fn crop(lumas: &[Vec<u8>], stride: usize, x0: usize) -> Vec<Vec<u8>> {
    lumas
        .iter()
        .map(|y| {
            y.chunks_exact(stride)
                .flat_map(|row| &row[x0..x0 + W])
                .copied()
                .collect()
        })
        .collect()
}

#[test]
fn the_virtual_camera_streams_to_ffmpeg_in_order_with_psnr_above_38() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((root, bins)) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let refs = jpeg_frames(&dir.path().join("frames"), 0, 120);
    let yaml = cameras_yaml(&[&dir.path().join("frames")]);
    let r = stream(
        &root,
        &bins,
        dir.path(),
        &yaml,
        &["--source", "libcamera:0"],
        &["--source", "pattern"],
        W,
        600,
        12,
        99,
    );
    eprintln!("600 frames in {:?}", r.took);
    check_camera_frames("libcamera:0", &r.lumas, &refs, false);
    assert!(
        r.summary["stereo_pair_skew_ms"].is_null(),
        "one camera has no pair skew: {}",
        r.summary
    );
    // 600 frames at 60 fps: the camera was paced (FrameDurationLimits), ~10 s.
    assert!(
        r.took >= Duration::from_secs(9),
        "600 frames in {:?}: not paced at 60 fps",
        r.took
    );
}

#[test]
fn two_virtual_cameras_stream_side_by_side_each_half_showing_its_camera() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((root, bins)) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Two cameras of different content: the clip's first 60 frames and its frames 300-359.
    let left = jpeg_frames(&dir.path().join("left"), 0, 60);
    let right = jpeg_frames(&dir.path().join("right"), 300, 60);
    let yaml = cameras_yaml(&[&dir.path().join("left"), &dir.path().join("right")]);
    let r = stream(
        &root,
        &bins,
        dir.path(),
        &yaml,
        &[
            "--stereo",
            "--source",
            "libcamera:0",
            "--source-right",
            "libcamera:1",
        ],
        &["--stereo", "--source", "pattern"],
        2 * W,
        300,
        // x264 on 2560x720 at 60 fps on this 2-CPU machine, next to the background aarch64
        // build: a CI run lost 31 of 300 to latest-wins (encode p99 43 ms). The point here
        // is which camera each half shows (ffmpeg once decoded 283 of 295 of these 2560x720
        // frames from UDP).
        60,
        90,
    );
    assert!(
        r.stderr.contains("libcamera:0") && r.stderr.contains("libcamera:1"),
        "{}",
        r.stderr
    );
    check_camera_frames(
        "left half, libcamera:0",
        &crop(&r.lumas, 2 * W, 0),
        &left,
        true,
    );
    check_camera_frames(
        "right half, libcamera:1",
        &crop(&r.lumas, 2 * W, W),
        &right,
        true,
    );
    // The pair skew (the two SensorTimestamps apart) of every frame sent, in the summary.
    // Each camera is paced at 60 fps on its own, so a pair is at most about one frame
    // interval apart, unless a request waited while the source took the other camera's.
    let skew = &r.summary["stereo_pair_skew_ms"];
    eprintln!("stereo pair skew (ms): {skew}");
    let sent = summary_field(r.summary.to_string().as_bytes(), "frames.sent").unwrap();
    assert_eq!(skew["frames"].as_u64(), Some(sent), "{skew}");
    let (p50, max) = (skew["p50"].as_f64().unwrap(), skew["max"].as_f64().unwrap());
    assert!(
        (0.0..=17.0).contains(&p50) && p50 <= max,
        "pair skew p50 {p50} ms, max {max} ms"
    );
    assert!(
        r.stderr.contains("stereo pair skew"),
        "no skew row in the latency table: {}",
        r.stderr
    );
}

#[test]
fn quick_bench_measures_the_configured_libcamera_camera() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((root, bins)) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    jpeg_frames(&dir.path().join("frames"), 0, 8);
    let yaml = cameras_yaml(&[&dir.path().join("frames")]);
    let cfg = dir.path().join("camera.toml");
    std::fs::write(&cfg, "[source]\nuri = \"libcamera:0\"\nfps = 60\n").unwrap();
    let out = in_root(
        &root,
        dir.path(),
        &yaml,
        &bins.join("quick-bench"),
        &[
            "--quick",
            "--json",
            "--ip",
            "127.0.0.1",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "quick-bench printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let cam = &doc["camera"];
    eprintln!("camera section: {cam}");
    assert_eq!(cam["status"], "measured", "{cam}\n{stderr}");
    assert_eq!(cam["device"], "libcamera:0", "{cam}");
    // Paced at 60 fps (the virtual camera does not honour FrameDurationLimits: the source
    // paces it), so frames 16.7 ms apart; the capture time is the sensor timestamp, so
    // capture -> delivered is the copy and the hand-over, not the clocks' offset.
    let interval = cam["interval"]["p50"].as_f64().unwrap();
    assert!(
        (15.0..18.5).contains(&interval),
        "interval p50 {interval} ms"
    );
    // The typical frame within 5 ms (a wrong clock domain would be off by seconds or
    // more); the worst of the 60 within 50 ms: one scheduling stall of this shared VM (a
    // CI run measured 23.8 ms once, p50 1.2 ms) is not the camera path's.
    let latency = &cam["capture_latency"];
    let (p50, p99) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
    );
    assert!((0.0..5.0).contains(&p50), "capture latency p50 {p50} ms");
    assert!((0.0..50.0).contains(&p99), "capture latency p99 {p99} ms");
    assert!(
        schema_violations("quick-bench.schema.json", &doc).is_empty(),
        "{doc}"
    );
}
