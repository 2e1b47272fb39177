//! The supervisor: `vr-stream` itself. Creates the segments, starts the stage processes,
//! waits until each is ready, writes the SDP, gives the go signal, collects per-frame
//! latency records, forwards SIGINT/SIGTERM/SIGHUP as a stop, and tears everything down
//! (no child process and no segment outlives it).

use crate::config::{Config, WebConfig};
use crate::encode::{self, EncoderParams, open_encoder};
use crate::rt;
use crate::sdp::{SdpParams, write_sdp};
use crate::shm::control::Control;
use crate::shm::stats::NetCounters;
use crate::source::{self, SourceFormat, SourceSpec};
use crate::stage::{self, StageKind, StagePlan};
use anyhow::{Context, Result, anyhow, bail};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
pub use vr_shm::names::DEFAULT_INSTANCE;

/// How long a stage may take to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stages get to exit after a stop before they are killed.
pub const STOP_GRACE: Duration = Duration::from_millis(800);

/// What the supervisor was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Merged, validated configuration.
    pub cfg: Config,
    /// Instance name (segment prefix); lets tests run several side by side.
    pub instance: String,
    /// Write the SDP file and exit without streaming.
    pub sdp_only: bool,
    /// `--profile` name (shown by `dashboard`), if any.
    pub profile: Option<String>,
    /// The viewer page was asked for on the command line (`--web`, `--web-port`): a port
    /// that cannot be bound is then an error; otherwise (on by default) a note, and the
    /// stream runs without the page.
    pub web_explicit: bool,
}

/// Size and rate of the configured source, read without starting it (Y4M header, device
/// format, or the configured pattern size).
pub fn probe_source(cfg: &Config) -> Result<SourceFormat> {
    let src = &cfg.source;
    if src.stereo {
        // Opening both checks that they match; files and patterns open cheaply.
        return Ok(source::open(src)?.format());
    }
    match SourceSpec::parse(&src.uri).map_err(|e| anyhow!("source {:?}: {e}", src.uri))? {
        SourceSpec::Pattern => Ok(SourceFormat {
            width: src.width,
            height: src.height,
            fps_num: src.fps,
            fps_den: 1,
        }),
        SourceSpec::File(p) => Ok(source::y4m::probe(&p)?.format),
        // Reads (consumes) a Y4M pipe's header: `run` opens a pipe with `open_pipe` instead
        // and hands it on.
        SourceSpec::Pipe(_) => open_pipe(cfg)?
            .map(|p| p.1)
            .ok_or_else(|| anyhow!("source {:?} is not a pipe", src.uri)),
        SourceSpec::V4l2(_) | SourceSpec::Libcamera(_) => Ok(source::open(src)?.format()),
    }
}

/// A pipe source opened once by the supervisor: the open input (past any Y4M header), the
/// stream's format, and the bytes of header read. The camera stage gets it as its standard
/// input ([`source::pipe::STDIN_ENV`]), also after a restart.
pub type OpenPipe = (std::fs::File, SourceFormat, u64);

/// Opens the configured source when it is a pipe (`-`, `pipe:PATH`) and reads its Y4M
/// header; None for other sources. Errors: the pipe cannot be opened, or its header is
/// missing or bad (the message says what to give for bare I420 frames).
pub fn open_pipe(cfg: &Config) -> Result<Option<OpenPipe>> {
    let src = &cfg.source;
    let Ok(SourceSpec::Pipe(input)) = SourceSpec::parse(&src.uri) else {
        return Ok(None);
    };
    let format = source::pipe::PipeFormat::parse(&src.pipe_format)
        .map_err(|e| anyhow!("source.pipe_format {:?}: {e}", src.pipe_format))?;
    let raw = SourceFormat {
        width: src.width,
        height: src.height,
        fps_num: src.fps,
        fps_den: 1,
    };
    Ok(Some(source::pipe::open_input(&input, format, raw)?))
}

fn destination(cfg: &Config) -> Result<SocketAddr> {
    let ip: IpAddr = cfg
        .stream
        .ip
        .parse()
        .map_err(|_| anyhow!("stream.ip {:?} is not an IP address", cfg.stream.ip))?;
    Ok(SocketAddr::new(ip, cfg.stream.port))
}

fn sdp_text(cfg: &Config, fmt: &SourceFormat, headers: &[u8]) -> Result<String> {
    let dest = destination(cfg)?;
    let origin = crate::net::route_source(dest).unwrap_or(if dest.is_ipv4() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
    });
    let session_id = rt::realtime().0 / 1_000_000_000;
    Ok(write_sdp(&SdpParams {
        origin,
        dest: dest.ip(),
        port: dest.port(),
        payload_type: cfg.stream.payload_type,
        parameter_sets: headers,
        capture_time_ext_id: Some(cfg.stream.capture_time_ext_id),
        fps: (fmt.fps_num, fmt.fps_den),
        session_id,
    })?)
}

/// Writes the SDP file atomically (temporary file + rename), so a player never reads half.
fn write_sdp_file(path: &str, text: &str) -> Result<()> {
    let tmp = format!("{path}.tmp{}", std::process::id());
    std::fs::write(&tmp, text).with_context(|| format!("--sdp {path}: cannot write"))?;
    std::fs::rename(&tmp, path).with_context(|| format!("--sdp {path}: cannot write"))?;
    Ok(())
}

mod processes;
mod records;
pub mod restart;
pub mod summary;

use processes::{Launcher, Segments, Stages, Tick};
use records::Records;

pub use restart::{HEALTHY_AFTER, MAX_BACKOFF};
pub use summary::ExitSummary;

/// How recent the last refused RTP packet must be, at exit, for the stream to end with
/// nobody listening: a receiver that stopped or never started. The kernel reports an ICMP
/// port unreachable on a later send, and a receiver answers none, so a refusal within the
/// last second means none was there at the end.
pub const REFUSED_RECENT_NS: u64 = 1_000_000_000;

/// Whether the stream ended with nobody listening on the RTP port: packets were refused
/// (ECONNREFUSED, [`NetCounters::refused`]) and the last refusal was less than
/// [`REFUSED_RECENT_NS`] before `now_ns` (CLOCK_MONOTONIC). A receiver that started late
/// leaves early refusals only; a receiver there all along leaves none.
pub fn nobody_listening(net: &NetCounters, now_ns: u64) -> bool {
    net.refused > 0 && now_ns.saturating_sub(net.last_refused_ns) < REFUSED_RECENT_NS
}

/// One line about the encode stage's threads, read back per thread: `x264 3 slice threads;
/// 4 threads, all SCHED_FIFO 80 on cpus 1-3`, or each thread that differs.
pub fn threads_text(threads: &[rt::ThreadState], enc: &crate::config::EncoderConfig) -> String {
    let x264 = if enc.backend == "v4l2m2m" {
        String::new()
    } else if enc.threads > 1 {
        format!("x264 {} slice threads; ", enc.threads)
    } else {
        "x264 1 thread; ".to_string()
    };
    let Some(first) = threads.first() else {
        return format!("{x264}threads not readable");
    };
    let same = threads.iter().all(|t| {
        t.state.policy == first.state.policy
            && t.state.priority == first.state.priority
            && t.state.cpus == first.state.cpus
    });
    let place = |t: &rt::ThreadState| {
        format!(
            "{} {} on cpus {}",
            policy_name(t.state.policy as u32),
            t.state.priority,
            rt::cpu_list_text(&t.state.cpus)
        )
    };
    if same {
        format!("{x264}{} threads, all {}", threads.len(), place(first))
    } else {
        let each: Vec<String> = threads
            .iter()
            .map(|t| format!("{} {}", t.tid, place(t)))
            .collect();
        format!("{x264}{} threads: {}", threads.len(), each.join(", "))
    }
}

fn policy_name(p: u32) -> &'static str {
    match p as i32 {
        libc::SCHED_FIFO => "SCHED_FIFO",
        libc::SCHED_RR => "SCHED_RR",
        libc::SCHED_OTHER => "SCHED_OTHER",
        _ => "other",
    }
}

fn status_text(s: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".into(),
    }
}

/// `https://HOST:PORT/` for an address (IPv6 in brackets).
pub fn viewer_url(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V6(a) => format!("https://[{a}]:{port}/"),
        a => format!("https://{a}:{port}/"),
    }
}

/// The addresses a headset may type to reach a server bound to `bind`: `bind` itself if
/// it is one address, else every address of an interface that is up, not loopback and
/// not IPv6 link-local (getifaddrs(3)), IPv4 first.
fn reachable_addresses(bind: std::net::IpAddr) -> Vec<std::net::IpAddr> {
    use std::net::IpAddr;
    if !bind.is_unspecified() {
        return vec![bind];
    }
    let mut out: Vec<IpAddr> = vec![];
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if !a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
                || a.flags
                    .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
            {
                continue;
            }
            let Some(sa) = a.address else { continue };
            let ip = match (sa.as_sockaddr_in(), sa.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) if !v6.ip().is_unicast_link_local() && !v6.ip().is_loopback() => {
                    IpAddr::V6(v6.ip())
                }
                _ => continue,
            };
            if !ip.is_loopback() && !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out.sort_by_key(|ip| ip.is_ipv6());
    out
}

/// `HOSTNAME.local` if it resolves (mDNS through nss-mdns / Avahi, as on Raspberry Pi OS)
/// within a second; the lookup runs on its own thread so a resolver without mDNS cannot
/// hold the start-up.
fn mdns_name() -> Option<String> {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()?
        .trim()
        .to_string();
    if host.is_empty() || host.contains('.') {
        return None;
    }
    let name = format!("{host}.local");
    let (tx, rx) = std::sync::mpsc::channel();
    let n = name.clone();
    std::thread::Builder::new()
        .name("mdns-lookup".into())
        .spawn(move || {
            use std::net::ToSocketAddrs;
            let _ = tx.send(
                (n.as_str(), 443)
                    .to_socket_addrs()
                    .map(|mut a| a.next().is_some())
                    .unwrap_or(false),
            );
        })
        .ok()?;
    rx.recv_timeout(Duration::from_secs(1))
        .ok()
        .filter(|&ok| ok)
        .map(|_| name)
}

/// Resolves the viewer page's settings in `w` (certificate and key paths, generating the
/// kept self-signed pair if needed; the PIN, random if unset), checks that the port can be
/// bound, and returns the URLs to print: first the address of the interface that routes
/// to `dest_ip` (the headset's network), then the machine's other non-loopback addresses
/// and `https://HOSTNAME.local:PORT/` when mDNS resolves it.
///
/// Errors: an unreadable or invalid certificate or key (naming the file), no OS random
/// source.
fn web_setup(w: &mut crate::config::WebConfig, dest_ip: &str) -> Result<Vec<String>> {
    use crate::web::{auth, cert, server};
    use std::net::{IpAddr, UdpSocket};
    let bind: IpAddr = w
        .bind
        .parse()
        .map_err(|_| anyhow!("web.bind {:?} is not an IP address", w.bind))?;
    // The address the headset reaches us at: the source address of a route to it.
    let local = UdpSocket::bind((bind, 0))
        .and_then(|s| s.connect((dest_ip, 9)).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(if bind.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            bind
        });
    let mut addresses = vec![local];
    for a in reachable_addresses(bind) {
        if !addresses.contains(&a) {
            addresses.push(a);
        }
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(addresses.iter().map(|a| a.to_string()));
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
            names.push(format!("{h}.local"));
        }
    }
    names.dedup();
    let given = (!w.cert.is_empty()).then(|| {
        (
            std::path::PathBuf::from(&w.cert),
            std::path::PathBuf::from(&w.key),
        )
    });
    let dir = if w.cert_dir.is_empty() {
        cert::default_dir()
    } else {
        w.cert_dir.clone().into()
    };
    let id = cert::load_or_create(
        given.as_ref().map(|g| g.0.as_path()),
        given.as_ref().map(|g| g.1.as_path()),
        &dir,
        &names,
    )
    .map_err(|e| anyhow!("web certificate: {e}"))?;
    if id.generated {
        eprintln!(
            "vr-stream: generated a self-signed certificate for the viewer page: {} (the browser asks to accept it once)",
            id.cert_path.display()
        );
    }
    let key_path = given
        .map(|g| g.1)
        .unwrap_or_else(|| dir.join("web-key.pem"));
    w.cert = id.cert_path.display().to_string();
    w.key = key_path.display().to_string();
    server::tls_config(id).map_err(|e| anyhow!("web certificate: {e}"))?;
    if w.pin.is_empty() {
        let mut r = [0u8; 8];
        server::os_random(&mut r).map_err(|e| {
            anyhow!("viewer page: {e} (web.enabled = false or --no-web streams without the page)")
        })?;
        w.pin = auth::pin_from(r);
    }
    let mut urls: Vec<String> = addresses.iter().map(|&a| viewer_url(a, w.port)).collect();
    if let Some(n) = mdns_name() {
        urls.push(format!("https://{n}:{}/", w.port));
    }
    Ok(urls)
}

/// Runs the stream until end of stream, a stop signal or a stage failure, and prints the
/// exit summary on stderr.
///
/// Returns the summary (`None` for `--sdp-only` and a stop before streaming began); a
/// stage that failed for good is its `error`, and the caller exits non-zero.
///
/// Errors: bad source, segment in use, a stage that fails to start (naming the stage and
/// its reason), an unwritable SDP or latency log.
pub fn run(opts: &RunOptions) -> Result<Option<ExitSummary>> {
    let pipe = open_pipe(&opts.cfg)?;
    let fmt = match &pipe {
        Some((_, f, _)) => *f,
        None => probe_source(&opts.cfg)?,
    };
    check_before_start(opts)?;
    let page = ViewerPage::settle(opts)?;
    // `cfg`: with the page on or off as settled; the stages get its resolved settings.
    let mut cfg = opts.cfg.clone();
    cfg.web.enabled = page.on;
    let cfg = &cfg;
    let mut stage_cfg = cfg.clone();
    if page.on {
        stage_cfg.web = page.web;
    }
    if opts.sdp_only {
        write_sdp_only(cfg, &fmt)?;
        return Ok(None);
    }
    let mut records = Records::open(cfg)?;
    let active = stage::active(cfg);
    let rt_warned = check_realtime(cfg, &active)?;
    let segs = Segments::create(opts, cfg, &fmt)?;
    rt::install_stop_signals();
    let launcher = Launcher::new(opts, &stage_cfg, &fmt, pipe.as_ref(), rt_warned, page.key)?;
    let policy = restart::Policy {
        first_backoff: Duration::from_millis(cfg.supervise.backoff_ms as u64),
        max_restarts: cfg.supervise.max_restarts,
    };
    let mut stages = Stages::start(&active, &launcher, policy, &segs)?;
    let started = stages.wait_ready(&segs.ctl).and_then(|ready| {
        if ready {
            stages.print_placement(cfg, &segs.ctl);
            write_stream_sdp(cfg, &fmt, &segs.ctl)?;
        }
        Ok(ready)
    });
    if !matches!(started, Ok(true)) {
        stages.stop(&segs);
        return started.map(|_| None);
    }
    eprintln!("{}", streaming_line(cfg, &fmt));
    segs.ctl.set_go();
    let failure = supervise(&mut stages, &segs, &launcher, &mut records, cfg);
    stages.stop(&segs);
    records.drain(&segs.ctl);
    records.finish()?;
    Ok(Some(exit_summary(cfg, &segs, &records, failure)))
}

/// Watches the stream every 20 ms until it ends: reads the latency records (and prints
/// the periodic report every `stats.interval_s`), and lets [`Stages::tick`] handle exits,
/// hangs and restarts. Returns why the stream failed, `None` at its end or on a stop
/// signal.
fn supervise(
    stages: &mut Stages,
    segs: &Segments,
    launcher: &Launcher,
    records: &mut Records,
    cfg: &Config,
) -> Option<String> {
    let interval = Duration::from_secs(cfg.stats.interval_s as u64);
    let mut next_report = Instant::now() + interval;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        records.drain(&segs.ctl);
        if !interval.is_zero() && Instant::now() >= next_report {
            eprint!("{}", records.window.report());
            records.window.reset();
            next_report += interval;
        }
        if rt::stop_signal() != 0 {
            return None;
        }
        match stages.tick(&segs.ctl, launcher, cfg, Instant::now()) {
            Tick::Running => {}
            Tick::Done => return None,
            Tick::Failed(why) => return Some(why),
        }
    }
}

/// What can be checked before any segment or stage exists, so that each is one clear
/// error: the destination, the encoder backend (a missing device or feature; the encode
/// stage opens it for real) and, with `--yolo`, the detector's library and model (the
/// detect stage opens them again for itself). Prints the backend's note and the model.
fn check_before_start(opts: &RunOptions) -> Result<()> {
    let cfg = &opts.cfg;
    destination(cfg)?;
    let (_, note) = encode::choose_backend(
        &cfg.encoder,
        std::path::Path::new(&cfg.encoder.device).exists(),
        encode::M2M_BUILT,
    )?;
    if let Some(n) = note {
        eprintln!("vr-stream: {n}");
    }
    if cfg.detect.enabled && !opts.sdp_only {
        let d = crate::detect::assets::open(&cfg.detect).map_err(|e| anyhow!("--yolo: {e}"))?;
        let (model, size) = (d.model().display(), d.size());
        eprintln!("vr-stream: detector {model} ({size}x{size} input)");
    }
    Ok(())
}

/// The viewer page as settled before anything starts: certificate, PIN and port (one
/// clear error before anything starts; the web stage serves it with these settings).
struct ViewerPage {
    /// The page is served.
    on: bool,
    /// `[web]` with the certificate and PIN resolved.
    web: WebConfig,
    /// The run's session key (auth.rs), for the web stage only: its sessions outlive a
    /// restart of the web stage, not of vr-stream. Empty when the page is off.
    key: String,
}

impl ViewerPage {
    /// Settles the page of `opts` and prints where to open it. The page is on by default:
    /// what stops it (the port taken by another run, a certificate directory this user
    /// cannot write) leaves it off with a note, unless it was asked for on the command
    /// line.
    ///
    /// Errors: only for a page asked for on the command line ([`settle_web`]'s).
    fn settle(opts: &RunOptions) -> Result<ViewerPage> {
        let mut page = ViewerPage {
            on: opts.cfg.web.enabled && !opts.sdp_only,
            web: opts.cfg.web.clone(),
            key: String::new(),
        };
        if !page.on {
            return Ok(page);
        }
        match settle_web(&mut page.web, &opts.cfg.stream.ip) {
            Ok((key, lines)) => {
                page.key = key;
                for l in &lines {
                    eprintln!("{l}");
                }
            }
            Err(e) if opts.web_explicit => bail!("viewer page (--web/--web-port): {e:#}"),
            Err(e) => {
                eprintln!(
                    "vr-stream: note: no viewer page: {e:#} (--web-port PORT picks another port, web.cert_dir another directory, --no-web turns the page off)"
                );
                page.on = false;
            }
        }
        Ok(page)
    }
}

/// `--sdp-only`: opens the encoder for its SPS/PPS and writes the SDP file.
///
/// Errors: no SDP path, the encoder cannot be opened, the file cannot be written.
fn write_sdp_only(cfg: &Config, fmt: &SourceFormat) -> Result<()> {
    if cfg.stream.sdp.is_empty() {
        bail!("--sdp-only needs an SDP path (--sdp PATH or stream.sdp)");
    }
    let (mut enc, _notes) = open_encoder(&EncoderParams::from_config(&cfg.encoder, *fmt))?;
    let text = sdp_text(cfg, fmt, &enc.headers()?)?;
    write_sdp_file(&cfg.stream.sdp, &text)?;
    eprintln!("vr-stream: wrote {}", cfg.stream.sdp);
    Ok(())
}

/// Writes `stream.sdp` (when set) with the SPS/PPS the encode stage published.
///
/// Errors: none were published, the file cannot be written.
fn write_stream_sdp(cfg: &Config, fmt: &SourceFormat, ctl: &Control) -> Result<()> {
    if cfg.stream.sdp.is_empty() {
        return Ok(());
    }
    let headers = ctl
        .headers()
        .ok_or_else(|| anyhow!("encode stage published no SPS/PPS"))?;
    write_sdp_file(&cfg.stream.sdp, &sdp_text(cfg, fmt, &headers)?)
}

/// Checks the realtime privileges once for all `active` stages: a warning on stderr (an
/// error with `rt.strict`), and a note for CPUs configured beyond this machine's. Returns
/// whether it warned (the stages then do not warn again).
///
/// Errors: `rt.strict` and missing privileges.
fn check_realtime(cfg: &Config, active: &[StageKind]) -> Result<bool> {
    let max_prio = active
        .iter()
        .map(|k| k.placement(cfg).priority)
        .max()
        .unwrap_or(1);
    let warned = rt::describe(&rt::check_limits(max_prio, cfg.rt.mlock));
    if let Some(msg) = &warned {
        if cfg.rt.strict {
            bail!("--strict-rt: {msg}");
        }
        eprintln!("vr-stream: warning: {msg}");
    }
    let mapped: Vec<String> = active
        .iter()
        .map(|&k| (k, k.placement(cfg)))
        .filter(|(_, p)| p.mapped)
        .map(|(k, p)| {
            format!(
                "{} {}->{}",
                k.name(),
                p.configured,
                rt::cpu_list_text(&p.cpus)
            )
        })
        .collect();
    if !mapped.is_empty() {
        eprintln!(
            "vr-stream: note: CPUs configured beyond this machine's; mapped modulo the CPU count: {}",
            mapped.join(", ")
        );
    }
    Ok(warned.is_some())
}

/// The line that says the stream started: source, size, rate, bitrate, destination, SDP.
fn streaming_line(cfg: &Config, fmt: &SourceFormat) -> String {
    let src = &cfg.source;
    let what = if src.stereo {
        let right = if src.right_uri.is_empty() {
            &src.uri
        } else {
            &src.right_uri
        };
        format!("stereo {} | {}", src.uri, right)
    } else if src.uri == "-" {
        format!("standard input ({})", src.pipe_format)
    } else if src.uri.starts_with("pipe:") {
        format!("{} ({})", src.uri, src.pipe_format)
    } else {
        src.uri.clone()
    };
    let sdp = if cfg.stream.sdp.is_empty() {
        String::new()
    } else {
        format!(" (SDP: {})", cfg.stream.sdp)
    };
    format!(
        "vr-stream: streaming {what} {}x{} @ {}/{} fps, {} kbit/s to {}:{}{sdp}",
        fmt.width,
        fmt.height,
        fmt.fps_num,
        fmt.fps_den,
        cfg.encoder.bitrate_kbps,
        cfg.stream.ip,
        cfg.stream.port,
    )
}

/// Settles the viewer page before anything starts: checks that `web.bind`:`web.port` can be
/// listened on, makes or loads the certificate and the PIN (written into `web`), and draws
/// the run's session key from the OS CSPRNG. Returns the key (hex) and the lines telling
/// the user where to open the page. `dest_ip`: the stream's destination (the headset).
///
/// Errors: a bind address that is not an IP address, a port in use, a certificate
/// directory that cannot be written, no randomness from the OS.
fn settle_web(web: &mut crate::config::WebConfig, dest_ip: &str) -> Result<(String, Vec<String>)> {
    let bind: IpAddr = web
        .bind
        .parse()
        .map_err(|_| anyhow!("web.bind {:?} is not an IP address", web.bind))?;
    let addr = SocketAddr::new(bind, web.port);
    drop(std::net::TcpListener::bind(addr).map_err(|e| anyhow!("cannot listen on {addr}: {e}"))?);
    let urls = web_setup(web, dest_ip)?;
    let mut k = [0u8; crate::web::auth::KEY_LEN];
    crate::web::server::os_random(&mut k).map_err(|e| anyhow!("viewer page: {e}"))?;
    let key = crate::web::auth::hex(&k);
    let mut lines = vec![format!(
        "vr-stream: viewer page {}  PIN {}",
        urls[0], web.pin
    )];
    // What to type on the headset: an address other than loopback when there is one.
    let loopback = |u: &String| u.starts_with("https://127.") || u.starts_with("https://[::1]");
    let (head, rest): (Vec<&String>, Vec<&String>) = urls.iter().partition(|u| !loopback(u));
    let mut order: Vec<&String> = head
        .into_iter()
        .chain(rest.into_iter().filter(|u| !loopback(u)))
        .collect();
    order.dedup();
    if let Some((first, others)) = order.split_first() {
        let others = if others.is_empty() {
            String::new()
        } else {
            format!(
                " (or {})",
                others
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        lines.push(format!("vr-stream: on the headset, open {first}{others} in the Quest Browser, accept the certificate once and enter the PIN"));
    }
    let who: Vec<String> = web.allowed(dest_ip).iter().map(|n| n.to_string()).collect();
    lines.push(format!(
        "vr-stream: the page answers {} only (web.allow; --no-web turns it off)",
        who.join(", ")
    ));
    Ok((key, lines))
}

/// The exit summary from the segments of a finished run.
fn gather_summary(
    cfg: &Config,
    segs: &Segments,
    records: &Records,
    failure: Option<String>,
) -> ExitSummary {
    let (ctl, queue, stats) = (&segs.ctl, &segs.queue, &records.all);
    let net = ctl.stats().net();
    let absent = nobody_listening(&net, rt::monotonic_ns());
    let enc = ctl.stage(StageKind::Encode);
    let encoded = ctl.stats().encoded();
    ExitSummary {
        version: summary::SUMMARY_VERSION,
        frames: summary::FrameCounts {
            captured: ctl
                .stage(StageKind::Camera)
                .frames_out
                .load(Ordering::Relaxed),
            encoded: enc.frames_in.load(Ordering::Relaxed),
            sent: ctl
                .stage(StageKind::Network)
                .frames_out
                .load(Ordering::Relaxed),
            ring_drops: enc.drops.load(Ordering::Relaxed),
            queue_drops: queue.dropped(),
            idr: encoded.idr,
            encoded_bytes: encoded.bytes,
        },
        network: summary::NetworkSummary::from_counters(
            &net,
            absent,
            ctl.stats().info().bitrate_kbps,
        ),
        restarts: stage::START_ORDER
            .into_iter()
            .map(|k| (k.name(), ctl.stage(k).restarts.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        detect: cfg.detect.enabled.then(|| {
            let d = ctl.stats().detect();
            summary::DetectSummary {
                inferences: d.inferences,
                skipped: ctl.stage(StageKind::Detect).drops.load(Ordering::Relaxed),
                mean_infer_ms: d.infer_us_total as f64 / d.inferences.max(1) as f64 / 1000.0,
                detections: d.detections,
            }
        }),
        rtcp: summary::RtcpSummary::from_counters(&ctl.stats().rtcp()),
        latency_ms: summary::latency_ms(stats),
        stereo_pair_skew_ms: stats.pair_skew().map(summary::SpanMs::from),
        latency_records_lost: records.lost,
        error: failure,
    }
}

/// Gathers the exit summary from the segments of a finished run and prints it on stderr
/// (the human lines and the latency table). `failure`: why the run failed, if it did.
fn exit_summary(
    cfg: &Config,
    segs: &Segments,
    records: &Records,
    failure: Option<String>,
) -> ExitSummary {
    let ctl = &segs.ctl;
    let summary = gather_summary(cfg, segs, records, failure);
    if let Some(l) = summary.restarts_line() {
        eprintln!("{l}");
    }
    eprintln!("{}", summary.frames_line());
    let destination = ctl.stats().info().destination;
    let (port, sdp) = (cfg.stream.port, &cfg.stream.sdp);
    if let Some(l) = summary.nobody_listening_line(&destination, port, sdp, cfg.web.enabled) {
        eprintln!("{l}");
    }
    if let Some(l) = summary.pacing_line() {
        eprintln!("{l}");
    }
    if let Some(d) = &summary.detect {
        let det = ctl.stats().detect();
        let newest = ctl.stats().detections();
        let line = summary::detect_line(d, det.last_infer_us, det.last_prep_us, newest.as_ref());
        eprintln!("{line}");
    }
    if let Some(l) = summary.rtcp_line() {
        eprintln!("{l}");
    }
    if records.all.count() > 0 {
        eprint!("{}", records.all.report());
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(refused: u64, last_refused_ns: u64) -> NetCounters {
        NetCounters {
            refused,
            last_refused_ns,
            ..Default::default()
        }
    }

    #[test]
    fn nobody_listening_needs_a_recent_refusal() {
        let end = 50_000_000_000;
        // Refused until the end: nobody was there.
        assert!(nobody_listening(&net(600, end - 10_000_000), end));
        // No refusal at all: a receiver, or a host that drops silently.
        assert!(!nobody_listening(&net(0, 0), end));
        // Refused only early on: the receiver started late.
        assert!(!nobody_listening(&net(3, end - REFUSED_RECENT_NS - 1), end));
        // A clock read before the last refusal is stored cannot underflow.
        assert!(nobody_listening(&net(1, end + 5), end));
    }
}
