//! The viewer page (issue: the headset end), in Debian's headless Chromium driven by
//! playwright-core (tests/web/view.mjs; `.ci/run` installs both): vr-stream serves the
//! page over HTTPS with its self-signed certificate, the page logs in with the PIN and
//! decodes the real clip from the WebSocket with WebCodecs; a wrong PIN gets 403 and no
//! media.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Whether the browser test can run here; on CI it must.
fn browser_ready() -> bool {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web");
    let ok = std::path::Path::new("/usr/bin/chromium").exists() && std::path::Path::new(dir).join("node_modules/playwright-core").exists();
    if !ok && std::env::var_os("CI").is_some() {
        panic!("chromium or tests/web/node_modules missing: .ci/run installs them (apt-get install chromium; npm install in tests/web)");
    }
    if !ok {
        eprintln!("SKIPPED: needs /usr/bin/chromium and `npm install` in tests/web");
    }
    ok
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts vr-stream with the page on `web_port`; returns it once it printed the banner.
/// `frames` of the real clip (looped) at 60 fps.
fn start_vr(tag: &str, web_port: u16, pin: &str, frames: u32, cert_dir: &std::path::Path) -> Vr {
    start_vr_with(tag, web_port, pin, frames, cert_dir, &format!("file:{}", clip().display()), &[])
}

/// [`start_vr`] with source `src` and `extra` arguments.
fn start_vr_with(tag: &str, web_port: u16, pin: &str, frames: u32, cert_dir: &std::path::Path, src: &str, extra: &[String]) -> Vr {
    let cfg = cert_dir.join("web.toml");
    std::fs::write(&cfg, format!("[web]\ncert_dir = \"{}\"\n", cert_dir.display())).unwrap();
    let port = free_port_pair().to_string();
    let (wp, fr, inst) = (web_port.to_string(), frames.to_string(), instance(tag));
    let mut child = Command::new(bin())
        .args(["--ip", "127.0.0.1", "--port", &port, "--sdp", "", "--source", src, "--loop", "--frames", &fr])
        .args(["--web-port", &wp, "--web-pin", pin, "--config", cfg.to_str().unwrap(), "--instance", &inst])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    let t0 = Instant::now();
    let mut line = String::new();
    while t0.elapsed() < Duration::from_secs(20) {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        banner.push_str(&line);
        if line.starts_with("vr-stream: viewer page ") {
            break;
        }
    }
    assert!(banner.contains("viewer page https://") && banner.contains(&format!("PIN {pin}")), "no banner: {banner}");
    // The rest of stderr, collected on a thread (the stage summaries come at the end).
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    // The server comes up with the network stage, just after the banner.
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", web_port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "nothing listens on {web_port}: {banner}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Vr { child, rest }
}

/// A running vr-stream and the thread collecting its stderr.
struct Vr {
    child: Child,
    rest: std::thread::JoinHandle<String>,
}

fn view(url: &str, secs: u32, mode: &str) -> serde_json::Value {
    let out = Command::new("node")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web"))
        .args(["view.mjs", url, &secs.to_string(), mode])
        .stdin(Stdio::null())
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "view.mjs failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("view.mjs output: {e}: {text}"))
}

/// Waits for vr-stream to end (SIGINT after 30 s); returns its stderr after the banner.
fn finish(vr: Vr) -> String {
    let Vr { mut child, rest } = vr;
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            interrupt(&child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = child.wait().unwrap();
    let err = rest.join().unwrap();
    assert!(st.success(), "vr-stream: {err}");
    err
}

#[test]
fn the_page_decodes_the_real_clip_over_the_websocket_with_webcodecs() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    // 15 s of the clip at 60 fps: Chromium's start, the login, 1 s to settle, 5 s measured.
    let vr = start_vr("webws", port, "246810", 900, dir.path());
    let v = view(&format!("https://127.0.0.1:{port}/?pin=246810&transport=ws"), 5, "stream");
    let err = finish(vr);
    eprintln!("page: {v}");
    let web_line = err.lines().find(|l| l.contains("[network]: web:")).unwrap_or("").to_string();
    eprintln!("{web_line}");
    assert_eq!(v["status"], "streaming", "{v}");
    assert_eq!(v["wrongPin"], 403, "{v}");
    assert_eq!(v["wsNoToken"], 403, "{v}");
    assert!(v["codec"].as_str().is_some_and(|c| c.starts_with("avc1.")), "{v}");
    let (n, first, last) = (v["windowDecoded"].as_u64().unwrap(), v["windowFirstId"].as_u64().unwrap(), v["windowLastId"].as_u64().unwrap());
    let sent = last - first + 1;
    // 5 s at 60 fps.
    assert!(sent >= 270, "only {sent} frame ids in 5 s: {v}");
    assert!(n * 100 >= sent * 95, "decoded {n} of {sent} frames in the window: {v}");
    assert_eq!(v["inOrder"], true);
    let p50 = v["latencyP50Ms"].as_f64().expect("latency measured on the page");
    assert!(p50 > 0.0 && p50 < 200.0, "capture -> decoded p50 {p50} ms: {v}");
    // The page's report reached vr-stream.
    assert!(web_line.contains("capture->decoded p50"), "{err}");
    // The key is kept private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("web-key.pem")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_wrong_pin_is_refused_with_403_and_no_media_flows() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let vr = start_vr("webpin", port, "135790", 360, dir.path());
    let v = view(&format!("https://127.0.0.1:{port}/?pin=999999"), 2, "refused");
    let err = finish(vr);
    eprintln!("page: {v}");
    assert_eq!(v["status"], "refused", "{v}");
    assert_eq!(v["received"], 0, "media reached a page without the PIN: {v}");
    assert_eq!(v["wrongPin"], 403, "{v}");
    assert_eq!(v["wsNoToken"], 403, "{v}");
    let web_line = err.lines().find(|l| l.contains("[network]: web:")).unwrap_or("");
    assert!(web_line.contains(" 0 access units to viewers"), "{err}");
    assert!(!web_line.contains(" 0 refused"), "refusals counted: {web_line}");
}

/// A Y4M file of one colour (ffmpeg's lavfi `color` source), 640x360 at 60 fps, 2 s.
fn colour_clip(dir: &std::path::Path, colour: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{colour}.y4m"));
    let st = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", &format!("color=c={colour}:s=640x360:r=60"), "-frames:v", "120", "-pix_fmt", "yuv420p"])
        .arg(&p)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    p
}

#[test]
fn enter_vr_in_the_emulated_quest_3_starts_a_session_with_two_views_and_stereo_goes_per_eye() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (red, blue) = (colour_clip(dir.path(), "red"), colour_clip(dir.path(), "blue"));
    let port = free_tcp_port();
    let extra = ["--stereo".to_string(), "--source-right".to_string(), format!("file:{}", blue.display())];
    let vr = start_vr_with("webxr", port, "112233", 900, dir.path(), &format!("file:{}", red.display()), &extra);
    let v = view(&format!("https://127.0.0.1:{port}/?pin=112233&xrprobe=1"), 2, "xr");
    finish(vr);
    eprintln!("page: {v}");
    assert!(v["error"].is_null(), "{v}");
    let xr = &v["xr"];
    assert_eq!(xr["views"], 2, "an immersive session with two views: {v}");
    assert!(xr["frames"].as_u64().unwrap() > 30, "{v}");
    let px = |eye: &str| -> Vec<u64> { xr["pixels"][eye].as_array().unwrap_or_else(|| panic!("no {eye} pixel: {v}")).iter().map(|x| x.as_u64().unwrap()).collect() };
    let (l, r) = (px("left"), px("right"));
    // Each eye's centre shows its own source: red on the left, blue on the right.
    assert!(l[0] > 150 && l[1] < 80 && l[2] < 80, "left eye {l:?} is not red");
    assert!(r[2] > 150 && r[0] < 80 && r[1] < 80, "right eye {r:?} is not blue");
}
