//! `vr-stream`: stream a camera (or a Y4M file, or a test pattern) as low-latency H.264
//! over RTP/UDP. See docs/usage.md for every flag and `config/default.toml` for every key.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use vr_stream::config::{self, Layer};
use vr_stream::stage::{self, StageKind};
use vr_stream::supervisor::{self, DEFAULT_INSTANCE, RunOptions};

/// Low-latency camera → H.264 → RTP sender (Raspberry Pi 5).
#[derive(Parser, Debug)]
#[command(name = "vr-stream", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Receiver (headset) IP address [stream.ip]
    #[arg(long)]
    ip: Option<String>,
    /// RTP port; RTCP uses PORT+1 [stream.port]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=65534))]
    port: Option<u16>,
    /// pattern | file:PATH.y4m | - (stdin) | pipe:PATH (FIFO) | v4l2:/dev/videoN |
    /// libcamera:N [source.uri]
    #[arg(long)]
    source: Option<String>,
    /// Stream format of a pipe source: y4m or i420 (bare frames of --width x --height at
    /// --fps, as `rpicam-vid --codec yuv420 -o -` writes) [source.pipe_format]
    #[arg(long, value_name = "FORMAT")]
    pipe_format: Option<String>,
    /// Loop a file source instead of ending at its end [source.loop]
    #[arg(long = "loop")]
    looping: bool,
    /// Two sources side by side in one frame (left | right) [source.stereo]
    #[arg(long)]
    stereo: bool,
    /// Right-eye source with --stereo (default: the same as --source) [source.right_uri]
    #[arg(long, value_name = "URI")]
    source_right: Option<String>,
    /// H.264 encoder: auto, x264 or v4l2m2m [encoder.backend]
    #[arg(long, value_name = "BACKEND")]
    encoder: Option<String>,
    /// Target bitrate, kbit/s (VBV-capped) [encoder.bitrate_kbps]
    #[arg(long, value_name = "KBPS")]
    bitrate: Option<u32>,
    /// Run YOLO object detection in its own stage [detect.enabled]
    #[arg(long)]
    yolo: bool,
    /// Draw the newest detection boxes into the video (implies --yolo) [detect.overlay]
    #[arg(long)]
    yolo_overlay: bool,
    /// The detector's ONNX model [detect.model]
    #[arg(long, value_name = "PATH")]
    yolo_model: Option<String>,
    /// Keep the bitrate fixed: no adaptation to receiver reports [abr.enabled = false]
    #[arg(long)]
    no_abr: bool,
    /// RTP over TCP (RFC 4571) to --ip:--port, for vr-receive --tcp [stream.tcp]
    #[arg(long)]
    tcp: bool,
    /// Serve the viewer page (HTTPS) for the headset's browser [web.enabled]
    #[arg(long, conflicts_with = "no_web")]
    web: bool,
    /// Do not serve the viewer page, whatever the configuration says [web.enabled = false]
    #[arg(long, conflicts_with = "web_port")]
    no_web: bool,
    /// The viewer page's port (implies --web; default 8443) [web.port]
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    web_port: Option<u16>,
    /// The viewer page's PIN, 4-12 digits (default: random per run, printed) [web.pin]
    #[arg(long, value_name = "DIGITS")]
    web_pin: Option<String>,
    /// TLS certificate chain for the viewer page, PEM (with --key) [web.cert]
    #[arg(long, value_name = "PEM")]
    cert: Option<String>,
    /// TLS private key for --cert, PEM [web.key]
    #[arg(long, value_name = "PEM")]
    key: Option<String>,
    /// Largest RTP payload, bytes [stream.payload_size]
    #[arg(long, value_name = "BYTES")]
    payload_size: Option<u32>,
    /// Pattern/camera width, pixels [source.width]
    #[arg(long)]
    width: Option<u32>,
    /// Pattern/camera height, pixels [source.height]
    #[arg(long)]
    height: Option<u32>,
    /// Pattern/camera frame rate, frames/s [source.fps]
    #[arg(long)]
    fps: Option<u32>,
    /// Stop after N frames (0 = no limit) [source.frames]
    #[arg(long, value_name = "N")]
    frames: Option<u64>,
    /// Profile: ultra_low, low or quality (config/NAME.toml)
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Extra configuration file (TOML), applied after the profile
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Print the merged configuration and exit
    #[arg(long)]
    print_config: bool,
    /// Where to write the SDP file; "" for none [stream.sdp]
    #[arg(long, value_name = "PATH")]
    sdp: Option<String>,
    /// Write the SDP file for this configuration and exit (start the receiver first)
    #[arg(long)]
    sdp_only: bool,
    /// Refuse to start without SCHED_FIFO, pinning and mlockall [rt.strict]
    #[arg(long)]
    strict_rt: bool,
    /// Print latency percentiles every N seconds (0 = at exit only) [stats.interval_s]
    #[arg(long, value_name = "SECONDS")]
    stats_interval: Option<u32>,
    /// Write per-frame timestamps (ns) as CSV [stats.latency_log]
    #[arg(long, value_name = "FILE")]
    latency_log: Option<String>,
    /// At exit, print the summary as one JSON document on stdout
    /// (schemas/vr-stream-summary.schema.json); `{"version", "error"}` if it cannot start
    #[arg(long)]
    json: bool,
    /// Instance name: prefix of the shared-memory segments in /dev/shm
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    instance: String,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Internal: run one stage process (started by the supervisor).
    #[command(hide = true)]
    Stage {
        /// camera | encode | network
        name: String,
        /// Instance name.
        #[arg(long)]
        instance: String,
        /// Frame geometry WxH@NUM/DEN.
        #[arg(long)]
        geometry: String,
    },
}

/// The command line's settings as a configuration layer: `section.key` for each option
/// given, in this order (a later entry for the same key wins: `--no-web` over `--web`).
fn overrides(cli: &Cli) -> toml::Table {
    fn text(v: &Option<String>) -> Option<toml::Value> {
        v.clone().map(toml::Value::String)
    }
    fn int<T: Into<u64>>(v: Option<T>) -> Option<toml::Value> {
        v.map(|v| toml::Value::Integer(v.into().min(i64::MAX as u64) as i64))
    }
    fn flag(given: bool, value: bool) -> Option<toml::Value> {
        given.then_some(toml::Value::Boolean(value))
    }
    let entries = [
        ("stream", "ip", text(&cli.ip)),
        ("stream", "port", int(cli.port)),
        ("stream", "payload_size", int(cli.payload_size)),
        ("stream", "sdp", text(&cli.sdp)),
        ("source", "uri", text(&cli.source)),
        ("source", "pipe_format", text(&cli.pipe_format)),
        ("source", "stereo", flag(cli.stereo, true)),
        ("source", "right_uri", text(&cli.source_right)),
        ("source", "loop", flag(cli.looping, true)),
        ("source", "width", int(cli.width)),
        ("source", "height", int(cli.height)),
        ("source", "fps", int(cli.fps)),
        ("source", "frames", int(cli.frames)),
        ("encoder", "backend", text(&cli.encoder)),
        ("encoder", "bitrate_kbps", int(cli.bitrate)),
        (
            "detect",
            "enabled",
            flag(cli.yolo || cli.yolo_overlay, true),
        ),
        ("detect", "overlay", flag(cli.yolo_overlay, true)),
        ("detect", "model", text(&cli.yolo_model)),
        ("abr", "enabled", flag(cli.no_abr, false)),
        ("stream", "tcp", flag(cli.tcp, true)),
        (
            "web",
            "enabled",
            flag(cli.web || cli.web_port.is_some(), true),
        ),
        ("web", "enabled", flag(cli.no_web, false)),
        ("web", "port", int(cli.web_port)),
        ("web", "pin", text(&cli.web_pin)),
        ("web", "cert", text(&cli.cert)),
        ("web", "key", text(&cli.key)),
        ("rt", "strict", flag(cli.strict_rt, true)),
        ("stats", "interval_s", int(cli.stats_interval)),
        ("stats", "latency_log", text(&cli.latency_log)),
    ];
    let mut t = toml::Table::new();
    for (section, key, value) in entries {
        let Some(value) = value else { continue };
        if let toml::Value::Table(s) = t
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            s.insert(key.to_string(), value);
        }
    }
    t
}

fn main_inner(cli: &Cli) -> Result<Option<supervisor::ExitSummary>> {
    let mut layers = vec![];
    if let Some(p) = &cli.profile {
        layers.push(Layer::Profile(p.clone()));
    }
    if let Some(path) = &cli.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config {path}: cannot read"))?;
        layers.push(Layer::File {
            path: path.clone(),
            text,
        });
    }
    layers.push(Layer::Overrides(overrides(cli)));
    let cfg = config::load(&layers)?;
    if cli.print_config {
        print!("{}", cfg.to_toml());
        return Ok(None);
    }
    if cli.instance.is_empty() || cli.instance.contains('/') {
        anyhow::bail!(
            "--instance {:?}: allowed a non-empty name without '/'",
            cli.instance
        );
    }
    let web_explicit = cli.web || cli.web_port.is_some();
    supervisor::run(&RunOptions {
        cfg,
        instance: cli.instance.clone(),
        sdp_only: cli.sdp_only,
        profile: cli.profile.clone(),
        web_explicit,
    })
}

fn main() {
    let cli: Cli = vr_stream::cli::parse_or_exit("vr-stream");
    if let Some(Cmd::Stage {
        name,
        instance,
        geometry,
    }) = &cli.cmd
    {
        let Some(kind) = StageKind::parse(name) else {
            eprintln!("vr-stream: unknown stage {name:?}: allowed camera, encode, network");
            std::process::exit(2);
        };
        std::process::exit(stage::run(kind, instance, geometry));
    }
    let error = match main_inner(&cli) {
        Ok(summary) => {
            if cli.json
                && let Some(s) = &summary
            {
                println!(
                    "{}",
                    serde_json::to_string(s)
                        .unwrap_or_else(|e| supervisor::summary::error_json(&e.to_string()))
                );
            }
            summary.and_then(|s| s.error)
        }
        Err(e) => {
            let text = format!("{e:#}");
            if cli.json {
                println!("{}", supervisor::summary::error_json(&text));
            }
            Some(text)
        }
    };
    if let Some(e) = error {
        eprintln!("vr-stream: error: {e}");
        std::process::exit(1);
    }
}
