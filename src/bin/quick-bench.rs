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

/// How many samples each measurement takes: `--quick` (about 10 s in all) or the full run
/// (about 30 s).
struct Samples {
    /// 1 ms sleeps timed (timer jitter).
    timer: usize,
    /// Frame copies timed (memory bandwidth).
    memory: usize,
    /// Frames handed through the shared-memory ring.
    ring: usize,
    /// Frames encoded.
    encoder: usize,
    /// Detector runs (`--yolo`).
    detector: usize,
    /// Camera frames.
    camera: usize,
    /// Echo round trips.
    network: usize,
}

impl Samples {
    fn new(quick: bool) -> Samples {
        if quick {
            Samples {
                timer: 1000,
                memory: 50,
                ring: 90,
                encoder: 120,
                detector: 20,
                camera: 60,
                network: 50,
            }
        } else {
            Samples {
                timer: 4000,
                memory: 200,
                ring: 300,
                encoder: 600,
                detector: 100,
                camera: 180,
                network: 200,
            }
        }
    }
}

/// `--echo`: answers echo requests until killed; exits 2 on a bad address.
fn serve_echo(addr: &str) {
    let a: SocketAddr = addr.parse().unwrap_or_else(|_| {
        fail(
            false,
            &format!("--echo {addr:?}: allowed ADDR:PORT, e.g. 0.0.0.0:5005"),
        )
    });
    if let Err(e) = network::serve_echo(a) {
        fail(false, &format!("--echo {addr}: {e}"));
    }
}

/// What is measured for, from the configuration (the report's `setting`).
fn setting(cli: &Cli, cfg: &Config) -> Setting {
    Setting {
        width: cfg.source.width,
        height: cfg.source.height,
        fps: cfg.source.fps,
        bitrate_kbps: cfg.encoder.bitrate_kbps,
        encoder_threads: cfg.encoder.threads,
        profile: cli.profile.clone(),
        ip: cfg.stream.ip.clone(),
        port: cfg.stream.port,
        target_ms: cfg.stats.target_ms,
        quick: cli.quick,
    }
}

/// `--system-only`: exits 0 when tuned, 1 when not; with `--json`, after printing
/// `{"version", "system", "exit"}`.
fn exit_system_only(json: bool, system: &SystemSection) -> ! {
    let exit = if system.tuned { 0 } else { 1 };
    if json {
        let v =
            serde_json::json!({ "version": quickbench::VERSION, "system": system, "exit": exit });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("report serializes")
        );
    }
    std::process::exit(exit);
}

/// Section 1: the checks of `setup --check` on `--root` for `--user`.
fn system_section(cli: &Cli, cfg: &Config) -> SystemSection {
    let root = vr_setup::rootfs::Root::new(&cli.root)
        .unwrap_or_else(|e| fail(cli.json, &format!("--root {}: {e}", cli.root.display())));
    let isolated = vr_stream::stage::isolated_cpus(cfg);
    let target = vr_setup::plan::Target::for_root(
        root,
        isolated,
        cli.user.clone().or_else(vr_setup::plan::default_user),
    );
    let rows = vr_setup::checks::check(&target);
    SystemSection {
        tuned: vr_setup::checks::all_tuned(&rows),
        root: target.root.base().display().to_string(),
        rows,
    }
}

fn main() {
    if let Ok(spec) = std::env::var(measure::RING_CHILD_ENV) {
        std::process::exit(measure::ring_child(&spec));
    }
    let cli: Cli = vr_stream::cli::parse_or_exit("quick-bench");
    if let Some(addr) = &cli.echo {
        serve_echo(addr);
        return;
    }
    let cfg = load_config(&cli).unwrap_or_else(|e| fail(cli.json, &e));
    let json = cli.json;
    let n = Samples::new(cli.quick);
    let setting = setting(&cli, &cfg);
    let ip: std::net::IpAddr = cfg.stream.ip.parse().unwrap_or_else(|_| {
        fail(
            json,
            &format!("--ip {:?}: not an IP address", cfg.stream.ip),
        )
    });
    show(json, render::heading(&setting));

    // 1. System: the checks of `setup --check`.
    let system = system_section(&cli, &cfg);
    show(json, render::system(&system));
    if cli.system_only {
        exit_system_only(json, &system);
    }

    // 2..8: measurements.
    let jitter = step(json, "timer jitter", |p| {
        measure::jitter(&cfg, Duration::from_millis(1), n.timer, p)
    });
    let jitter = Section::Measured(jitter);
    show(json, render::jitter(&jitter));
    let memory = measure::memory(&cfg, n.memory);
    show(json, render::memory(&memory));
    let ring = step(json, "ring hand-off", |p| measure::ring(&cfg, n.ring, p));
    show(json, render::ring(&ring));
    let encoder = step(json, "encoder", |p| measure::encoder(&cfg, n.encoder, p));
    show(json, render::encoder(&encoder));
    let detector: Section<quickbench::Percentiles> = if cli.yolo {
        step(json, "detector", |p| measure::detector(&cfg, n.detector, p))
    } else {
        Section::not("not asked for (--yolo)")
    };
    show(json, render::detector(&detector));
    let camera = step(json, "camera", |p| measure::camera(&cfg, n.camera, p));
    show(json, render::camera(&camera));
    let echo_port = cfg.stream.port.saturating_add(1);
    let net = step(json, "network", |_| {
        network::network(ip, echo_port, n.network)
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
