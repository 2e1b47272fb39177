//! Configuration: TOML layers merged into one [`Config`], then validated.
//!
//! Layers, later wins: `config/default.toml` (built in), a profile (`config/NAME.toml`,
//! built in), a `--config FILE`, then command-line overrides. Every key, its unit and its
//! allowed range is documented in `config/default.toml`. Pure code: parsing and validation
//! take strings and return values; reading files is the caller's job.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The built-in default configuration (`config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Built-in profiles: name and TOML overlay (`config/NAME.toml`).
pub const PROFILES: &[(&str, &str)] = &[
    ("ultra_low", include_str!("../config/ultra_low.toml")),
    ("low", include_str!("../config/low.toml")),
    ("quality", include_str!("../config/quality.toml")),
];

/// Errors from loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer is not valid TOML or has an unknown key or a value of the wrong type.
    #[error("config {origin}: {message}")]
    Parse {
        /// Which layer: a file path, `profile NAME`, `default` or `command line`.
        origin: String,
        /// The TOML parser's message (names the key and line).
        message: String,
    },
    /// `--profile` names no built-in profile.
    #[error("unknown profile '{0}': allowed profiles are ultra_low, low, quality")]
    UnknownProfile(String),
    /// A key has a value outside its allowed range.
    #[error("config key {key} = {value}: {allowed}")]
    Invalid {
        /// Dotted key, e.g. `stream.port`.
        key: &'static str,
        /// The value found, as text.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}

/// The whole configuration; see `config/default.toml` for every key's meaning and unit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// RTP output.
    pub stream: StreamConfig,
    /// Frame source.
    pub source: SourceConfig,
    /// H.264 encoder (x264 or the V4L2 M2M hardware encoder).
    pub encoder: EncoderConfig,
    /// Per-stage CPU and priority.
    pub stages: StagesConfig,
    /// Realtime policy.
    pub rt: RtConfig,
    /// Restarts of failed stages.
    pub supervise: SuperviseConfig,
    /// Latency statistics.
    pub stats: StatsConfig,
    /// Adaptive bitrate from receiver reports.
    pub abr: AbrConfig,
    /// Optional object detection.
    pub detect: DetectConfig,
    /// The viewer page (HTTPS, WebSocket + WebCodecs) served to the headset.
    pub web: WebConfig,
}

/// `[web]`: the HTTPS server for the headset's browser ([`crate::web`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the viewer page.
    pub enabled: bool,
    /// TCP port.
    pub port: u16,
    /// Address to listen on.
    pub bind: String,
    /// Certificate chain (PEM); "" = the kept self-signed one in `cert_dir`.
    pub cert: String,
    /// Private key of `cert` (PEM).
    pub key: String,
    /// Where the self-signed pair is kept; "" = `$XDG_CONFIG_HOME/vr-stream` or
    /// `~/.config/vr-stream`.
    pub cert_dir: String,
    /// The PIN the page asks for; "" = a random 6-digit PIN per run, printed at start.
    pub pin: String,
    /// Addresses or prefixes allowed to use the page; empty = `stream.ip` and loopback
    /// ([`WebConfig::allowed`]).
    pub allow: Vec<String>,
    /// Most connections open at once (TLS and plain, WebSockets included); one more is
    /// closed at once.
    pub max_connections: u32,
    /// Most connections open at once from one client address.
    pub max_connections_per_address: u32,
    /// Time a client gets to finish the TLS handshake and send a request head, ms
    /// (slowloris bound).
    pub header_timeout_ms: u32,
    /// A WebSocket whose page sent nothing for this long is closed, s (between requests on
    /// a keep-alive connection, `header_timeout_ms` applies).
    pub idle_timeout_s: u32,
    /// Largest request body (login, WebRTC offer), bytes.
    pub max_body_bytes: u32,
    /// Most viewers at once, WebSocket and WebRTC (a WebRTC peer has a thread and a UDP
    /// socket).
    pub max_viewers: u32,
    /// A login's session lasts this long, s; restarting vr-stream revokes every session.
    pub session_ttl_s: u32,
}

impl WebConfig {
    /// The networks allowed to use the page: `allow` parsed (an address is a /32 or
    /// /128), or when empty the receiver's address `stream_ip` and loopback (127.0.0.0/8,
    /// ::1). Entries that do not parse are left out (validated with the configuration).
    pub fn allowed(&self, stream_ip: &str) -> Vec<ipnet::IpNet> {
        let parse = |s: &str| {
            s.parse::<ipnet::IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
        };
        if self.allow.is_empty() {
            let mut v: Vec<ipnet::IpNet> = vec![
                "127.0.0.0/8".parse().expect("a prefix"),
                "::1/128".parse().expect("a prefix"),
            ];
            v.extend(parse(stream_ip));
            v
        } else {
            self.allow.iter().filter_map(|s| parse(s)).collect()
        }
    }
}

/// `[detect]`: YOLO object detection in its own stage ([`crate::detect`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Run the detect stage.
    pub enabled: bool,
    /// The ONNX model; "" = `yolo11n.onnx` where `vr-stream-fetch-yolo` put it
    /// ([`crate::detect::assets`]).
    pub model: String,
    /// The ONNX Runtime library; "" = `ORT_DYLIB_PATH`, else where `vr-stream-fetch-yolo`
    /// put it ([`crate::detect::assets`]).
    pub onnxruntime: String,
    /// Model input side for models with free input dimensions, pixels.
    pub size: u32,
    /// Least score kept, 0..1.
    pub conf: f32,
    /// NMS IoU threshold, 0..1.
    pub iou: f32,
    /// Class indices kept; empty = all.
    pub classes: Vec<u16>,
    /// Detect on every Nth frame at most (the newest frame when the detector is free).
    pub every_nth: u32,
    /// ONNX Runtime intra-op threads.
    pub threads: u32,
    /// Most detections per frame.
    pub max: u32,
    /// Draw the newest boxes into the video before encoding.
    pub overlay: bool,
}

impl DetectConfig {
    /// The detector parameters, with the model at `model` (the one in force:
    /// [`crate::detect::assets::model`]).
    pub fn params(&self, model: std::path::PathBuf) -> crate::detect::onnx::DetectorParams {
        crate::detect::onnx::DetectorParams {
            model,
            size: self.size,
            threads: self.threads as usize,
            conf: self.conf,
            iou: self.iou,
            classes: self.classes.clone(),
            max: self.max as usize,
        }
    }
}

/// `[abr]`: adaptive bitrate ([`crate::abr`]); the ceiling is `encoder.bitrate_kbps`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AbrConfig {
    /// Follow the receiver's reports (off: the bitrate stays at `encoder.bitrate_kbps`).
    pub enabled: bool,
    /// Lowest bitrate, kbit/s.
    pub min_kbps: u32,
    /// Loss (per cent, per report interval) at or above which the bitrate drops.
    pub loss_high_percent: u32,
    /// Loss (per cent) below which the bitrate may grow.
    pub loss_low_percent: u32,
    /// Round-trip growth over the recent minimum that counts as congestion, ms.
    pub delay_ms: u32,
    /// Growth on a clean link, per cent per second.
    pub increase_percent: u32,
    /// Bitrate after congestion, per cent of the rate the receiver got.
    pub backoff_percent: u32,
}

impl AbrConfig {
    /// The controller parameters, with `max_kbps` = the configured encoder bitrate.
    pub fn params(&self, max_kbps: u32) -> crate::abr::AbrParams {
        crate::abr::AbrParams {
            min_kbps: self.min_kbps,
            max_kbps,
            loss_high_percent: self.loss_high_percent,
            loss_low_percent: self.loss_low_percent,
            delay_ms: self.delay_ms,
            increase_percent: self.increase_percent,
            backoff_percent: self.backoff_percent,
        }
    }
}

/// `[stream]`: where and how RTP is sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Receiver address (IPv4 or IPv6 literal).
    pub ip: String,
    /// RTP destination port; RTCP is `port + 1`.
    pub port: u16,
    /// Largest RTP payload per packet, bytes.
    pub payload_size: u32,
    /// RTP payload type (dynamic range 96..=127).
    pub payload_type: u8,
    /// RTP SSRC; 0 = random at start.
    pub ssrc: u32,
    /// DSCP code point, 0..=63.
    pub dscp: u8,
    /// RFC 8285 one-byte extension id for abs-capture-time, 1..=14.
    pub capture_time_ext_id: u8,
    /// SDP output path; empty = none.
    pub sdp: String,
    /// Largest sendmmsg batch, packets.
    pub sendmmsg_batch: u32,
    /// Local port of the sender's RTCP socket; 0 = any.
    pub rtcp_local_port: u16,
    /// FEC overhead, percent of a frame's packets (0 = off); FEC goes to port + 2.
    pub fec_percent: u32,
    /// RTP payload type of FEC packets.
    pub fec_payload_type: u8,
    /// Bytes of an access unit sent at once before pacing starts; 0 = no pacing.
    pub burst_bytes: u32,
    /// Rate the rest of a large access unit is paced at, kbit/s (raised when needed to
    /// finish within 3/4 of a frame interval).
    pub pacing_kbps: u32,
    /// RTP over TCP (RFC 4571 framing) to `ip:port` instead of UDP; no FEC.
    pub tcp: bool,
}

/// `[source]`: which frames go in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `pattern`, `file:PATH.y4m`, `-`, `pipe:PATH`, `v4l2:/dev/videoN` or
    /// `libcamera:N` ([`crate::source::SourceSpec`]).
    pub uri: String,
    /// Stream format of a pipe source (`-`, `pipe:PATH`): `y4m` or `i420`
    /// ([`crate::source::pipe::PipeFormat`]).
    pub pipe_format: String,
    /// Loop a file source.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Width for pattern/v4l2, pixels.
    pub width: u32,
    /// Height for pattern/v4l2, pixels.
    pub height: u32,
    /// Frame rate for pattern/v4l2, frames/s.
    pub fps: u32,
    /// Camera driver buffers.
    pub buffers: u32,
    /// Stop after this many frames; 0 = no limit.
    pub frames: u64,
    /// Two sources side by side in one frame (left eye | right eye).
    pub stereo: bool,
    /// Right-eye source URI when `stereo`; empty = the same as `uri`.
    pub right_uri: String,
    /// Fixed exposure for libcamera cameras, µs; 0 = automatic exposure.
    pub exposure_us: u32,
}

/// `[encoder]`: which H.264 encoder and its settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// `auto`, `x264` or `v4l2m2m` (see [`ENCODER_BACKENDS`]).
    pub backend: String,
    /// The V4L2 memory-to-memory encoder device (`/dev/video11` = bcm2835-codec).
    pub device: String,
    /// Target and maximum bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// VBV buffer, ms of bitrate.
    pub vbv_buffer_ms: u32,
    /// Frames between IDRs; 0 = none periodic.
    pub keyint: u32,
    /// Periodic intra refresh instead of IDRs.
    pub intra_refresh: bool,
    /// x264 threads, each encoding one slice of every frame (x264 `--sliced-threads`) when
    /// more than 1; 0 = one per CPU of `stages.encode.cpus` as mapped onto this machine
    /// ([`crate::stage::encoder_config`] resolves it).
    pub threads: u32,
    /// x264 preset name.
    pub preset: String,
    /// H.264 profile ceiling.
    pub profile: String,
}

/// `[stages]`: one entry per stage process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StagesConfig {
    /// The camera (source) stage.
    pub camera: StageConfig,
    /// The encode stage: a CPU set (x264's slice threads run on it).
    pub encode: EncodeStageConfig,
    /// The network stage.
    pub network: StageConfig,
    /// The detect stage (with `detect.enabled`).
    pub detect: StageConfig,
    /// The web stage (with `web.enabled`): not realtime.
    pub web: WebStageConfig,
}

/// `[stages.web]`: where the viewer page's server runs. It is never SCHED_FIFO and never
/// locks its memory: it serves untrusted peers (see [`crate::web`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebStageConfig {
    /// CPUs it may run on, a kernel CPU list (`0`, `0-1`, `0,3`): the housekeeping CPUs,
    /// not the isolated ones of the realtime stages. CPUs this machine lacks are left
    /// out; none left = any CPU.
    pub cpus: String,
    /// Nice value, -20..=19 (SCHED_OTHER).
    pub nice: i32,
}

/// `[stages.encode]`: the CPUs and SCHED_FIFO priority of the encode stage. Every thread of
/// the stage, x264's slice threads included, runs SCHED_FIFO at `priority` within `cpus`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncodeStageConfig {
    /// A kernel CPU list (`3`, `2-3`, `1-3`), mapped onto the CPUs present modulo their
    /// count ([`crate::rt::map_cpus`]); x264 gets one slice thread per CPU of the mapped set
    /// when `encoder.threads = 0`.
    pub cpus: String,
    /// SCHED_FIFO priority, 1..=99.
    pub priority: u8,
}

impl EncodeStageConfig {
    /// The configured CPUs (validated with the configuration: empty if it does not parse).
    pub fn cpu_list(&self) -> Vec<u32> {
        vr_setup::cpus::CpuList::parse(&self.cpus)
            .map(|l| l.iter().collect())
            .unwrap_or_default()
    }
}

/// CPU and SCHED_FIFO priority of one stage.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// CPU index (mapped onto the CPUs present modulo their count).
    pub cpu: u32,
    /// SCHED_FIFO priority, 1..=99.
    pub priority: u8,
}

/// `[rt]`: realtime policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RtConfig {
    /// Refuse to start without SCHED_FIFO / pinning / mlockall.
    pub strict: bool,
    /// mlockall each stage.
    pub mlock: bool,
    /// Spin window around the expected hand-off, µs (0 = always sleep).
    pub spin_window_us: u32,
}

/// `[supervise]`: crash-only supervision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SuperviseConfig {
    /// First restart backoff, ms (doubles up to 2 s).
    pub backoff_ms: u32,
    /// Restarts in a row before giving up; 0 = never restart.
    pub max_restarts: u32,
    /// Heartbeat age that counts as hung, ms; 0 = off.
    pub heartbeat_timeout_ms: u32,
}

/// `[stats]`: latency reporting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Seconds between periodic reports; 0 = only at exit.
    pub interval_s: u32,
    /// CSV path for per-frame records; empty = none.
    pub latency_log: String,
    /// Sender-side latency target, ms (capture -> last packet, plus the network one-way
    /// estimate): `quick-bench` compares its budget with it.
    pub target_ms: u32,
}

/// x264 presets we allow (the fast end: slower ones cannot keep 60 fps on a Pi 5).
pub const PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
];
/// H.264 profiles we allow.
pub const H264_PROFILES: &[&str] = &["baseline", "main", "high"];
/// Allowed `encoder.backend` values: `auto` (the V4L2 M2M encoder when `encoder.device`
/// exists and this build has it, else x264), `x264`, `v4l2m2m`.
pub const ENCODER_BACKENDS: &[&str] = &["auto", "x264", "v4l2m2m"];

/// Where a configuration layer comes from, for error messages.
#[derive(Debug, Clone)]
pub enum Layer {
    /// `--profile NAME`.
    Profile(String),
    /// `--config FILE`: the path (for messages) and its contents.
    File {
        /// Path as given.
        path: String,
        /// File contents.
        text: String,
    },
    /// Command-line overrides, already as a TOML table.
    Overrides(toml::Table),
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn parse_table(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: one_line(&e.to_string()),
    })
}

/// Deserializes a merged table, naming the offending key path in the error.
fn deserialize(t: toml::Table, origin: &str) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(t).map_err(|e| {
        let path = e.path().to_string();
        let msg = one_line(e.inner().message());
        ConfigError::Parse {
            origin: origin.to_string(),
            message: if path.is_empty() || path == "." {
                msg
            } else {
                format!("{path}: {msg}")
            },
        }
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Merges the built-in default with `layers` (in order) and validates the result.
///
/// Errors: [`ConfigError::Parse`] naming the first layer with bad TOML or an unknown key,
/// [`ConfigError::UnknownProfile`], or [`ConfigError::Invalid`] for an out-of-range value.
pub fn load(layers: &[Layer]) -> Result<Config, ConfigError> {
    let mut merged = parse_table("default", DEFAULT_TOML)?;
    for layer in layers {
        let (origin, table) = match layer {
            Layer::Profile(name) => {
                let text = PROFILES
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| *t)
                    .ok_or_else(|| ConfigError::UnknownProfile(name.clone()))?;
                let origin = format!("profile {name}");
                let t = parse_table(&origin, text)?;
                (origin, t)
            }
            Layer::File { path, text } => (path.clone(), parse_table(path, text)?),
            Layer::Overrides(t) => ("command line".to_string(), t.clone()),
        };
        merge(&mut merged, table);
        // Deserialize after each layer so an unknown key is blamed on the layer adding it.
        deserialize(merged.clone(), &origin)?;
    }
    let cfg = deserialize(merged, "default")?;
    cfg.validate()?;
    Ok(cfg)
}

fn check<T: std::fmt::Display + PartialOrd>(
    key: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::Invalid {
            key,
            value: v.to_string(),
            allowed: format!("allowed {lo}..={hi}"),
        });
    }
    Ok(())
}

/// Checks that the value of one key is not above the value of another (`below` = (key,
/// value), `bound` = (key, value)); the message names both keys.
fn not_above<T: std::fmt::Display + PartialOrd>(
    (key, v): (&'static str, T),
    (bound_key, bound): (&'static str, T),
) -> Result<(), ConfigError> {
    if v > bound {
        return Err(ConfigError::Invalid {
            key,
            value: v.to_string(),
            allowed: format!("allowed at most {bound_key} ({bound})"),
        });
    }
    Ok(())
}

impl Config {
    /// Checks every value against its allowed range (see `config/default.toml`).
    ///
    /// Errors: [`ConfigError::Invalid`] with the key, the value and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.stream;
        s.ip.parse::<IpAddr>().map_err(|_| ConfigError::Invalid {
            key: "stream.ip",
            value: format!("{:?}", s.ip),
            allowed: "an IPv4 or IPv6 address such as 192.168.1.100".into(),
        })?;
        check("stream.port", s.port, 1, 65534)?;
        check("stream.payload_size", s.payload_size, 200, 8900)?;
        check("stream.payload_type", s.payload_type, 96, 127)?;
        check("stream.dscp", s.dscp, 0, 63)?;
        check("stream.capture_time_ext_id", s.capture_time_ext_id, 1, 14)?;
        check("stream.sendmmsg_batch", s.sendmmsg_batch, 1, 1024)?;
        check("stream.fec_percent", s.fec_percent, 0, 100)?;
        check("stream.fec_payload_type", s.fec_payload_type, 96, 127)?;
        if s.fec_percent > 0 && s.fec_payload_type == s.payload_type {
            return Err(ConfigError::Invalid {
                key: "stream.fec_payload_type",
                value: s.fec_payload_type.to_string(),
                allowed: format!(
                    "a payload type other than stream.payload_type ({})",
                    s.payload_type
                ),
            });
        }
        if s.fec_percent > 0 && s.port > 65533 {
            return Err(ConfigError::Invalid {
                key: "stream.port",
                value: s.port.to_string(),
                allowed: "1..=65533 with FEC on (FEC goes to port + 2), or stream.fec_percent = 0"
                    .into(),
            });
        }
        let src = &self.source;
        crate::source::SourceSpec::parse(&src.uri).map_err(|e| ConfigError::Invalid {
            key: "source.uri",
            value: format!("{:?}", src.uri),
            allowed: e,
        })?;
        crate::source::pipe::PipeFormat::parse(&src.pipe_format).map_err(|e| {
            ConfigError::Invalid {
                key: "source.pipe_format",
                value: format!("{:?}", src.pipe_format),
                allowed: e,
            }
        })?;
        let is_pipe = |u: &str| {
            matches!(
                crate::source::SourceSpec::parse(u),
                Ok(crate::source::SourceSpec::Pipe(_))
            )
        };
        if src.stereo && (is_pipe(&src.uri) || is_pipe(&src.right_uri)) {
            return Err(ConfigError::Invalid {
                key: "source.stereo",
                value: "true".into(),
                allowed: "a pipe source (-, pipe:PATH) cannot be one eye of a stereo pair: compose the two eyes side by side before the pipe, or use files, cameras or patterns".into(),
            });
        }
        if !src.right_uri.is_empty() {
            crate::source::SourceSpec::parse(&src.right_uri).map_err(|e| ConfigError::Invalid {
                key: "source.right_uri",
                value: format!("{:?}", src.right_uri),
                allowed: e,
            })?;
        }
        for (key, v) in [("source.width", src.width), ("source.height", src.height)] {
            check(key, v, 16, 4096)?;
            if v % 2 != 0 {
                return Err(ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    allowed: "must be even (4:2:0 chroma)".into(),
                });
            }
        }
        check("source.fps", src.fps, 1, 240)?;
        check("source.buffers", src.buffers, 2, 8)?;
        let e = &self.encoder;
        check("encoder.bitrate_kbps", e.bitrate_kbps, 100, 200_000)?;
        check("encoder.vbv_buffer_ms", e.vbv_buffer_ms, 1, 2000)?;
        check("encoder.keyint", e.keyint, 0, 10_000)?;
        check("encoder.threads", e.threads, 0, 16)?;
        if !ENCODER_BACKENDS.contains(&e.backend.as_str()) {
            return Err(ConfigError::Invalid {
                key: "encoder.backend",
                value: format!("{:?}", e.backend),
                allowed: format!("one of {}", ENCODER_BACKENDS.join(", ")),
            });
        }
        if e.device.is_empty() || !e.device.starts_with('/') {
            return Err(ConfigError::Invalid {
                key: "encoder.device",
                value: format!("{:?}", e.device),
                allowed: "an absolute device path such as /dev/video11".into(),
            });
        }
        if !PRESETS.contains(&e.preset.as_str()) {
            return Err(ConfigError::Invalid {
                key: "encoder.preset",
                value: format!("{:?}", e.preset),
                allowed: format!("one of {}", PRESETS.join(", ")),
            });
        }
        if !H264_PROFILES.contains(&e.profile.as_str()) {
            return Err(ConfigError::Invalid {
                key: "encoder.profile",
                value: format!("{:?}", e.profile),
                allowed: format!("one of {}", H264_PROFILES.join(", ")),
            });
        }
        if e.keyint == 0 && !e.intra_refresh {
            return Err(ConfigError::Invalid {
                key: "encoder.keyint",
                value: "0".into(),
                allowed: "0 only with encoder.intra_refresh = true (else a lost frame never heals)"
                    .into(),
            });
        }
        for (key, prio) in [
            ("stages.camera.priority", self.stages.camera.priority),
            ("stages.encode.priority", self.stages.encode.priority),
            ("stages.network.priority", self.stages.network.priority),
        ] {
            check(key, prio, 1, 99)?;
        }
        check("stages.detect.priority", self.stages.detect.priority, 0, 99)?;
        for (key, st) in [
            ("stages.camera.cpu", self.stages.camera),
            ("stages.network.cpu", self.stages.network),
            ("stages.detect.cpu", self.stages.detect),
        ] {
            check(key, st.cpu, 0, 1023)?;
        }
        let enc_cpus = vr_setup::cpus::CpuList::parse(&self.stages.encode.cpus)
            .map_err(|e| e.to_string())
            .and_then(|l| {
                let v: Vec<u32> = l.iter().collect();
                match v.iter().max() {
                    None => Err("empty".to_string()),
                    Some(&m) if m > 1023 => Err(format!("CPU {m} is above 1023")),
                    Some(_) if v.len() > 16 => Err("more than 16 CPUs".to_string()),
                    Some(_) => Ok(v),
                }
            });
        enc_cpus.map_err(|e| ConfigError::Invalid {
            key: "stages.encode.cpus",
            value: format!("{:?}", self.stages.encode.cpus),
            allowed: format!(
                "a kernel CPU list of 1..=16 CPUs, 0..=1023, such as \"3\" or \"1-3\" ({e})"
            ),
        })?;
        vr_setup::cpus::CpuList::parse(&self.stages.web.cpus).map_err(|e| {
            ConfigError::Invalid {
                key: "stages.web.cpus",
                value: format!("{:?}", self.stages.web.cpus),
                allowed: format!("a kernel CPU list such as \"0\" or \"0-1,3\" ({e})"),
            }
        })?;
        check("stages.web.nice", self.stages.web.nice, -20, 19)?;
        check("stats.interval_s", self.stats.interval_s, 0, 3600)?;
        let d = &self.detect;
        check("detect.size", d.size, 32, 2048)?;
        if !d.size.is_multiple_of(32) {
            return Err(ConfigError::Invalid {
                key: "detect.size",
                value: d.size.to_string(),
                allowed: "a multiple of 32".into(),
            });
        }
        check("detect.conf", d.conf, 0.0, 1.0)?;
        check("detect.iou", d.iou, 0.0, 1.0)?;
        check("detect.every_nth", d.every_nth, 1, 1000)?;
        check("detect.threads", d.threads, 1, 16)?;
        check(
            "detect.max",
            d.max,
            1,
            vr_proto::detection::MAX_DETECTIONS as u32,
        )?;
        let w = &self.web;
        check("web.port", w.port, 1, 65535)?;
        w.bind.parse::<IpAddr>().map_err(|_| ConfigError::Invalid {
            key: "web.bind",
            value: w.bind.clone(),
            allowed: "an IP address (0.0.0.0 for every interface)".into(),
        })?;
        if w.cert.is_empty() != w.key.is_empty() {
            return Err(ConfigError::Invalid {
                key: "web.cert",
                value: format!("cert {:?}, key {:?}", w.cert, w.key),
                allowed: "both or neither (--cert and --key)".into(),
            });
        }
        if !w.pin.is_empty()
            && (w.pin.len() < 4 || w.pin.len() > 12 || !w.pin.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ConfigError::Invalid {
                key: "web.pin",
                value: w.pin.clone(),
                allowed: "4 to 12 digits, or \"\" for a random PIN".into(),
            });
        }
        for a in &w.allow {
            if a.parse::<ipnet::IpNet>().is_err() && a.parse::<IpAddr>().is_err() {
                return Err(ConfigError::Invalid {
                    key: "web.allow",
                    value: format!("{a:?}"),
                    allowed: "IP addresses or prefixes such as \"192.168.1.100\", \"192.168.1.0/24\", \"0.0.0.0/0\"".into(),
                });
            }
        }
        check("web.max_connections", w.max_connections, 1, 10_000)?;
        check(
            "web.max_connections_per_address",
            w.max_connections_per_address,
            1,
            10_000,
        )?;
        not_above(
            (
                "web.max_connections_per_address",
                w.max_connections_per_address,
            ),
            ("web.max_connections", w.max_connections),
        )?;
        check("web.header_timeout_ms", w.header_timeout_ms, 100, 60_000)?;
        check("web.idle_timeout_s", w.idle_timeout_s, 1, 3600)?;
        check("web.max_body_bytes", w.max_body_bytes, 1024, 1 << 20)?;
        check("web.max_viewers", w.max_viewers, 1, 64)?;
        check("web.session_ttl_s", w.session_ttl_s, 1, 7 * 86_400)?;
        let a = &self.abr;
        check("abr.min_kbps", a.min_kbps, 100, 200_000)?;
        check("abr.loss_high_percent", a.loss_high_percent, 1, 100)?;
        check("abr.loss_low_percent", a.loss_low_percent, 0, 100)?;
        not_above(
            ("abr.loss_low_percent", a.loss_low_percent),
            ("abr.loss_high_percent", a.loss_high_percent),
        )?;
        check("abr.delay_ms", a.delay_ms, 1, 2000)?;
        check("abr.increase_percent", a.increase_percent, 1, 100)?;
        check("abr.backoff_percent", a.backoff_percent, 10, 100)?;
        check("stream.burst_bytes", s.burst_bytes, 0, 1 << 24)?;
        check("stream.pacing_kbps", s.pacing_kbps, 1000, 10_000_000)?;
        check("source.exposure_us", self.source.exposure_us, 0, 1_000_000)?;
        check("stats.target_ms", self.stats.target_ms, 1, 1000)?;
        check("rt.spin_window_us", self.rt.spin_window_us, 0, 5000)?;
        check("supervise.backoff_ms", self.supervise.backoff_ms, 1, 10_000)?;
        check(
            "supervise.max_restarts",
            self.supervise.max_restarts,
            0,
            100,
        )?;
        if self.supervise.heartbeat_timeout_ms != 0 {
            check(
                "supervise.heartbeat_timeout_ms",
                self.supervise.heartbeat_timeout_ms,
                200,
                60_000,
            )?;
        }
        Ok(())
    }

    /// The merged configuration as TOML (what `--print-config` shows).
    pub fn to_toml(&self) -> String {
        // Serializing plain structs of strings/numbers/bools cannot fail.
        toml::to_string(self).expect("config serializes")
    }

    /// Parses a configuration previously produced by [`Config::to_toml`] (stage processes
    /// receive the supervisor's merged configuration this way) and validates it.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: "stage configuration".into(),
            message: one_line(e.message()),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_every_profile_are_valid() {
        let d = load(&[]).unwrap();
        assert_eq!(d.stream.port, 5004);
        for (name, _) in PROFILES {
            load(&[Layer::Profile(name.to_string())]).unwrap();
        }
        let u = load(&[Layer::Profile("ultra_low".into())]).unwrap();
        assert_eq!(u.source.buffers, 2);
        assert!(u.encoder.intra_refresh);
    }

    #[test]
    fn roundtrip_through_toml() {
        let d = load(&[Layer::Profile("quality".into())]).unwrap();
        assert_eq!(Config::from_toml(&d.to_toml()).unwrap(), d);
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = load(&[Layer::File {
            path: "my.toml".into(),
            text: "[encoder]\nbitrat = 5\n".into(),
        }])
        .unwrap_err()
        .to_string();
        assert!(err.contains("my.toml") && err.contains("bitrat"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        // Loading a file `x` holding `text` fails with a message holding each of `want`.
        let says = |text: &str, want: &[&str]| {
            let layer = Layer::File {
                path: "x".into(),
                text: text.into(),
            };
            let err = load(&[layer]).unwrap_err().to_string();
            assert!(want.iter().all(|w| err.contains(w)), "{err}");
        };
        says(
            "[stream]\npayload_size = 50\n",
            &["stream.payload_size = 50", "200..=8900"],
        );
        says("[stream]\nip = \"300.1.1.1\"\n", &["stream.ip"]);
        says("[source]\nwidth = 641\n", &["even"]);
        says("[stream]\nport = \"a\"\n", &["config x"]);
        // A bound that is another key's value names that key.
        says(
            "[abr]\nloss_high_percent = 5\nloss_low_percent = 6\n",
            &["abr.loss_low_percent = 6: allowed at most abr.loss_high_percent (5)"],
        );
        says(
            "[web]\nmax_connections = 8\nmax_connections_per_address = 9\n",
            &["web.max_connections_per_address = 9: allowed at most web.max_connections (8)"],
        );
        says(
            "[web]\nmax_connections_per_address = 10001\n",
            &["allowed 1..=10000"],
        );
        let err = load(&[Layer::Profile("fast".into())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown profile 'fast'") && err.contains("ultra_low"),
            "{err}"
        );
    }

    #[test]
    fn web_allow_defaults_to_the_receiver_and_loopback() {
        let mut c = load(&[]).unwrap();
        let nets = |c: &Config| {
            c.web
                .allowed(&c.stream.ip)
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
        };
        c.stream.ip = "192.168.1.100".into();
        assert_eq!(nets(&c), ["127.0.0.0/8", "::1/128", "192.168.1.100/32"]);
        c.web.allow = vec!["10.0.0.0/8".into(), "fd00::5".into()];
        assert_eq!(nets(&c), ["10.0.0.0/8", "fd00::5/128"]);
        let err = load(&[Layer::File {
            path: "x".into(),
            text: "[web]\nallow = [\"192.168.1.300\"]\n".into(),
        }])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("web.allow") && err.contains("192.168.1.300"),
            "{err}"
        );
    }
}
