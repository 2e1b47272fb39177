//! Helpers shared by the integration tests: the binary, the real clip, free ports, ffmpeg
//! as the independent receiver, and leak checks (processes, /dev/shm segments).
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../support/clip.rs"]
mod clip;
#[allow(unused_imports)] // each test or bench uses some of these helpers
pub use clip::clip;

/// The vr-stream binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vr-stream")
}

/// A test whose prerequisite (root, a tool) is missing: under `CI=true` it fails with
/// `reason`; elsewhere it says "skipped: reason" and the caller returns.
pub fn skip(reason: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!("{reason} (a missing prerequisite fails under CI)");
    }
    eprintln!("skipped: {reason}");
}

/// A unique instance name (segment prefix) for one test.
pub fn instance(tag: &str) -> String {
    format!("vrs-test-{tag}-{}", std::process::id())
}

/// An even UDP port on 127.0.0.1 whose next two ports are free too (RTP, RTCP, FEC).
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port() & !1;
        drop(s);
        if p > 1024
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p + 2)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port pair");
}

/// Waits until `child` (named `what` in failures) has bound every UDP port in `ports`:
/// fails the test if the child exits first (with its stderr, when piped) or after 10 s.
pub fn wait_bound(child: &mut Child, what: &str, ports: &[u16]) {
    let t0 = Instant::now();
    while !ports.iter().all(|&p| udp_bound(p)) {
        if let Some(st) = child.try_wait().unwrap() {
            let mut e = String::new();
            if let Some(err) = child.stderr.as_mut() {
                let _ = err.read_to_string(&mut e);
            }
            panic!("{what} exited with {st} before binding UDP {ports:?}: {e}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{what} did not bind UDP {ports:?} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// vr-receive on 127.0.0.1:`port` that prints its JSON summary when it ends (`--json
/// --interval 0`), with `extra` arguments after those; returned once it has bound the port
/// (stdout and stderr piped: read them with `wait_with_output`).
pub fn vr_receive_json(port: u16, extra: &[&str]) -> Child {
    let mut rx = Command::new(env!("CARGO_BIN_EXE_vr-receive"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--json", "--interval", "0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vr-receive");
    wait_bound(&mut rx, "vr-receive", &[port]);
    rx
}

/// Whether some process listens on UDP `port` (from /proc/net/udp and udp6).
pub fn udp_bound(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .any(|t| {
            t.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| format!("{a} ").ends_with(&needle))
            })
        })
}

/// ffmpeg's output options for the decoders in these tests: raw I420 on stdout, one
/// output frame per decoded frame (`passthrough`: no duplicates to fill gaps).
pub const FFMPEG_RAW_I420_OUT: [&str; 7] = [
    "-fps_mode",
    "passthrough",
    "-f",
    "rawvideo",
    "-pix_fmt",
    "yuv420p",
    "-",
];

/// Starts ffmpeg decoding the SDP at `sdp` to raw I420 on its stdout, and waits until it
/// listens on `port`.
pub fn start_ffmpeg(sdp: &Path, port: u16) -> Child {
    let mut child = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-protocol_whitelist",
            "file,udp,rtp",
        ])
        .args(["-reorder_queue_size", "0", "-i"])
        .arg(sdp)
        .args(FFMPEG_RAW_I420_OUT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg (apt-get install ffmpeg)");
    wait_bound(&mut child, "ffmpeg", &[port]);
    std::thread::sleep(Duration::from_millis(200));
    child
}

/// Sends SIGINT to a child (ffmpeg flushes and exits on it).
pub fn interrupt(child: &Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
}

/// [`for_each_frame`] on a thread, with the number of frames read so far (for
/// [`wait_settled`]).
pub fn spawn_frame_reader(
    out: impl Read + Send + 'static,
    frame_bytes: usize,
    mut f: impl FnMut(&[u8]) + Send + 'static,
) -> (
    std::thread::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let t = std::thread::spawn(move || {
        for_each_frame(out, frame_bytes, |frame| {
            f(frame);
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
    });
    (t, count)
}

/// Reads `frame_bytes`-sized frames from a reader until EOF, calling `f` on each.
pub fn for_each_frame(mut r: impl Read, frame_bytes: usize, mut f: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; frame_bytes];
    loop {
        let mut got = 0;
        while got < frame_bytes {
            match r.read(&mut buf[got..]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
        f(&buf);
    }
}

/// Runs vr-stream with `args` and `--json` to completion, with a time limit; the exit
/// summary is then on its stdout ([`summary_field`]).
pub fn run_vr(args: &[&str], limit: Duration) -> Output {
    run_vr_stdin(args, limit, Stdio::null())
}

/// [`run_vr`] with `stdin` as vr-stream's standard input (a pipe source).
pub fn run_vr_stdin(args: &[&str], limit: Duration, stdin: Stdio) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .arg("--json")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "vr-stream {args:?} did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Field `path` (dot-separated, e.g. `frames.sent`, `network.send_errors`) of the exit
/// summary that `vr-stream --json` printed on `stdout` (schemas/vr-stream-summary.schema.json;
/// [`run_vr`] passes `--json`), as a number. `None` when there is no summary or no such
/// number.
pub fn summary_field(stdout: &[u8], path: &str) -> Option<u64> {
    let doc: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    path.split('.')
        .try_fold(&doc, |v, k| v.get(k))
        .and_then(|v| v.as_u64())
}

/// Asserts from a run's exit summary (`stdout`, [`run_vr`]) that all `n` frames were
/// captured and each was either sent or dropped by latest-wins (ring or queue), at most
/// `max_drops` of them: the run went from the first frame to the last. A stage that stalls
/// for a frame interval (this VM: 8-12 ms now and then, even at SCHED_FIFO) rightly loses a
/// frame to a newer one, so a test whose point is not the drop count allows a few. `e`
/// (stderr) goes into the message.
pub fn assert_frames_accounted(stdout: &[u8], n: u64, max_drops: u64, e: &str) {
    let f = |k: &str| {
        summary_field(stdout, &format!("frames.{k}"))
            .unwrap_or_else(|| panic!("no frames.{k} in the summary: {e}"))
    };
    let (captured, sent, drops) = (f("captured"), f("sent"), f("ring_drops") + f("queue_drops"));
    assert_eq!(captured, n, "frames captured: {e}");
    assert_eq!(sent + drops, n, "frames sent + dropped: {e}");
    assert!(
        drops <= max_drops,
        "{drops} frames dropped (at most {max_drops}): {e}"
    );
}

/// The violations of `schemas/<schema>` (JSON Schema draft 2020-12) by `doc`, one per
/// line ("" when valid), found by the reference implementation, Python's `jsonschema`
/// (Debian's python3-jsonschema, scripts/install-deps.sh), run by /usr/bin/python3. The
/// schema itself is checked first.
pub fn schema_violations(schema: &str, doc: &serde_json::Value) -> String {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(schema);
    let check = "import json, sys\n\
        from jsonschema import Draft202012Validator as V\n\
        schema = json.load(open(sys.argv[1]))\n\
        V.check_schema(schema)\n\
        for e in V(schema).iter_errors(json.load(sys.stdin)):\n\
        \x20   print(e.message, 'at', '/'.join(map(str, e.absolute_path)))\n";
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(check)
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (scripts/install-deps.sh)");
    serde_json::to_writer(child.stdin.take().unwrap(), doc).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the schema check did not run (python3-jsonschema installed? scripts/install-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Segment files of `instance` left in /dev/shm.
pub fn leftover_segments(instance: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(instance))
                .collect()
        })
        .unwrap_or_default()
}

/// PIDs of live processes whose command line mentions `instance`.
pub fn processes_of(instance: &str) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        if cmd.contains(instance) && !zombie && pid != std::process::id() {
            out.push(pid);
        }
    }
    out
}

/// PSNR of two 8-bit planes, dB (100 for identical).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let se: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as i64 - y as i64).pow(2) as u64)
        .sum();
    if se == 0 {
        return 100.0;
    }
    let mse = se as f64 / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// Opens the control segment of instance `inst` once its stream is running (go given).
pub fn wait_streaming(inst: &str) -> vr_stream::shm::control::Control {
    let (ctl_name, _, _) = vr_stream::stage::segment_names(inst);
    let t0 = Instant::now();
    loop {
        if let Ok(c) =
            vr_stream::shm::control::Control::open(&ctl_name, &vr_stream::stage::stats_name(inst))
            && c.go()
        {
            return c;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{inst}: stream did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads decoded I420 pattern frames of `w × h` from `out` on a thread and returns the
/// frame ids drawn in them (None for a picture whose id cannot be read).
pub fn read_pattern_ids(
    out: impl Read + Send + 'static,
    w: u32,
    h: u32,
) -> std::thread::JoinHandle<Vec<Option<u64>>> {
    read_pattern_ids_counted(out, w, h).0
}

/// [`read_pattern_ids`], with the number of pictures read so far (for [`wait_settled`]).
pub fn read_pattern_ids_counted(
    out: impl Read + Send + 'static,
    w: u32,
    h: u32,
) -> (
    std::thread::JoinHandle<Vec<Option<u64>>>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let fb = (w * h * 3 / 2) as usize;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let t = std::thread::spawn(move || {
        let mut ids = vec![];
        for_each_frame(out, fb, |f| {
            ids.push(vr_stream::source::pattern::read_id(
                &f[..(w * h) as usize],
                w,
                h,
            ));
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        ids
    });
    (t, count)
}

/// Waits until a decoder has output everything it will before its end (the count of
/// [`read_pattern_ids_counted`] unchanged for 300 ms, 18 frame intervals at 60 fps), at
/// most 10 s.
pub fn wait_settled(count: &std::sync::atomic::AtomicUsize) {
    let t0 = Instant::now();
    let (mut last, mut since) = (usize::MAX, Instant::now());
    while since.elapsed() < Duration::from_millis(300) {
        let n = count.load(std::sync::atomic::Ordering::Relaxed);
        if n != last {
            (last, since) = (n, Instant::now());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the decoder's output never settled ({n} pictures)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (at most 20 s) until instance `ctl`'s network stage has sent `n` frames in all
/// (its latency records in the stats segment, which restarts do not reset).
pub fn wait_sent(ctl: &vr_stream::shm::control::Control, n: u64) {
    let t0 = Instant::now();
    while ctl.stats().records_written() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{} of {n} frames sent",
            ctl.stats().records_written()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A binary of another package of this workspace (`setup`, `dashboard`): next to
/// vr-stream's in the target directory, as `cargo test --workspace` builds it; built here
/// when a test runs on its own.
pub fn workspace_bin(name: &str, package: &str) -> PathBuf {
    let me = PathBuf::from(bin());
    let p = me.with_file_name(name);
    if !p.exists() {
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.args(["build", "-p", package, "--bin", name]);
        if me.to_string_lossy().contains("/release/") {
            c.arg("--release");
        }
        assert!(
            c.status().expect("run cargo build").success(),
            "cargo build -p {package}"
        );
    }
    p
}

/// A network namespace with a veth pair, removed on drop: host side 10.77.X.1, receiver
/// side 10.77.X.2 inside the namespace.
pub struct Netns {
    /// Namespace name.
    pub name: String,
    host_if: String,
    subnet: u8,
}

impl Netns {
    /// Creates it (None without the privileges to).
    pub fn new(tag: &str, subnet: u8) -> Option<Netns> {
        let name = format!("vrs-{tag}-{}", std::process::id());
        let host_if = format!("vh{subnet}-{}", std::process::id() % 100_000);
        let peer_if = format!("vp{subnet}-{}", std::process::id() % 100_000);
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !ok(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns {
            name,
            host_if,
            subnet,
        };
        let host = format!("10.77.{subnet}.1/24");
        let peer = format!("10.77.{subnet}.2/24");
        let n = ns.name.as_str();
        for cmd in [
            vec![
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &peer_if,
            ],
            vec!["link", "set", &peer_if, "netns", n],
            vec!["addr", "add", &host, "dev", &ns.host_if],
            vec!["link", "set", &ns.host_if, "up"],
            vec!["-n", n, "addr", "add", &peer, "dev", &peer_if],
            vec!["-n", n, "link", "set", &peer_if, "up"],
            vec!["-n", n, "link", "set", "lo", "up"],
        ] {
            assert!(ok(&cmd), "ip {cmd:?}");
        }
        Some(ns)
    }

    /// Waits (at most 10 s) until a process in the namespace listens on UDP `port`
    /// (`ss -Hlun` inside it): a receiver started there is ready for the stream.
    #[allow(dead_code)]
    pub fn wait_udp_bound(&self, port: u16) {
        let t0 = Instant::now();
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.name, "ss", "-Hlun"])
                .arg(format!("sport = :{port}"))
                .output()
                .expect("ip netns exec ss");
            if !out.stdout.is_empty() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nothing listens on UDP port {port} in {}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// ffmpeg inside the namespace decoding the SDP at `sdp` (its own reorder queue, no
    /// FEC, no PLI) to raw I420 on its stdout (piped; stderr discarded), returned once it
    /// listens on UDP `port` there.
    #[allow(dead_code)]
    pub fn ffmpeg(&self, sdp: &Path, port: u16) -> Child {
        let ns = ["netns", "exec", self.name.as_str()];
        let input = ["-protocol_whitelist", "file,udp,rtp", "-i"];
        let child = Command::new("ip")
            .args(ns)
            .args(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(input)
            .arg(sdp)
            .args(FFMPEG_RAW_I420_OUT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip netns exec ffmpeg");
        self.wait_udp_bound(port);
        child
    }

    /// Sets the receiver-side link up or down.
    #[allow(dead_code)]
    pub fn peer_link(&self, up: bool) {
        let peer_if = format!("vp{}-{}", self.subnet, std::process::id() % 100_000);
        let st = Command::new("ip")
            .args([
                "-n",
                &self.name,
                "link",
                "set",
                &peer_if,
                if up { "up" } else { "down" },
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

impl Netns {
    /// Runs `tc qdisc ARGS dev HOST_IF ...` on the host side of the pair (the direction
    /// host → namespace), e.g. `("replace", "root tbf rate 3mbit burst 20k latency 100ms")`;
    /// panics on failure.
    #[allow(dead_code)]
    pub fn tc_host(&self, verb: &str, args: &str) {
        let st = Command::new("tc")
            .args(["qdisc", verb, "dev", &self.host_if])
            .args(args.split_whitespace())
            .status()
            .expect("tc (apt-get install iproute2)");
        assert!(st.success(), "tc qdisc {verb} dev {} {args}", self.host_if);
    }

    /// A veth pair between this namespace (10.77.`subnet`.1) and `other` (10.77.`subnet`.2);
    /// it goes away with the namespaces.
    #[allow(dead_code)]
    pub fn link_to(&self, other: &Netns, subnet: u8) {
        let a = format!("vl{subnet}a-{}", std::process::id() % 100_000);
        let b = format!("vl{subnet}b-{}", std::process::id() % 100_000);
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let (aa, ba) = (
            format!("10.77.{subnet}.1/24"),
            format!("10.77.{subnet}.2/24"),
        );
        for cmd in [
            vec![
                "-n",
                &self.name,
                "link",
                "add",
                &a,
                "type",
                "veth",
                "peer",
                "name",
                &b,
                "netns",
                &other.name,
            ],
            vec!["-n", &self.name, "addr", "add", &aa, "dev", &a],
            vec!["-n", &self.name, "link", "set", &a, "up"],
            vec!["-n", &other.name, "addr", "add", &ba, "dev", &b],
            vec!["-n", &other.name, "link", "set", &b, "up"],
        ] {
            assert!(ok(&cmd), "ip {cmd:?}");
        }
    }

    /// Runs `nft` inside the namespace with `args`; panics on failure.
    #[allow(dead_code)]
    pub fn nft(&self, args: &str) {
        let st = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args.split_whitespace())
            .status()
            .expect("nft (apt-get install nftables)");
        assert!(st.success(), "nft {args}");
    }
}

/// Waits for a child to end (SIGINT after `limit`) and returns its stdout as JSON; the test
/// fails if it exits non-zero (with its stderr) or prints no JSON. `what` names it.
pub fn finish_json(mut c: Child, limit: Duration, what: &str) -> serde_json::Value {
    let t0 = Instant::now();
    while c.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            interrupt(&c);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = c.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}", e.lines().last().unwrap_or(""));
    assert!(out.status.success(), "{what} failed: {e}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "{what} --json: {err}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The pattern frame ids ffmpeg decodes from an Annex-B file of `w`x`h` frames, in order
/// (frames without a readable id left out).
pub fn decode_ids(file: &std::path::Path, w: u32, h: u32) -> Vec<u64> {
    let mut ff = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(file)
        .args(FFMPEG_RAW_I420_OUT)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let ids = read_pattern_ids(ff.stdout.take().unwrap(), w, h)
        .join()
        .unwrap();
    let _ = ff.wait();
    ids.into_iter().flatten().collect()
}
