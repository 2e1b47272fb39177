//! `quick-bench` as a user runs it: `--quick --json` on this machine validated against the
//! repository's schema (every percentile set ordered and non-negative, sections that cannot
//! run here say why), the UDP echo round trip against `quick-bench --echo` on 127.0.0.1,
//! the human output within 80 columns, and the system checks against temporary Raspberry
//! Pi OS roots agreeing with `setup --check` row by row.

mod common;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn qb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_quick-bench"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The violations of schemas/quick-bench.schema.json by `doc` ([`common::schema_violations`]).
fn schema_violations(doc: &Value) -> String {
    common::schema_violations("quick-bench.schema.json", doc)
}

fn check_percentiles(v: &Value, path: &str, found: &mut usize) {
    match v {
        Value::Object(m) => {
            if let (Some(a), Some(b), Some(c)) = (m.get("p50"), m.get("p99"), m.get("max")) {
                let (a, b, c) = (
                    a.as_f64().unwrap(),
                    b.as_f64().unwrap(),
                    c.as_f64().unwrap(),
                );
                assert!(
                    0.0 <= a && a <= b && b <= c,
                    "{path}: p50 {a} p99 {b} max {c}"
                );
                assert!(
                    m.get("unit")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u == "us" || u == "ms"),
                    "{path}: unit"
                );
                *found += 1;
            }
            for (k, x) in m {
                check_percentiles(x, &format!("{path}.{k}"), found);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_percentiles(x, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn free_udp_port_pair() -> u16 {
    loop {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65000 && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn quick_json_validates_against_the_schema_and_times_the_echo() {
    let port = free_udp_port_pair();
    let mut echo = Kill(
        qb().args(["--echo", &format!("127.0.0.1:{}", port + 1)])
            .spawn()
            .unwrap(),
    );
    common::wait_bound(&mut echo.0, "quick-bench --echo", &[port + 1]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("[stream]\nport = {port}\n")).unwrap();
    let t = std::time::Instant::now();
    let o = qb()
        .args([
            "--quick",
            "--json",
            "--ip",
            "127.0.0.1",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let took = t.elapsed();
    let code = o.status.code().unwrap();
    let doc: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&o)));

    let errors = schema_violations(&doc);
    assert!(errors.is_empty(), "schema violations:\n{errors}");
    // The schema is not vacuous: a broken document fails it.
    let mut broken = doc.clone();
    broken["memory"]["copy"]["p50"] = Value::from(-1.0);
    assert!(!schema_violations(&broken).is_empty());

    let mut found = 0;
    check_percentiles(&doc, "$", &mut found);
    assert!(found >= 7, "percentile sets found: {found}"); // jitter x2, copy, ring, encode, send, rtt
    assert_eq!(
        doc["exit"].as_i64().unwrap(),
        code as i64,
        "exit status matches the document"
    );
    assert!(code == 0 || code == 1, "{}", text(&o));
    // What this machine cannot do is said, not failed.
    assert_eq!(doc["camera"]["status"], "not-measured");
    assert!(
        doc["camera"]["reason"]
            .as_str()
            .unwrap()
            .contains("/dev/video")
    );
    assert_eq!(doc["network"]["wifi"]["status"], "not-measured");
    assert_eq!(doc["detector"]["status"], "not-measured");
    // Measured here.
    for s in ["jitter", "ring", "encoder"] {
        assert_eq!(doc[s]["status"], "measured", "{s}: {}", doc[s]);
    }
    assert_eq!(
        doc["network"]["rtt"]["status"], "measured",
        "{}",
        doc["network"]
    );
    assert_eq!(doc["network"]["route"]["interface"], "lo");
    // ICMP echo to 127.0.0.1 (this runs as root in CI: a raw socket, unless
    // net.ipv4.ping_group_range admits root's group).
    let net = &doc["network"];
    assert_eq!(net["icmp"]["status"], "measured", "{net}");
    assert!(net["icmp"]["samples"].as_u64().unwrap() >= 95, "{net}");
    assert!(
        ["raw", "unprivileged"].contains(&net["icmp_socket"].as_str().unwrap()),
        "{net}"
    );
    let enc = &doc["encoder"];
    assert!(
        enc["achieved_kbps"].as_f64().unwrap() > 0.25 * enc["target_kbps"].as_f64().unwrap(),
        "{enc}"
    );
    let b = &doc["budget"];
    assert_eq!(b["target_ms"], 20);
    assert_eq!(
        b["within_target"].as_bool().unwrap(),
        b["total_p99_ms"].as_f64().unwrap() <= 20.0
    );
    assert_eq!(b["missing"], serde_json::json!(["capture"]));
    assert_eq!(
        doc["exit"] == 0,
        doc["system"]["tuned"] == true && b["within_target"] == true
    );
    assert!(took.as_secs() < 30, "--quick took {took:?}");
}

#[test]
fn text_output_fits_80_columns_and_says_why_sections_did_not_run() {
    // No echo on this port: the round trip is not measured, with the reason.
    let port = free_udp_port_pair();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("[stream]\nport = {port}\n")).unwrap();
    let o = qb()
        .args([
            "--quick",
            "--ip",
            "127.0.0.1",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "{}",
        text(&o)
    );
    for l in out.lines() {
        assert!(
            l.chars().count() <= 80,
            "line over 80 columns ({}): {l}",
            l.chars().count()
        );
    }
    for heading in [
        "1. System",
        "2. Timer",
        "3. Frame copy",
        "4. Frame ring",
        "5. Encoder",
        "6. Detector",
        "7. Camera",
        "8. Network",
        "9. Sender-side latency budget",
    ] {
        assert!(out.contains(heading), "{heading} missing:\n{out}");
    }
    assert!(
        out.contains("round trip: not measured: no echo reply"),
        "{out}"
    );
    assert!(out.contains("decode and display on the headset"), "{out}");
}

#[test]
fn bad_arguments_exit_2() {
    for (args, want) in [
        (vec!["--profile", "fastest"], "unknown profile 'fastest'"),
        (vec!["--ip", "300.1.1.1"], "300.1.1.1"),
        (
            vec!["--config", "/nonexistent.toml"],
            "--config /nonexistent.toml",
        ),
        (vec!["--echo", "nowhere"], "--echo \"nowhere\""),
    ] {
        let o = qb().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"));
    }
}

fn setup_bin() -> PathBuf {
    common::workspace_bin("setup", "vr-setup")
}

#[test]
fn system_checks_on_pi_roots_agree_with_setup_check() {
    let setup = setup_bin();
    let stock = vr_setup::fixture::STOCK_CMDLINE.as_bytes();
    let variants: [(&str, Option<&[u8]>, bool); 4] = [
        ("stock", Some(stock), false),
        ("stock, applied", Some(stock), true),
        ("two-line cmdline", Some(b"a=1\nb=2\n"), false),
        ("no boot partition, applied", None, true),
    ];
    for (name, cmdline, apply) in variants {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().to_str().unwrap();
        vr_setup::fixture::pi_root(d.path(), cmdline).unwrap();
        if apply {
            let o = Command::new(&setup)
                .args(["--root", r, "--user", "pi", "--apply"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{name}: {}", text(&o));
        }
        let s = Command::new(&setup)
            .args(["--root", r, "--user", "pi", "--check", "--json"])
            .output()
            .unwrap();
        let q = qb()
            .args(["--root", r, "--user", "pi", "--system-only", "--json"])
            .output()
            .unwrap();
        let sj: Value = serde_json::from_slice(&s.stdout).unwrap();
        let qj: Value = serde_json::from_slice(&q.stdout).unwrap();
        let verdicts = |rows: &Value| -> Vec<(String, String)> {
            rows.as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["what"].as_str().unwrap().to_string(),
                        r["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(
            verdicts(&sj["rows"]),
            verdicts(&qj["system"]["rows"]),
            "{name}"
        );
        assert_eq!(sj["tuned"], qj["system"]["tuned"], "{name}");
        assert_eq!(s.status.code(), q.status.code(), "{name}: same exit status");
        assert_eq!(
            sj["tuned"] == true,
            apply,
            "{name}: tuned exactly when applied"
        );
    }
}

/// `quick-bench --quick --json` pings a peer in a network namespace the test creates (the
/// kernel there answers ICMP echo, as a headset does) with no UDP echo running: the ICMP
/// round trip is measured and becomes the budget's network term. Then the same inside a
/// namespace whose `net.ipv4.ping_group_range` admits group 0, where the unprivileged ping
/// socket is used instead of a raw one.
#[test]
fn quick_bench_pings_a_namespace_peer_over_icmp() {
    let Some(ns) = common::Netns::new("qbping", 41) else {
        common::skip("needs root to create a network namespace");
        return;
    };
    let run = |prefix: &[&str], ip: &str| -> Value {
        let mut c = Command::new(
            prefix
                .first()
                .copied()
                .unwrap_or(env!("CARGO_BIN_EXE_quick-bench")),
        );
        if !prefix.is_empty() {
            c.args(&prefix[1..]).arg(env!("CARGO_BIN_EXE_quick-bench"));
        }
        let o = c.args(["--quick", "--json", "--ip", ip]).output().unwrap();
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&o)))
    };
    let doc = run(&[], "10.77.41.2");
    let net = &doc["network"];
    assert_eq!(net["icmp"]["status"], "measured", "{net}");
    assert!(net["icmp"]["samples"].as_u64().unwrap() >= 95, "{net}");
    assert!(net["icmp"]["p99"].as_f64().unwrap() < 50.0, "{net}");
    assert_eq!(
        net["rtt"]["status"], "not-measured",
        "no UDP echo there: {net}"
    );
    assert_eq!(net["route"]["source"], "10.77.41.1", "{net}");
    let row = doc["budget"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stage"] == "network one-way")
        .cloned()
        .unwrap_or_else(|| panic!("{}", doc["budget"]));
    assert_eq!(row["basis"], "half the ICMP echo round trip", "{row}");
    assert!(row["p50_ms"].as_f64().is_some(), "{row}");

    // Inside the namespace, with ping sockets allowed for group 0: the unprivileged one.
    let sysctl = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ping_group_range=0 0",
        ])
        .status()
        .unwrap();
    assert!(sysctl.success());
    let doc = run(&["ip", "netns", "exec", &ns.name], "10.77.41.1");
    let net = &doc["network"];
    assert_eq!(net["icmp"]["status"], "measured", "{net}");
    assert_eq!(net["icmp_socket"], "unprivileged", "{net}");
}
