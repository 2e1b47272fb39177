//! vr-relay as a process: bad arguments are refused with one line naming the argument and
//! exit status 2; a relay with nothing to relay ends after `--duration` with a JSON summary.
//!
//! Being an integration test of this package, it also makes `cargo test --workspace`
//! build the vr-relay executable with the rest (tests/relay.rs of vr-stream runs it), so
//! that no test has to start a `cargo build` of its own.

use std::process::{Command, Output};

fn relay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vr-relay"))
        .args(args)
        .output()
        .expect("start vr-relay")
}

#[test]
fn out_of_range_arguments_are_refused_with_the_argument_named() {
    for (arg, value, named) in [
        ("--loss", "100", "loss 100%: allowed 0 <= loss < 100"),
        (
            "--delay-ms",
            "20000",
            "--delay-ms 20000: allowed 0..=10000 ms",
        ),
        ("--port", "0", "--port 0: allowed 1..=65533"),
    ] {
        let out = relay(&["--listen", "127.0.0.1", "--to", "127.0.0.1", arg, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{arg} {value}: {err}");
        assert!(err.contains(named), "{arg} {value}: {err}");
        assert_eq!(err.lines().count(), 1, "{arg} {value}: one line: {err}");
        assert!(out.stdout.is_empty(), "{arg} {value}");
    }
}

#[test]
fn an_idle_relay_ends_after_its_duration_with_a_json_summary() {
    // Three consecutive free ports on 127.0.0.1: the relay binds RTP, RTCP and FEC there.
    let out = (0..20)
        .find_map(|_| {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port()
                .min(65533);
            let p = port.to_string();
            let out = relay(&[
                "--listen",
                "127.0.0.1",
                "--to",
                "127.0.0.1",
                "--port",
                &p,
                "--duration",
                "0.3",
                "--json",
            ]);
            let busy = String::from_utf8_lossy(&out.stderr).contains("cannot bind");
            (!busy).then_some(out)
        })
        .expect("three free ports in 20 tries");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(j["media_packets"], 0, "{j}");
    assert_eq!(j["dropped"], 0, "{j}");
}
