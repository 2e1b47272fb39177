//! Bad input: a one-line error naming the input and what is allowed, a non-zero exit, no
//! panic, and no leftover /dev/shm segment or child process.

mod common;
use common::*;
use std::time::Duration;

fn check(tag: &str, args: &[&str], needles: &[&str]) {
    check_fed(tag, args, None, needles)
}

/// [`check`] with `stdin`'s bytes written into vr-stream's standard input through a pipe
/// (by `cat`).
fn check_fed(tag: &str, args: &[&str], stdin: Option<&[u8]>, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut cat = stdin.map(|bytes| {
        let p = dir.path().join("in");
        std::fs::write(&p, bytes).unwrap();
        std::process::Command::new("cat")
            .arg(&p)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    });
    let stdin = match cat.as_mut() {
        Some(c) => std::process::Stdio::from(c.stdout.take().unwrap()),
        None => std::process::Stdio::null(),
    };
    let inst = instance(tag);
    let port = free_port_pair().to_string();
    let mut all = vec!["--instance", &inst, "--sdp", ""];
    if !args.contains(&"--port") {
        all.extend_from_slice(&["--port", &port]);
    }
    all.extend_from_slice(args);
    let out = run_vr_stdin(&all, Duration::from_secs(20), stdin);
    if let Some(mut c) = cat {
        let _ = c.wait();
    }
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{tag}: expected failure, got success: {e}"
    );
    assert!(!e.contains("panicked"), "{tag}: panic: {e}");
    let err_lines: Vec<&str> = e.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(
        err_lines.len(),
        1,
        "{tag}: exactly one error line expected: {e}"
    );
    for n in needles {
        assert!(
            err_lines[0].contains(n),
            "{tag}: error line lacks {n:?}: {}",
            err_lines[0]
        );
    }
    // `--json` (run_vr_stdin): the same error as a document on stdout, unless the command
    // line itself was refused (exit 2, before anything ran).
    if out.status.code() != Some(2) {
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "{tag}: no --json document ({err}): {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let bad = schema_violations("vr-stream-summary.schema.json", &doc);
        assert!(bad.is_empty(), "{tag}: {bad}{doc}");
        let text = doc["error"].as_str().unwrap_or_default();
        assert!(
            !text.is_empty() && err_lines[0].ends_with(text),
            "{tag}: --json error {text:?} is not the error line {:?}",
            err_lines[0]
        );
    }
    assert!(
        leftover_segments(&inst).is_empty(),
        "{tag}: segments left {:?}",
        leftover_segments(&inst)
    );
    assert!(
        processes_of(&inst).is_empty(),
        "{tag}: processes left {:?}",
        processes_of(&inst)
    );
}

#[test]
fn bad_pipes() {
    let fb = 64 * 32 * 3 / 2;
    // Two whole frames and 100 bytes of a third.
    let raw = [
        "--source",
        "-",
        "--pipe-format",
        "i420",
        "--width",
        "64",
        "--height",
        "32",
    ];
    check_fed(
        "pipetrunc",
        &raw,
        Some(&vec![16u8; 2 * fb + 100]),
        &[
            "source -",
            "frame 2 ends after 100 of 3072 bytes",
            "byte offset 6244",
        ],
    );
    // Bare frames where a Y4M stream is expected (the default format).
    check_fed(
        "pipenohdr",
        &["--source", "-"],
        Some(&vec![16u8; 3 * fb]),
        &[
            "source -",
            "missing YUV4MPEG2 signature",
            "--pipe-format i420",
        ],
    );
    // A Y4M stream given as bare frames.
    let mut y4m = b"YUV4MPEG2 W64 H32 F30:1\nFRAME\n".to_vec();
    y4m.extend(vec![16u8; fb]);
    check_fed(
        "pipeasraw",
        &raw,
        Some(&y4m),
        &["source -", "give --pipe-format y4m"],
    );
    check(
        "pipefmt",
        &["--source", "-", "--pipe-format", "nv12"],
        &["source.pipe_format", "allowed: y4m"],
    );
    check(
        "pipestereo",
        &["--source", "-", "--stereo", "--source-right", "pattern"],
        &["source.stereo", "cannot be one eye"],
    );
}

#[test]
fn bad_sources() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let f = |n: &str| format!("file:{}", p(n).display());
    // Header fine, second frame cut short.
    let mut trunc = b"YUV4MPEG2 W64 H32 F30:1\nFRAME\n".to_vec();
    trunc.extend(std::iter::repeat_n(0u8, 64 * 32 * 3 / 2));
    trunc.extend_from_slice(b"FRAME\nabc");
    std::fs::write(p("trunc.y4m"), &trunc).unwrap();
    std::fs::write(p("junk.y4m"), b"this is not video\n").unwrap();
    std::fs::write(p("odd.y4m"), b"YUV4MPEG2 W641 H480 F30:1\n").unwrap();
    std::fs::write(p("c444.y4m"), b"YUV4MPEG2 W640 H480 F30:1 C444\n").unwrap();
    std::fs::write(p("empty.y4m"), b"").unwrap();

    check(
        "missing",
        &["--source", &f("nope.y4m")],
        &["nope.y4m", "No such file"],
    );
    check(
        "trunc",
        &["--source", &f("trunc.y4m")],
        &["trunc.y4m", "frame 1 is truncated"],
    );
    check(
        "junk",
        &["--source", &f("junk.y4m")],
        &["junk.y4m", "not a Y4M file"],
    );
    check(
        "odd",
        &["--source", &f("odd.y4m")],
        &["odd.y4m", "641x480", "even"],
    );
    check(
        "c444",
        &["--source", &f("c444.y4m")],
        &["c444.y4m", "C444", "allowed"],
    );
    check(
        "empty",
        &["--source", &f("empty.y4m")],
        &["empty.y4m", "empty file"],
    );
    check(
        "uri",
        &["--source", "rtsp://cam"],
        &[
            "source.uri",
            "allowed: pattern, file:PATH.y4m, - (standard input), pipe:PATH",
        ],
    );
    check(
        "nodev",
        &["--source", "v4l2:/dev/video99"],
        &["/dev/video99"],
    );
    #[cfg(not(feature = "libcamera"))]
    check(
        "libcamera",
        &["--source", "libcamera:0"],
        &["libcamera:0", "--features libcamera"],
    );
    check(
        "oddsize",
        &["--source", "pattern", "--width", "641"],
        &["source.width", "641", "even"],
    );
    std::fs::write(p("small.y4m"), b"YUV4MPEG2 W64 H32 F30:1\n").unwrap();
    check(
        "stereo-mismatch",
        &[
            "--stereo",
            "--source",
            &f("small.y4m"),
            "--source-right",
            "pattern",
            "--width",
            "320",
            "--height",
            "240",
        ],
        &[
            "stereo sources",
            "left is 64x32 at 30/1 fps, right is 320x240 at 60/1 fps",
        ],
    );
    check(
        "stereo-uri",
        &["--stereo", "--source-right", "rtsp://cam"],
        &["source.right_uri", "allowed"],
    );
}

#[test]
fn bad_network_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    check(
        "ip",
        &["--ip", "300.1.1.1"],
        &["stream.ip", "300.1.1.1", "IPv4 or IPv6"],
    );
    check(
        "ipname",
        &["--ip", "headset.local"],
        &["stream.ip", "headset.local"],
    );
    check(
        "port",
        &["--port", "70000"],
        &["--port", "70000", "1..=65534"],
    );
    check("port0", &["--port", "0"], &["--port", "0", "1..=65534"]);
    check("portx", &["--port", "abc"], &["--port", "abc"]);
    let k = cfg("key.toml", "[encoder]\nbitrat = 5000\n");
    check(
        "key",
        &["--config", &k],
        &["key.toml", "bitrat", "bitrate_kbps"],
    );
    let v = cfg("val.toml", "[stream]\npayload_size = 50\n");
    check(
        "val",
        &["--config", &v],
        &["stream.payload_size = 50", "200..=8900"],
    );
    let t = cfg("type.toml", "[stream]\nport = 70000\n");
    check(
        "type",
        &["--config", &t],
        &["type.toml", "stream.port", "70000"],
    );
    let s = cfg("syntax.toml", "[stream\nport = 1\n");
    check("syntax", &["--config", &s], &["syntax.toml"]);
    check(
        "nocfg",
        &["--config", "/nonexistent/vr.toml"],
        &["/nonexistent/vr.toml"],
    );
    check(
        "profile",
        &["--profile", "turbo"],
        &["turbo", "ultra_low, low, quality"],
    );
    check(
        "bitrate",
        &["--bitrate", "10"],
        &["encoder.bitrate_kbps = 10", "100..=200000"],
    );
    check("flag", &["--no-such-flag"], &["--no-such-flag"]);
    check(
        "backend",
        &["--encoder", "nvenc"],
        &["encoder.backend", "nvenc", "auto, x264, v4l2m2m"],
    );
    // No V4L2 M2M encoder on this machine: the device is named, with what to do instead.
    let d = cfg(
        "m2m.toml",
        "[encoder]\nbackend = \"v4l2m2m\"\ndevice = \"/dev/video91\"\n",
    );
    check(
        "m2m",
        &["--config", &d],
        &[
            "encoder.device /dev/video91: no such device",
            "encoder.backend = \"x264\"",
        ],
    );
    let d = cfg("dev.toml", "[encoder]\ndevice = \"video11\"\n");
    check(
        "m2mpath",
        &["--config", &d],
        &["encoder.device", "absolute device path"],
    );
    // Valid as an address, but a link-local IPv6 without a scope cannot be connected to:
    // the network stage fails while starting, and vr-stream names it.
    check(
        "stagefail",
        &["--ip", "fe80::1"],
        &["stage network failed to start", "fe80::1"],
    );
}

#[test]
fn print_config_shows_the_merged_result() {
    let out = run_vr(
        &[
            "--profile",
            "ultra_low",
            "--bitrate",
            "6000",
            "--print-config",
        ],
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let t = String::from_utf8_lossy(&out.stdout);
    let cfg = vr_stream::config::Config::from_toml(&t).unwrap();
    assert_eq!(cfg.encoder.bitrate_kbps, 6000);
    assert_eq!(cfg.source.buffers, 2);
    assert!(cfg.encoder.intra_refresh);
}
