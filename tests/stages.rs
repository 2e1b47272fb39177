//! The stages are separate processes with the configured CPU affinity and, as root,
//! SCHED_FIFO at the configured priorities with locked memory; signals end everything
//! cleanly; a second live instance is refused.

mod common;
use common::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vr_stream::latency::FrameRecord;

/// One stream at a time: every test here runs its realtime stages on the same CPU at the
/// same SCHED_FIFO priorities, and two instances at once preempt each other (seen in
/// fresh-clone CI: the end-of-file test's encoder lost a frame at the ring while another
/// test's camera stage, FIFO 90, ran on CPU 1).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn proc_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap()
        .trim()
        .to_string()
}

/// (policy, rt_priority) from /proc/PID/stat fields 41 and 40 (proc(5)).
fn sched_of(pid: u32) -> (u32, u32) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state).
    (f[41 - 3].parse().unwrap(), f[40 - 3].parse().unwrap())
}

fn online_cpus() -> u32 {
    std::thread::available_parallelism().unwrap().get() as u32
}

#[test]
fn stages_are_pinned_realtime_processes_and_sigterm_cleans_up() {
    let _serial = serial();
    let inst = instance("stages");
    let port = free_port_pair().to_string();
    // The three realtime stages only (the web stage is SCHED_OTHER: tests/web.rs).
    let mut sup = Command::new(bin())
        .args([
            "--source",
            "pattern",
            "--width",
            "320",
            "--height",
            "240",
            "--port",
            &port,
            "--sdp",
            "",
            "--instance",
            &inst,
            "--no-web",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = sup.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut stages = vec![];
    let t0 = Instant::now();
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("supervisor output");
        if let Some(rest) = l.strip_prefix("vr-stream: stage ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            stages.push((w[0].to_string(), w[2].parse::<u32>().unwrap()));
        }
        if l.contains("streaming") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stages.len(), 3, "{stages:?}");
    let mut pids: Vec<u32> = stages.iter().map(|s| s.1).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three distinct processes");
    assert!(!pids.contains(&sup.id()));
    let cfg = vr_stream::config::load(&[]).unwrap();
    let root = nix::unistd::geteuid().is_root();
    let encode_set = {
        let mut v: Vec<usize> = vr_setup::cpus::CpuList::parse(&cfg.stages.encode.cpus)
            .unwrap()
            .iter()
            .map(|c| c as usize % online_cpus() as usize)
            .collect();
        v.sort();
        v.dedup();
        // Mapped onto fewer CPUs: the housekeeping CPUs (stages.web.cpus) are left out
        // while any other remains.
        let configured: Vec<usize> = vr_setup::cpus::CpuList::parse(&cfg.stages.encode.cpus)
            .unwrap()
            .iter()
            .map(|c| c as usize)
            .collect();
        if v != configured {
            let house: Vec<usize> = vr_setup::cpus::CpuList::parse(&cfg.stages.web.cpus)
                .unwrap()
                .iter()
                .map(|c| c as usize)
                .collect();
            if v.iter().any(|c| !house.contains(c)) {
                v.retain(|c| !house.contains(c));
            }
        }
        v
    };
    // Kernel CPU list form, as in Cpus_allowed_list (rt's formatter, unit-tested there).
    let list_text = |v: &[usize]| vr_stream::rt::cpu_list_text(v);
    for (name, pid) in &stages {
        let (cpus, priority) = match name.as_str() {
            "camera" => (
                list_text(&[cfg.stages.camera.cpu as usize % online_cpus() as usize]),
                cfg.stages.camera.priority,
            ),
            "encode" => (list_text(&encode_set), cfg.stages.encode.priority),
            "network" => (
                list_text(&[cfg.stages.network.cpu as usize % online_cpus() as usize]),
                cfg.stages.network.priority,
            ),
            other => panic!("unknown stage {other}"),
        };
        assert_eq!(
            proc_field(*pid, "Cpus_allowed_list:"),
            cpus,
            "stage {name} affinity"
        );
        if root {
            assert_eq!(
                sched_of(*pid),
                (1, priority as u32),
                "stage {name}: SCHED_FIFO at its priority"
            );
            let vmlck: u64 = proc_field(*pid, "VmLck:")
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(vmlck > 0, "stage {name}: VmLck {vmlck}");
            // No transparent huge pages: khugepaged would collapse x264's MADV_HUGEPAGE
            // buffers while the stage streams (rt::apply). Under qemu-user the status is
            // qemu's own process, which forwards no prctl(PR_SET_THP_DISABLE) state.
            let qemu = std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|e| e.to_string_lossy().contains("qemu"));
            if !qemu {
                assert_eq!(
                    proc_field(*pid, "THP_enabled:"),
                    "0",
                    "stage {name}: THP disabled (PR_SET_THP_DISABLE)"
                );
            }
        }
        if name == "encode" {
            // Every thread of the encode stage, x264's slice threads included: inside the
            // set, SCHED_FIFO at the stage's priority. One slice thread per CPU of the set
            // (encoder.threads = 0), plus the stage's own thread.
            let tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            if encode_set.len() > 1 {
                assert!(
                    tasks.len() > encode_set.len(),
                    "encode stage has {} threads for {} slices",
                    tasks.len(),
                    encode_set.len()
                );
            }
            // Under qemu-user (scripts/test-aarch64.sh) the process also has qemu's own
            // helper threads (its RCU thread, started before the stage runs): they are not
            // the stage's and keep qemu's affinity, so SCHED_OTHER ones are skipped there,
            // and at least the stage's thread plus one per slice must be SCHED_FIFO.
            let qemu = std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|e| e.to_string_lossy().contains("qemu"));
            let mut fifo = 0;
            let n_tasks = tasks.len();
            for tid in tasks {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
                let allowed = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .unwrap()
                    .trim()
                    .to_string();
                // qemu's own helper threads (SCHED_OTHER, started before the stage pinned
                // itself) keep qemu's affinity: not the stage's threads.
                if root && qemu && sched_of(tid).0 == 0 {
                    continue;
                }
                assert_eq!(allowed, cpus, "encode thread {tid} affinity");
                if root {
                    assert_eq!(
                        sched_of(tid),
                        (1, priority as u32),
                        "encode thread {tid}: SCHED_FIFO {priority}"
                    );
                    fifo += 1;
                } else {
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "the encode threads' SCHED_FIFO check needs root (CI runs as root)"
                    );
                }
            }
            if root {
                let want = if encode_set.len() > 1 {
                    encode_set.len() + 1
                } else {
                    1
                };
                assert!(
                    fifo >= want,
                    "{fifo} of {n_tasks} encode threads SCHED_FIFO, want {want}"
                );
            }
        }
    }
    // A second instance of the same name is refused, naming the running one.
    let out = run_vr(
        &[
            "--source",
            "pattern",
            "--port",
            &port,
            "--sdp",
            "",
            "--instance",
            &inst,
        ],
        Duration::from_secs(10),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("in use by running process"),
        "{e}"
    );

    let t = Instant::now();
    Command::new("kill")
        .args(["-TERM", &sup.id().to_string()])
        .status()
        .unwrap();
    let st = loop {
        if let Some(st) = sup.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "supervisor did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(st.success(), "{st:?}");
    assert!(processes_of(&inst).is_empty(), "{:?}", processes_of(&inst));
    assert!(
        leftover_segments(&inst).is_empty(),
        "{:?}",
        leftover_segments(&inst)
    );
}

#[test]
fn end_of_file_ends_the_stream_with_exit_0_and_latency_log() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let y4m = dir.path().join("small.y4m");
    // 30 fps: every frame must reach the log, so the encoder gets 33 ms per frame (at 120
    // fps, one stall of 8 ms on this 2-CPU VM without isolated CPUs lost a frame to
    // latest-wins now and then).
    let mut bytes = b"YUV4MPEG2 W64 H48 F30:1 Ip C420jpeg\n".to_vec();
    for i in 0..30u8 {
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend(std::iter::repeat_n(i.wrapping_mul(8), 64 * 48 * 3 / 2));
    }
    std::fs::write(&y4m, &bytes).unwrap();
    let inst = instance("eof");
    let csv = dir.path().join("lat.csv");
    let port = free_port_pair().to_string();
    let out = run_vr(
        &[
            "--source",
            &format!("file:{}", y4m.display()),
            "--port",
            &port,
            "--sdp",
            "",
            "--instance",
            &inst,
            "--latency-log",
            csv.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    // Every frame: the latency log below has one row per frame.
    assert_frames_accounted(&out.stdout, 30, 0, &e);
    assert!(e.contains("total (capture->last packet)"), "{e}");
    let log = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 31);
    assert!(lines[0].starts_with("frame_id,capture_ns"));
    assert!(lines[0].ends_with(",keyframe,pair_skew_ns"), "{}", lines[0]);
    for (i, l) in lines[1..].iter().enumerate() {
        // One camera: the last column (the stereo pair skew) is empty.
        assert!(l.ends_with(','), "{l}");
        let r = FrameRecord::parse_csv_line(l).unwrap_or_else(|| panic!("{l}"));
        assert_eq!(r.pair_skew_ns, None);
        let v = r.to_array();
        assert_eq!(v[0], i as u64);
        // capture <= published <= encode start <= encode end <= first sent <= last sent
        assert!(v[1..7].windows(2).all(|p| p[0] <= p[1]), "{l}");
    }
    assert!(leftover_segments(&inst).is_empty());
}

/// Runs vr-stream as user nobody (no CAP_SYS_NICE, RLIMIT_RTPRIO 0, small RLIMIT_MEMLOCK).
/// None when this test cannot switch user (not root, no setpriv, binary not reachable).
fn run_unprivileged(args: &[&str]) -> Option<std::process::Output> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let base = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    let probe = Command::new("setpriv")
        .args(base)
        .arg(bin())
        .arg("--version")
        .output()
        .ok()?;
    if !probe.status.success() {
        return None;
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(base).arg(bin()).args(args).arg("--json");
    Some(cmd.stdin(Stdio::null()).output().unwrap())
}

#[test]
fn missing_realtime_privileges_warn_once_or_refuse_with_strict_rt() {
    let _serial = serial();
    let inst = instance("noprivs");
    let port = free_port_pair().to_string();
    let args = [
        "--source",
        "pattern",
        "--width",
        "320",
        "--height",
        "240",
        "--frames",
        "30",
        "--port",
        &port,
        "--sdp",
        "",
        "--instance",
        &inst,
    ];
    let Some(out) = run_unprivileged(&args) else {
        skip("needs root and setpriv to run as an unprivileged user");
        return;
    };
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    let warnings: Vec<&str> = e.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "one warning, not one per stage: {e}");
    assert!(
        warnings[0].contains("RLIMIT_RTPRIO") && warnings[0].contains("setup --apply"),
        "{e}"
    );
    assert!(e.contains("policy SCHED_OTHER"), "{e}");
    assert_frames_accounted(&out.stdout, 30, 2, &e);

    let mut strict = args.to_vec();
    strict.push("--strict-rt");
    let out = run_unprivileged(&strict).unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{e}");
    let errors: Vec<&str> = e.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{e}");
    assert!(
        errors[0].contains("--strict-rt") && errors[0].contains("RLIMIT_RTPRIO"),
        "{e}"
    );
    assert!(leftover_segments(&inst).is_empty() && processes_of(&inst).is_empty());
}

#[test]
fn sigint_and_sighup_stop_everything_within_a_second() {
    let _serial = serial();
    for sig in ["INT", "HUP"] {
        let inst = instance(&format!("sig{sig}"));
        let port = free_port_pair().to_string();
        let mut sup = Command::new(bin())
            .args([
                "--source",
                "pattern",
                "--width",
                "160",
                "--height",
                "120",
                "--port",
                &port,
                "--sdp",
                "",
                "--instance",
                &inst,
                "--no-web",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = sup.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        while !rx
            .recv_timeout(Duration::from_secs(10))
            .expect("supervisor output")
            .contains("streaming")
        {}
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(processes_of(&inst).len(), 4, "supervisor + 3 stages");
        let t = Instant::now();
        Command::new("kill")
            .args([&format!("-{sig}"), &sup.id().to_string()])
            .status()
            .unwrap();
        let st = loop {
            if let Some(st) = sup.try_wait().unwrap() {
                break st;
            }
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "SIG{sig}: supervisor did not stop"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "SIG{sig}: stop took {:?}",
            t.elapsed()
        );
        assert!(st.success(), "SIG{sig}: {st:?}");
        assert!(
            processes_of(&inst).is_empty(),
            "SIG{sig}: {:?}",
            processes_of(&inst)
        );
        assert!(
            leftover_segments(&inst).is_empty(),
            "SIG{sig}: {:?}",
            leftover_segments(&inst)
        );
        // The summary is printed on the way out.
        let mut rest = vec![];
        while let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
            rest.push(l);
        }
        assert!(
            rest.iter().any(|l| l.contains("frames captured")),
            "SIG{sig}: {rest:?}"
        );
    }
}

#[test]
fn bitrate_and_idr_requests_reach_the_running_encoder() {
    let _serial = serial();
    use vr_stream::shm::bitstream::BitstreamQueue;
    use vr_stream::shm::control::Control;
    let inst = instance("ctl");
    let port = free_port_pair().to_string();
    // No periodic IDR: the only ones are the first frame's and the forced one.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nokey.toml");
    std::fs::write(&cfg, "[encoder]\nkeyint = 10000\n").unwrap();
    let mut sup = Command::new(bin())
        .args([
            "--source",
            "pattern",
            "--width",
            "640",
            "--height",
            "360",
            "--bitrate",
            "4000",
            "--port",
            &port,
            "--sdp",
            "",
            "--instance",
            &inst,
        ])
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_, _, bits_name) = vr_stream::stage::segment_names(&inst);
    let ctl = wait_streaming(&inst);
    let queue = BitstreamQueue::open(&bits_name, vr_stream::stage::queue_capacity(4000)).unwrap();
    // Bytes per frame over one second at a steady state.
    let rate = |ctl: &Control| {
        let e0 = ctl.stats().encoded();
        std::thread::sleep(Duration::from_secs(1));
        let e1 = ctl.stats().encoded();
        (e1.bytes - e0.bytes) as f64 / (e1.frames - e0.frames).max(1) as f64
    };
    // Wait for the condition, not a fixed time: under qemu-user (test-aarch64.sh) the
    // emulated encoder may take over a second for its first frames.
    let wait_until = |what: &str, ok: &dyn Fn() -> bool| {
        let t0 = std::time::Instant::now();
        while !ok() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_until("the first encoded frames", &|| {
        ctl.stats().encoded().frames >= 10
    });
    let before = rate(&ctl);
    let idr0 = ctl.stats().encoded().idr;
    let frames0 = ctl.stats().encoded().frames;
    queue.request_idr();
    ctl.request_bitrate(800);
    // The forced IDR comes with the next frame; 30 frames later no second one may follow.
    wait_until("30 frames after the IDR request", &|| {
        ctl.stats().encoded().frames >= frames0 + 30
    });
    let idr1 = ctl.stats().encoded().idr;
    assert_eq!(
        ctl.stats().info().bitrate_kbps,
        800,
        "the bitrate in force is reported"
    );
    let after = rate(&ctl);
    Command::new("kill")
        .args(["-TERM", &sup.id().to_string()])
        .status()
        .unwrap();
    assert!(sup.wait().unwrap().success());
    assert_eq!(
        (idr0, idr1),
        (1, 2),
        "the first IDR, then exactly the forced one"
    );
    assert!(
        after * 2.0 < before,
        "4000 -> 800 kbit/s: {before:.0} -> {after:.0} bytes per frame"
    );
    assert!(leftover_segments(&inst).is_empty());
}
