//! `quick-bench`: before a session, is this box tuned and what sender-side latency will it
//! give? Prints each section as it finishes (progress on the terminal while it measures);
//! `--json` prints one document (schemas/quick-bench.schema.json).
//!
//! Exit status: 0 when the system is tuned and the estimate is within `stats.target_ms`,
//! 1 when not, 2 on error.
#![forbid(unsafe_code)]

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use vr_stream::config::{self, Config, Layer};
use vr_stream::quickbench::{
    self, Report, Section, Setting, SystemSection, budget, measure, network, render,
};

/// Is this box ready for vr-stream, and what latency will it give? Measures timer jitter,
/// frame copy, the shared-memory ring, the encoder, the camera and the network here.
#[derive(Parser, Debug)]
#[command(name = "quick-bench", version, about)]
struct Cli {
    /// About 10 s instead of about 30 s (fewer samples).
    #[arg(long)]
    quick: bool,
    /// Print one JSON document with every figure and its unit instead of text.
    #[arg(long)]
    json: bool,
    /// Receiver address (default: stream.ip of the configuration).
    #[arg(long, value_name = "ADDR")]
    ip: Option<String>,
    /// Configuration file layered over the defaults (as vr-stream --config).
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Built-in profile: ultra_low, low, quality.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Also measure the YOLO detector.
    #[arg(long)]
    yolo: bool,
    /// Check the system files of another root (as setup --root); live checks only on /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Account that runs vr-stream, for the limits check (default: $SUDO_USER, else you).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Only the system checks (section 1), no measurement; exit 0 when tuned, 1 when not.
    /// With --json: `{"version", "system", "exit"}`.
    #[arg(long)]
    system_only: bool,
    /// Do not benchmark: answer echo requests on ADDR (default 0.0.0.0:5005, the RTCP port
    /// of the default stream) so that a quick-bench on the sender can time the round trip.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "0.0.0.0:5005")]
    echo: Option<String>,
}

fn fail(json: bool, msg: &str) -> ! {
    if json {
        println!("{}", serde_json::json!({ "error": msg }));
    }
    eprintln!("quick-bench: {msg}");
    std::process::exit(2);
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let mut layers = vec![];
    if let Some(p) = &cli.profile {
        layers.push(Layer::Profile(p.clone()));
    }
    if let Some(path) = &cli.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--config {path}: cannot read: {e}"))?;
        layers.push(Layer::File {
            path: path.clone(),
            text,
        });
    }
    if let Some(ip) = &cli.ip {
        let mut t = toml::Table::new();
        let mut s = toml::Table::new();
        s.insert("ip".into(), toml::Value::String(ip.clone()));
        t.insert("stream".into(), toml::Value::Table(s));
        layers.push(Layer::Overrides(t));
    }
    config::load(&layers).map_err(|e| e.to_string())
}

/// Runs one section with a progress bar on the terminal (hidden when stderr is not one).
fn step<T>(json: bool, label: &str, f: impl FnOnce(&(dyn Fn(f64) + Sync)) -> T) -> T {
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(100)
    };
    bar.set_style(
        ProgressStyle::with_template("  {msg} [{bar:30}] {percent:>3}%")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    let set = |f: f64| bar.set_position((f.clamp(0.0, 1.0) * 100.0) as u64);
    let r = f(&set);
    bar.finish_and_clear();
    r
}

fn show(json: bool, text: String) {
    if !json {
        print!("{text}");
        let _ = std::io::stdout().flush();
    }
}

fn main() {
    if let Ok(spec) = std::env::var(measure::RING_CHILD_ENV) {
        std::process::exit(measure::ring_child(&spec));
    }
    let cli: Cli = vr_stream::cli::parse_or_exit("quick-bench");
    if let Some(addr) = &cli.echo {
        let a: SocketAddr = addr.parse().unwrap_or_else(|_| {
            fail(
                false,
                &format!("--echo {addr:?}: allowed ADDR:PORT, e.g. 0.0.0.0:5005"),
            )
        });
        if let Err(e) = network::serve_echo(a) {
            fail(false, &format!("--echo {addr}: {e}"));
        }
        return;
    }
    let cfg = load_config(&cli).unwrap_or_else(|e| fail(cli.json, &e));
    let json = cli.json;
    let q = cli.quick;
    let setting = Setting {
        width: cfg.source.width,
        height: cfg.source.height,
        fps: cfg.source.fps,
        bitrate_kbps: cfg.encoder.bitrate_kbps,
        encoder_threads: cfg.encoder.threads,
        profile: cli.profile.clone(),
        ip: cfg.stream.ip.clone(),
        port: cfg.stream.port,
        target_ms: cfg.stats.target_ms,
        quick: q,
    };
    let ip: std::net::IpAddr = cfg.stream.ip.parse().unwrap_or_else(|_| {
        fail(
            json,
            &format!("--ip {:?}: not an IP address", cfg.stream.ip),
        )
    });
    show(json, render::heading(&setting));

    // 1. System: the checks of `setup --check`.
    let root = vr_setup::rootfs::Root::new(&cli.root)
        .unwrap_or_else(|e| fail(json, &format!("--root {}: {e}", cli.root.display())));
    let isolated = vr_stream::stage::isolated_cpus(&cfg);
    let target = vr_setup::plan::Target::for_root(
        root,
        isolated,
        cli.user.clone().or_else(vr_setup::plan::default_user),
    );
    let rows = vr_setup::checks::check(&target);
    let system = SystemSection {
        tuned: vr_setup::checks::all_tuned(&rows),
        root: target.root.base().display().to_string(),
        rows,
    };
    show(json, render::system(&system));
    if cli.system_only {
        let exit = if system.tuned { 0 } else { 1 };
        if json {
            let v = serde_json::json!({ "version": quickbench::VERSION, "system": system, "exit": exit });
            println!(
                "{}",
                serde_json::to_string_pretty(&v).expect("report serializes")
            );
        }
        std::process::exit(exit);
    }

    // 2..8: measurements.
    let n_timer = if q { 1000 } else { 4000 };
    let jitter = step(json, "timer jitter", |p| {
        measure::jitter(&cfg, Duration::from_millis(1), n_timer, p)
    });
    let jitter = Section::Measured(jitter);
    show(json, render::jitter(&jitter));
    let memory = measure::memory(&cfg, if q { 50 } else { 200 });
    show(json, render::memory(&memory));
    let n_frames = if q { 90 } else { 300 };
    let ring = step(json, "ring hand-off", |p| measure::ring(&cfg, n_frames, p));
    show(json, render::ring(&ring));
    let n_enc = if q { 120 } else { 600 };
    let encoder = step(json, "encoder", |p| measure::encoder(&cfg, n_enc, p));
    show(json, render::encoder(&encoder));
    let detector: Section<quickbench::Percentiles> = if cli.yolo {
        step(json, "detector", |p| {
            measure::detector(&cfg, if q { 20 } else { 100 }, p)
        })
    } else {
        Section::not("not asked for (--yolo)")
    };
    show(json, render::detector(&detector));
    let camera = step(json, "camera", |p| {
        measure::camera(&cfg, if q { 60 } else { 180 }, p)
    });
    show(json, render::camera(&camera));
    let echo_port = cfg.stream.port.saturating_add(1);
    let net = step(json, "network", |_| {
        network::network(ip, echo_port, if q { 50 } else { 200 })
    });
    show(json, render::network(&net));

    // 9. Budget.
    let b = budget::budget(
        camera.get().map(|c| &c.capture_latency),
        &memory,
        &ring,
        &encoder,
        net.round_trip(),
        cfg.stats.target_ms,
    );
    show(json, render::budget(&b));
    let exit = if system.tuned && b.within_target {
        0
    } else {
        1
    };
    show(json, render::verdict(system.tuned, b.within_target));

    if json {
        let report = Report {
            version: quickbench::VERSION,
            setting,
            system,
            jitter,
            memory,
            ring,
            encoder,
            detector,
            camera,
            network: net,
            budget: b,
            exit,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    }
    std::process::exit(exit);
}
