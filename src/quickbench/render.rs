//! The human form of the `quick-bench` report: one block per section, every line at most
//! [`WIDTH`] columns (long texts wrapped with `textwrap`). Pure code.

use super::budget::Budget;
use super::network::NetworkSection;
use super::{
    CameraSection, EncoderSection, JitterSection, MemorySection, Percentiles, RingSection, Section,
    Setting, SystemSection,
};
use vr_setup::checks::Status;

/// Terminal width the output fits.
pub const WIDTH: usize = 80;

fn wrap(text: &str, first: &str, rest: &str) -> String {
    let opts = textwrap::Options::new(WIDTH)
        .initial_indent(first)
        .subsequent_indent(rest)
        .break_words(true);
    let mut s = textwrap::fill(text, opts);
    s.push('\n');
    s
}

/// One item of a section: wrapped, indented 2 columns, its continuation lines 4.
fn item(text: &str) -> String {
    wrap(text, "  ", "    ")
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `p50 4.31  p99 6.02  max 7.10 ms`.
pub fn pct(p: &Percentiles) -> String {
    format!(
        "p50 {}  p99 {}  max {} {}",
        num(p.p50),
        num(p.p99),
        num(p.max),
        if p.unit == "us" { "µs" } else { "ms" }
    )
}

fn not<T>(s: &Section<T>) -> Option<String> {
    match s {
        Section::NotMeasured { reason } => Some(item(&format!("not measured: {reason}"))),
        Section::Measured(_) => None,
    }
}

/// Heading with what is measured against.
pub fn heading(s: &Setting) -> String {
    wrap(
        &format!(
            "quick-bench{}: {}x{} {} fps, {} kbit/s, receiver {}, target {} ms",
            if s.quick { " --quick" } else { "" },
            s.width,
            s.height,
            s.fps,
            s.bitrate_kbps,
            s.ip,
            s.target_ms
        ),
        "",
        "  ",
    )
}

/// 1. System.
pub fn system(s: &SystemSection) -> String {
    let mut out = format!(
        "1. System ({}): {}\n",
        s.root,
        if s.tuned { "tuned" } else { "NOT tuned" }
    );
    for r in &s.rows {
        let mark = match r.status {
            Status::Ok => "ok ",
            Status::NotTuned => "!! ",
            Status::NotApplicable => "n/a",
        };
        out.push_str(&wrap(
            &format!("{}: {}", r.what, r.current),
            &format!("  {mark} "),
            "        ",
        ));
        if r.status == Status::NotTuned {
            out.push_str(&wrap(&format!("fix: {}", r.fix), "        ", "          "));
        }
    }
    out
}

/// 2. Jitter.
pub fn jitter(s: &Section<JitterSection>) -> String {
    let mut out = String::from("2. Timer wake-up latency (clock_nanosleep, 1 ms period)\n");
    if let Some(n) = not(s) {
        return out + &n;
    }
    let j = s.get().unwrap();
    let run = |r: &super::JitterRun| {
        format!(
            "{} on CPU {}{}: {}",
            if r.policy == "SCHED_FIFO" {
                format!("SCHED_FIFO {}", r.priority)
            } else {
                "SCHED_OTHER".into()
            },
            r.cpu,
            if r.isolated { " (isolated)" } else { "" },
            pct(&r.wakeup)
        )
    };
    match &j.fifo {
        Section::Measured(r) => out.push_str(&item(&run(r))),
        Section::NotMeasured { reason } => {
            out.push_str(&item(&format!("SCHED_FIFO: not measured: {reason}")))
        }
    }
    out.push_str(&item(&run(&j.other)));
    out
}

/// 3. Memory.
pub fn memory(m: &MemorySection) -> String {
    format!(
        "3. Frame copy ({:.2} MB)\n{}",
        m.frame_bytes as f64 / 1e6,
        item(&format!(
            "{} per frame, {:.1} GB/s",
            pct(&m.copy),
            m.gb_per_s
        ))
    )
}

/// 4. Ring.
pub fn ring(s: &Section<RingSection>) -> String {
    let out = String::from("4. Frame ring hand-off between two processes\n");
    if let Some(n) = not(s) {
        return out + &n;
    }
    let r = s.get().unwrap();
    out + &item(&format!("{} ({} frames missed)", pct(&r.handoff), r.drops))
        + &item(&format!("producer {}, consumer {}", r.producer, r.consumer))
}

/// 5. Encoder.
pub fn encoder(s: &Section<EncoderSection>) -> String {
    let out = match s.get() {
        Some(e) => format!("5. Encoder ({})\n", e.backend),
        None => String::from("5. Encoder\n"),
    };
    if let Some(n) = not(s) {
        return out + &n;
    }
    let e = s.get().unwrap();
    let rate = format!(
        "bitrate {:.0} of {} kbit/s; {}; source {}",
        e.achieved_kbps, e.target_kbps, e.placement, e.source
    );
    out + &item(&format!("encode {} ({} frames)", pct(&e.encode), e.frames))
        + &item(&format!("packetize + send {}", pct(&e.packetize_send)))
        + &item(&rate)
}

/// 6. Detector.
pub fn detector(s: &Section<Percentiles>) -> String {
    let out = String::from("6. Detector (YOLO)\n");
    match s {
        Section::Measured(p) => out + &item(&format!("inference {}", pct(p))),
        _ => out + &not(s).unwrap(),
    }
}

/// 7. Camera.
pub fn camera(s: &Section<CameraSection>) -> String {
    let mut out = String::from("7. Camera\n");
    if let Some(n) = not(s) {
        return out + &n;
    }
    let c = s.get().unwrap();
    out.push_str(&item(&format!(
        "{}: interval {}",
        c.device,
        pct(&c.interval)
    )));
    out.push_str(&item(&format!("jitter {}", pct(&c.jitter))));
    out.push_str(&item(&format!(
        "capture latency {}",
        pct(&c.capture_latency)
    )));
    out
}

/// 8. Network.
pub fn network(n: &NetworkSection) -> String {
    let mut out = format!("8. Network to {}\n", n.ip);
    match &n.route {
        Section::Measured(r) => out.push_str(&item(&format!(
            "route: from {} via {}{}",
            r.source,
            r.interface,
            if r.wireless { " (Wi-Fi)" } else { "" }
        ))),
        Section::NotMeasured { reason } => out.push_str(&item(&format!("route: {reason}"))),
    }
    match &n.wifi {
        Section::Measured(w) => {
            let o = |v: Option<f64>, unit: &str| {
                v.map(|x| format!("{x}{unit}"))
                    .unwrap_or_else(|| "?".into())
            };
            out.push_str(&item(&format!(
                "Wi-Fi {}: signal {}, quality {}, tx bitrate {}, power save {}",
                w.interface,
                o(w.signal_dbm, " dBm"),
                o(w.link_quality, ""),
                o(w.tx_bitrate_mbps, " Mbit/s"),
                match w.power_save {
                    Some(true) => "ON (turn it off: sudo setup --apply)",
                    Some(false) => "off",
                    None => "?",
                }
            )))
        }
        Section::NotMeasured { reason } => out.push_str(&item(&format!("Wi-Fi: {reason}"))),
    }
    match &n.rtt {
        Section::Measured(p) => out.push_str(&item(&format!(
            "UDP round trip (echo on port {}): {}, {} lost",
            n.echo_port,
            pct(p),
            n.lost
        ))),
        Section::NotMeasured { reason } => {
            out.push_str(&item(&format!("round trip: not measured: {reason}")))
        }
    }
    match &n.icmp {
        Section::Measured(p) => out.push_str(&item(&format!(
            "ICMP echo round trip ({} socket): {}, {} of {} lost",
            n.icmp_socket,
            pct(p),
            n.icmp_lost,
            super::network::ICMP_PROBES
        ))),
        Section::NotMeasured { reason } => {
            out.push_str(&item(&format!("ICMP echo: not measured: {reason}")))
        }
    }
    out
}

/// The closing verdict line(s).
pub fn verdict(tuned: bool, within: bool) -> String {
    let v = match (tuned, within) {
        (true, true) => "ready: tuned, and the estimate is within the target",
        (false, true) => {
            "not ready: the estimate is within the target, but the system is not tuned (see 1.)"
        }
        (true, false) => "not ready: the estimate is over the target",
        (false, false) => "not ready: the system is not tuned and the estimate is over the target",
    };
    wrap(v, "", "  ")
}

/// 9. Budget.
pub fn budget(b: &Budget) -> String {
    let mut out = String::from("9. Sender-side latency budget\n");
    out.push_str(&format!(
        "  {:<18} {:>8} {:>8}  {}\n",
        "stage", "p50 ms", "p99 ms", "from"
    ));
    let cell = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    for r in &b.rows {
        let lead = format!(
            "  {:<18} {:>8} {:>8}  ",
            r.stage,
            cell(r.p50_ms),
            cell(r.p99_ms)
        );
        let pad = " ".repeat(lead.chars().count());
        out.push_str(&wrap(&r.basis, &lead, &pad));
    }
    out.push_str(&format!(
        "  {:<18} {:>8.2} {:>8.2}  target {} ms: {}\n",
        "total",
        b.total_p50_ms,
        b.total_p99_ms,
        b.target_ms,
        if b.within_target { "within" } else { "OVER" }
    ));
    if !b.missing.is_empty() {
        out.push_str(&wrap(
            &format!("not in the total (not measured): {}", b.missing.join(", ")),
            "  ",
            "  ",
        ));
    }
    out.push_str(&wrap(
        &format!("The estimate is sender-side: {}.", b.excludes),
        "  ",
        "  ",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_wrapped_to_80_columns() {
        let s = item(&"word ".repeat(60));
        assert!(s.lines().all(|l| l.chars().count() <= WIDTH));
        let s = item(&"x".repeat(200));
        assert!(s.lines().all(|l| l.chars().count() <= WIDTH), "{s}");
        let p = Percentiles {
            unit: "us",
            samples: 1,
            p50: 4.5,
            p99: 12.26,
            max: 130.0,
        };
        assert_eq!(pct(&p), "p50 4.50  p99 12.3  max 130 µs");
    }
}
