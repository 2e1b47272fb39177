//! The web stage: the viewer page's process. It serves HTTPS ([`super::server`]), the
//! WebSocket viewers and the WebRTC peers ([`super::rtc`]) out of the realtime stages,
//! because everything it does answers peers on the network: their connections, TLS
//! handshakes and signalling must never cost a realtime stage CPU time or locked memory.
//!
//! - Scheduling: SCHED_OTHER at `stages.web.nice` on the `stages.web.cpus` (the
//!   housekeeping CPUs), no `mlockall` ([`crate::rt::apply_background`]).
//! - Input: the web queue, a [`BitstreamQueue`] the encode stage fills with a copy of each
//!   access unit through a lossy writer: when this stage is slow, stalled or dead, the
//!   copies are dropped and nothing else notices. After a drop (or on start) the viewers
//!   wait for the next IDR and this stage asks the encoder for one
//!   ([`BitstreamQueue::request_idr`]) — the same as a PLI.
//! - Output besides the viewers: the lowest bitrate target of its WebRTC peers
//!   ([`crate::shm::control::Control::set_web_target`]; the network stage gives the
//!   encoder the lowest of that and the RTP path's), the page figures for `dashboard`
//!   ([`crate::shm::stats::Stats::set_web`]) four times a second, and YOLO detections
//!   to the pages as they come.
//!
//! Crash-only like the other stages: the supervisor restarts it with backoff, and gives up
//! on it (streaming on without the page) only after `supervise.max_restarts`.

use super::{Hub, StreamDesc, auth::Gate, cert, error::WebError, server};
use crate::config::Config;
use crate::rt::{self, MonotonicNs, monotonic_ns};
use crate::shm::bitstream::{BitstreamQueue, FLAG_KEYFRAME, Next};
use crate::shm::control::{Control, StageState};
use crate::shm::stats::WebStats;
use crate::source::SourceFormat;
use crate::stage::{StageEnv, StageError, StageKind, beat, go_realtime, wait_go};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variable carrying the run's session key (hex, [`super::auth::KEY_LEN`]
/// bytes) from the supervisor to the web stage only.
pub const KEY_ENV: &str = "VR_STREAM_WEB_KEY";

/// How often the page figures go to the stats segment.
const STATS_EVERY_NS: u64 = 250_000_000;

/// Runs the web stage until end of stream or a stop request.
///
/// Errors: [`StageError::Realtime`] (`rt.strict`), and [`StageError::Web`]: the
/// certificate or key cannot be loaded, the port cannot be bound, the OS random source
/// fails (no PIN or token without it), the session key is missing.
pub(crate) fn run(env: StageEnv<'_>, queue: &BitstreamQueue) -> Result<(), StageError> {
    let (cfg, fmt, ctl, slot) = env.parts();
    // Scheduling first: the server's threads inherit this thread's CPUs and nice value.
    go_realtime(StageKind::Web, cfg, slot)?;
    let (hub, app) = start(cfg, &fmt, ctl)?;
    ctl.set_web_target(None);
    ctl.stats().set_web(&WebStats::default());
    let mut reader = queue.reader();
    // Whatever piled up while no web stage was running is stale.
    reader.skip_all();
    slot.set_state(StageState::Ready);
    if !wait_go(ctl) {
        return Ok(());
    }
    let mut dropped_seen = queue.dropped();
    let (mut det_seen, mut stats_ns) = (0u64, 0u64);
    loop {
        if ctl.stop_requested() {
            break;
        }
        match reader.next(Instant::now() + Duration::from_millis(100), Duration::ZERO) {
            Next::Au(au) => {
                let m = au.meta;
                let dropped = queue.dropped();
                if dropped != dropped_seen {
                    // Copies were dropped while this stage was busy: every viewer's decoder
                    // needs an IDR now.
                    dropped_seen = dropped;
                    hub.resync();
                }
                let key = m.flags & FLAG_KEYFRAME != 0;
                if hub.has_viewers() || key {
                    let now = rt::clock_pair();
                    hub.publish(
                        au.data,
                        key,
                        m.frame_id,
                        now.wall(MonotonicNs(m.capture_ns)),
                        now.real,
                    );
                }
                use std::sync::atomic::Ordering::Relaxed;
                slot.frames_in.fetch_add(1, Relaxed);
                slot.frames_out.fetch_add(1, Relaxed);
            }
            Next::Timeout => {}
            Next::Eos => break,
        }
        if hub.take_idr_request() {
            queue.request_idr();
        }
        ctl.set_web_target(hub.min_target());
        if cfg.detect.enabled {
            let runs = ctl.stats().detect().inferences;
            if runs != det_seen
                && let Some(set) = ctl.stats().detections()
            {
                det_seen = runs;
                if hub.has_viewers() {
                    let cap = rt::clock_pair().wall(MonotonicNs(set.capture_ns));
                    hub.publish_detections(super::detections_message(
                        set.frame_id,
                        cap,
                        fmt.width,
                        fmt.height,
                        &set.detections,
                    ));
                }
            }
        }
        let now = monotonic_ns();
        if now >= stats_ns + STATS_EVERY_NS {
            stats_ns = now;
            ctl.stats().set_web(&stats_of(&hub));
        }
        beat(slot);
    }
    ctl.stats().set_web(&stats_of(&hub));
    ctl.set_web_target(None);
    let c = hub.counters();
    let page = hub.report().map_or("no page report".to_string(), |r| {
        format!(
            "page decoded {}, capture->decoded p50 {:.1} p99 {:.1} ms, capture->display p50 {:.1} p99 {:.1} ms, decode {:.1} ms, {:.1} fps, {} reconnects",
            r.decoded, r.latency_p50_ms, r.latency_p99_ms, r.display_p50_ms, r.display_p99_ms, r.decode_ms, r.fps, r.reconnects
        )
    });
    let limited = app.limited.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "vr-stream[web]: {} access units to viewers, {} skipped, {} refused, {limited} connections reset at a limit; {page}",
        c.sent, c.skipped, c.refused
    );
    Ok(())
}

fn stats_of(hub: &Hub) -> WebStats {
    let c = hub.counters();
    WebStats {
        viewers: c.viewers,
        sent: c.sent,
        skipped: c.skipped,
        refused: c.refused,
        page: hub.report().map(|r| r.to_stats()),
        list: hub.viewer_list(),
    }
}

/// Starts the HTTPS server with the certificate, key and PIN the supervisor resolved into
/// `cfg.web`; returns the hub the viewers join.
fn start(
    cfg: &Config,
    fmt: &SourceFormat,
    ctl: &Control,
) -> Result<(Arc<Hub>, Arc<server::App>), WebError> {
    let w = &cfg.web;
    let (c, k) = (std::path::Path::new(&w.cert), std::path::Path::new(&w.key));
    let id = cert::load_or_create(Some(c), Some(k), &cert::default_dir(), &[])?;
    let codec = ctl
        .headers()
        .and_then(|h| super::codec_string(&h))
        .unwrap_or_default();
    let desc = StreamDesc {
        codec,
        width: fmt.width,
        height: fmt.height,
        fps: fmt.fps_num / fmt.fps_den.max(1),
        stereo: cfg.source.stereo,
    };
    let hub = Hub::new(desc);
    if cfg.abr.enabled {
        hub.set_abr(cfg.abr.params(cfg.encoder.bitrate_kbps));
    }
    // No session without the OS CSPRNG: find out now rather than at the first login.
    server::os_random(&mut [0u8; 16])?;
    let hex = std::env::var(KEY_ENV).unwrap_or_default();
    let key: [u8; super::auth::KEY_LEN] = super::auth::unhex(&hex)
        .and_then(|v| v.try_into().ok())
        .ok_or(WebError::SessionKey)?;
    let gate = Gate::new(
        w.pin.clone(),
        Duration::from_secs(w.session_ttl_s as u64),
        &key,
    );
    let app = server::App::new(
        server::tls_config(id)?,
        gate,
        hub.clone(),
        server::Limits::from_config(w),
        w.allowed(&cfg.stream.ip),
    );
    let ip: IpAddr = w
        .bind
        .parse()
        .map_err(|_| WebError::BindAddress(w.bind.clone()))?;
    server::start(SocketAddr::new(ip, w.port), app.clone())?;
    Ok((hub, app))
}
