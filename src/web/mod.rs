//! The headset end: an HTTPS server in its own stage process ([`stage`]) that serves the viewer page
//! (plain ES modules from `web/`, compiled into the binary) and streams the same access
//! units the RTP path sends, one per WebSocket message, to pages that logged in with the
//! PIN ([`auth`]).
//!
//! The web stage publishes each access unit of its queue (the encoder's copy) to the
//! [`Hub`]; the hub never blocks it: a busy hub (`try_lock`) or a viewer whose queue is
//! full skips the frame, that viewer then waits for the next IDR and the hub asks the
//! encoder for one (the same path as a PLI).
//!
//! WebSocket media message (binary), all integers big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version, 1 |
//! | 1 | flags: bit 0 = keyframe (the access unit starts with SPS/PPS + IDR) |
//! | 2..4 | reserved, 0 |
//! | 4..8 | frame id (low 32 bits) |
//! | 8..16 | capture time, Unix ns (the sender's wall clock; the page corrects it by the clock offset) |
//! | 16..24 | send time, Unix ns |
//! | 24.. | the access unit, Annex-B (start codes), as in the RTP stream |
//!
//! Text messages are JSON: server → page `hello` (codec string from the SPS, width,
//! height, fps, stereo) and `pong` (`t1` echoed, `t2` = server Unix ms); page → server
//! `ping` (`t1` = page Unix ms), `keyframe` (its decoder fell behind or failed: the hub
//! asks the encoder for an IDR, like a PLI) and `stats` (its decoded count, capture →
//! decoded latency p50/p99 in ms, decode time, fps).

pub mod auth;
pub mod cert;
pub mod error;
pub mod rtc;
pub mod server;
pub mod stage;

use crate::rt::UnixNs;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::error::TrySendError;

/// Media message header length, bytes.
pub const HEADER_LEN: usize = 24;
/// Access units a viewer may have queued before it is skipped to the next IDR.
pub const VIEWER_QUEUE: usize = 8;

/// What the page needs to configure its decoder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamDesc {
    /// RFC 6381 codec string, e.g. `avc1.42c01f` (from the SPS).
    pub codec: String,
    /// Frame size, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Left | right side by side in one frame.
    pub stereo: bool,
}

/// RFC 6381 `avc1.PPCCLL` from the first SPS in `annexb` (profile_idc, constraint flags,
/// level_idc: the three bytes after the NAL header); `None` without an SPS.
pub fn codec_string(annexb: &[u8]) -> Option<String> {
    let sps = crate::rtp::nal_units(annexb)
        .find(|n| n.first().is_some_and(|h| h & 0x1f == 7) && n.len() >= 4)?;
    Some(format!("avc1.{:02x}{:02x}{:02x}", sps[1], sps[2], sps[3]))
}

/// The media message for one access unit (layout in the module doc).
pub fn media_message(
    au: &[u8],
    keyframe: bool,
    frame_id: u64,
    capture: UnixNs,
    send: UnixNs,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + au.len());
    m.extend_from_slice(&[1, keyframe as u8, 0, 0]);
    m.extend_from_slice(&(frame_id as u32).to_be_bytes());
    m.extend_from_slice(&capture.0.to_be_bytes());
    m.extend_from_slice(&send.0.to_be_bytes());
    m.extend_from_slice(au);
    m
}

struct Viewer {
    id: u64,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    need_key: bool,
    addr: std::net::SocketAddr,
    transport: crate::shm::stats::PageTransport,
    report: Option<PageReport>,
}

/// What a page reported last (its `stats` message).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PageReport {
    /// Frames the page decoded so far.
    pub decoded: u64,
    /// Capture → decoded latency on the page, ms (clock-offset corrected).
    pub latency_p50_ms: f64,
    /// The same, 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// Capture → expected display on the page, p50, ms.
    pub display_p50_ms: f64,
    /// The same, 99th percentile, ms.
    pub display_p99_ms: f64,
    /// Connections the page made again after a drop.
    pub reconnects: u32,
    /// Decoder time per frame (chunk in → frame out), p50, ms.
    pub decode_ms: f64,
    /// Frames decoded per second over the last report interval.
    pub fps: f64,
    /// The page's transport.
    pub transport: crate::shm::stats::PageTransport,
    /// When the report arrived, CLOCK_MONOTONIC ns.
    pub received_ns: u64,
}

impl PageReport {
    /// From a page's `stats` message (`{"type":"stats","transport":"webrtc","decoded":N,
    /// "latency_p50_ms":…,"latency_p99_ms":…,"display_p50_ms":…,"display_p99_ms":…,
    /// "decode_ms":…,"fps":…,"reconnects":N}`) received at `now_ns`; missing numbers are
    /// NaN (0 for counts).
    pub fn from_message(v: &serde_json::Value, now_ns: u64) -> PageReport {
        PageReport {
            decoded: v["decoded"].as_u64().unwrap_or(0),
            latency_p50_ms: v["latency_p50_ms"].as_f64().unwrap_or(f64::NAN),
            latency_p99_ms: v["latency_p99_ms"].as_f64().unwrap_or(f64::NAN),
            display_p50_ms: v["display_p50_ms"].as_f64().unwrap_or(f64::NAN),
            display_p99_ms: v["display_p99_ms"].as_f64().unwrap_or(f64::NAN),
            reconnects: v["reconnects"].as_u64().unwrap_or(0).min(u32::MAX as u64) as u32,
            decode_ms: v["decode_ms"].as_f64().unwrap_or(f64::NAN),
            fps: v["fps"].as_f64().unwrap_or(0.0),
            transport: crate::shm::stats::PageTransport::parse(
                v["transport"].as_str().unwrap_or(""),
            ),
            received_ns: now_ns,
        }
    }

    /// For the stats segment (NaN and negative times as 0).
    pub fn to_stats(&self) -> crate::shm::stats::PageStats {
        let d = |ms: f64| {
            std::time::Duration::from_secs_f64(if ms.is_finite() {
                ms.max(0.0) / 1000.0
            } else {
                0.0
            })
        };
        crate::shm::stats::PageStats {
            transport: self.transport,
            report_ns: self.received_ns,
            decoded: self.decoded,
            latency_p50: d(self.latency_p50_ms),
            latency_p99: d(self.latency_p99_ms),
            display_p50: d(self.display_p50_ms),
            display_p99: d(self.display_p99_ms),
            reconnects: self.reconnects,
            decode: d(self.decode_ms),
            fps_milli: (self.fps.max(0.0) * 1000.0).min(u32::MAX as f64) as u32,
        }
    }
}

/// Counters of the web path.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebCounters {
    /// Viewers connected now.
    pub viewers: u64,
    /// Access units queued to viewers (summed over viewers).
    pub sent: u64,
    /// Access units a viewer missed (queue full, hub busy, waiting for an IDR).
    pub skipped: u64,
    /// Logins refused (wrong PIN, blocked address, bad token).
    pub refused: u64,
}

/// Between the network stage (producer) and the viewers' threads.
#[derive(Default)]
pub struct Hub {
    viewers: Mutex<Vec<Viewer>>,
    count: AtomicU64,
    next_id: AtomicU64,
    want_idr: AtomicBool,
    desc: Mutex<StreamDesc>,
    sent: AtomicU64,
    skipped: AtomicU64,
    refused: AtomicU64,
    report: Mutex<Option<PageReport>>,
    abr: Mutex<Option<crate::abr::AbrParams>>,
    targets: Mutex<Vec<(u64, u32)>>,
    detections: Mutex<(u64, Option<Arc<String>>)>,
}

/// The `detections` message for the page (JSON text): `{"type":"detections","id":FRAME,
/// "cap":MS,"w":W,"h":H,"boxes":[{"c":CLASS,"s":SCORE,"b":[X0,Y0,X1,Y1]},…]}` — frame id,
/// its capture time (Unix ms), the frame size, and per detection the COCO class index,
/// the score (0..1) and the box in frame pixels.
pub fn detections_message(
    frame_id: u64,
    capture: UnixNs,
    width: u32,
    height: u32,
    dets: &[crate::detect::Detection],
) -> String {
    let boxes: Vec<serde_json::Value> = dets
        .iter()
        .map(|d| serde_json::json!({ "c": d.class, "s": (d.score * 1000.0).round() / 1000.0, "b": d.bbox.map(|v| v.round()) }))
        .collect();
    serde_json::json!({ "type": "detections", "id": frame_id, "cap": capture.as_millis_f64(), "w": width, "h": height, "boxes": boxes }).to_string()
}

impl Hub {
    /// An empty hub for a stream described by `desc` (the codec string is filled in from
    /// the first keyframe if empty).
    pub fn new(desc: StreamDesc) -> Arc<Hub> {
        Arc::new(Hub {
            desc: Mutex::new(desc),
            ..Default::default()
        })
    }

    /// The stream description.
    pub fn desc(&self) -> StreamDesc {
        self.desc.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Whether anyone is watching (one atomic load: the network stage's fast path).
    pub fn has_viewers(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Adds a viewer (its page at `addr`, over `transport`); returns its id and the
    /// receiving end of its queue ([`VIEWER_QUEUE`] media messages, [`media_message`]). It
    /// gets frames from the next IDR on, which is requested now.
    pub fn join(
        &self,
        addr: std::net::SocketAddr,
        transport: crate::shm::stats::PageTransport,
    ) -> (u64, tokio::sync::mpsc::Receiver<Bytes>) {
        let (tx, rx) = tokio::sync::mpsc::channel(VIEWER_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut v = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        v.push(Viewer {
            id,
            tx,
            need_key: true,
            addr,
            transport,
            report: None,
        });
        self.count.store(v.len() as u64, Ordering::Relaxed);
        self.want_idr.store(true, Ordering::Release);
        (id, rx)
    }

    /// Removes viewer `id` (and its bitrate target).
    pub fn leave(&self, id: u64) {
        let mut v = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|x| x.id != id);
        self.count.store(v.len() as u64, Ordering::Relaxed);
        drop(v);
        self.set_target(id, None);
    }

    /// Turns on adaptive bitrate for WebRTC peers: each runs its own
    /// [`crate::abr::RateController`] with `p` on the receiver reports its browser sends.
    pub fn set_abr(&self, p: crate::abr::AbrParams) {
        if let Ok(mut g) = self.abr.lock() {
            *g = Some(p);
        }
    }

    /// The adaptive bitrate settings for peers (`None`: off).
    pub fn abr(&self) -> Option<crate::abr::AbrParams> {
        self.abr.lock().ok().and_then(|g| *g)
    }

    /// Offers the newest detections (a [`detections_message`]) to the viewers, latest-wins:
    /// a viewer sends the newest one it has not sent yet. Never waits (a busy slot skips).
    pub fn publish_detections(&self, message: String) {
        if let Ok(mut d) = self.detections.try_lock() {
            d.0 += 1;
            d.1 = Some(Arc::new(message));
        }
    }

    /// The newest detections message if newer than `seen` (0 at first), with its number.
    pub fn detections_after(&self, seen: u64) -> Option<(u64, Arc<String>)> {
        let d = self.detections.try_lock().ok()?;
        (d.0 > seen)
            .then(|| (d.0, d.1.clone()))
            .and_then(|(n, m)| m.map(|m| (n, m)))
    }

    /// Sets (or with `None` clears) viewer `id`'s bitrate target, kbit/s.
    pub fn set_target(&self, id: u64, kbps: Option<u32>) {
        let mut t = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|x| x.0 != id);
        if let Some(k) = kbps {
            t.push((id, k));
        }
    }

    /// The lowest bitrate target of the viewers, kbit/s: one encoder feeds every output,
    /// so it runs at the rate the worst path carries. `None` when no viewer has one.
    pub fn min_target(&self) -> Option<u32> {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|x| x.1)
            .min()
    }

    /// Access units were lost before the hub saw them (the web queue dropped copies):
    /// every viewer waits for the next IDR, which is requested now.
    pub fn resync(&self) {
        let mut v = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        for x in v.iter_mut() {
            x.need_key = true;
        }
        if !v.is_empty() {
            self.want_idr.store(true, Ordering::Release);
        }
    }

    /// Offers one access unit to every viewer without blocking (see the module doc).
    /// `au` is Annex-B; `capture` and `send` are wall-clock times.
    pub fn publish(&self, au: &[u8], keyframe: bool, frame_id: u64, capture: UnixNs, send: UnixNs) {
        // The codec string from the first IDR's SPS even with nobody watching, so the first
        // viewer's `hello` has it.
        if keyframe
            && let Ok(mut d) = self.desc.try_lock()
            && d.codec.is_empty()
            && let Some(c) = codec_string(au)
        {
            d.codec = c;
        }
        if !self.has_viewers() {
            return;
        }
        let Ok(mut viewers) = self.viewers.try_lock() else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let msg = Bytes::from(media_message(au, keyframe, frame_id, capture, send));
        viewers.retain_mut(|v| {
            if v.need_key && !keyframe {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            match v.tx.try_send(msg.clone()) {
                Ok(()) => {
                    v.need_key = false;
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Full(_)) => {
                    v.need_key = true;
                    self.want_idr.store(true, Ordering::Release);
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        self.count.store(viewers.len() as u64, Ordering::Relaxed);
    }

    /// Whether a viewer needs an IDR (cleared by the call): the network stage then asks
    /// the encoder for one.
    pub fn take_idr_request(&self) -> bool {
        self.want_idr.swap(false, Ordering::AcqRel)
    }

    /// A page's decoder fell behind or failed: ask the encoder for an IDR.
    pub fn request_idr(&self) {
        self.want_idr.store(true, Ordering::Release);
    }

    /// Counts a refused login or connection.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The `hello` message for a new viewer (JSON text): codec string, size, fps, stereo.
    pub fn hello(&self) -> String {
        let d = self.desc();
        serde_json::json!({ "type": "hello", "codec": d.codec, "width": d.width, "height": d.height, "fps": d.fps, "stereo": d.stereo }).to_string()
    }

    /// Handles a JSON text message from viewer `id`'s page (either transport): `keyframe`
    /// asks for an IDR, `stats` stores the report (the viewer's and the newest of all),
    /// `ping` returns the `pong` to send back (server time in Unix ms); anything else, or
    /// malformed JSON, is ignored.
    pub fn page_message(&self, id: u64, text: &[u8]) -> Option<String> {
        let v = serde_json::from_slice::<serde_json::Value>(text).ok()?;
        match v["type"].as_str() {
            Some("ping") => Some(serde_json::json!({ "type": "pong", "t1": v["t1"], "t2": crate::rt::realtime().as_millis_f64() }).to_string()),
            Some("keyframe") => {
                self.request_idr();
                None
            }
            Some("stats") => {
                let r = PageReport::from_message(&v, crate::rt::monotonic_ns());
                if let Some(x) = self.viewers.lock().unwrap_or_else(|e| e.into_inner()).iter_mut().find(|x| x.id == id) {
                    x.report = Some(r);
                }
                self.set_report(r);
                None
            }
            _ => None,
        }
    }

    /// Stores a page's report.
    pub fn set_report(&self, r: PageReport) {
        if let Ok(mut g) = self.report.lock() {
            *g = Some(r);
        }
    }

    /// The viewers connected now (at most [`crate::shm::stats::MAX_VIEWER_ROWS`], oldest
    /// first) with their pages' last reports.
    pub fn viewer_list(&self) -> Vec<crate::shm::stats::ViewerStats> {
        let v = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        v.iter()
            .take(crate::shm::stats::MAX_VIEWER_ROWS)
            .map(|x| crate::shm::stats::ViewerStats {
                addr: x.addr,
                transport: x.transport,
                report: x.report.map(|r| r.to_stats()),
            })
            .collect()
    }

    /// The latest page report, if any.
    pub fn report(&self) -> Option<PageReport> {
        self.report.lock().ok().and_then(|g| *g)
    }

    /// The counters.
    pub fn counters(&self) -> WebCounters {
        WebCounters {
            viewers: self.count.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_string_from_the_sps() {
        let au = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xaa, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88,
        ];
        assert_eq!(codec_string(&au).as_deref(), Some("avc1.42c01f"));
        assert_eq!(codec_string(&[0, 0, 0, 1, 0x41, 0x9a]), None);
    }

    #[test]
    fn media_message_layout() {
        let m = media_message(
            &[9, 8, 7],
            true,
            0x1_0000_0005,
            UnixNs(0x0102030405060708),
            UnixNs(42),
        );
        assert_eq!(&m[..4], &[1, 1, 0, 0]);
        assert_eq!(&m[4..8], &5u32.to_be_bytes());
        assert_eq!(&m[8..16], &0x0102030405060708u64.to_be_bytes());
        assert_eq!(&m[16..24], &42u64.to_be_bytes());
        assert_eq!(&m[24..], &[9, 8, 7]);
    }

    #[test]
    fn a_viewer_starts_at_an_idr_and_a_full_queue_skips_to_the_next_one() {
        let hub = Hub::new(StreamDesc::default());
        hub.publish(b"x", false, 0, UnixNs(0), UnixNs(0));
        assert_eq!(hub.counters().sent, 0, "nobody watching: nothing built");
        let (_id, mut rx) = hub.join(
            ([127, 0, 0, 1], 9).into(),
            crate::shm::stats::PageTransport::WebSocket,
        );
        assert!(hub.take_idr_request(), "a new viewer asks for an IDR");
        assert!(!hub.take_idr_request());
        hub.publish(b"p", false, 1, UnixNs(0), UnixNs(0));
        assert!(rx.try_recv().is_err(), "no P frame before the first IDR");
        let idr = [0, 0, 0, 1, 0x67, 0x64, 0, 0x28, 0, 0, 0, 1, 0x65, 0x88];
        hub.publish(&idr, true, 2, UnixNs(0), UnixNs(0));
        assert_eq!(hub.desc().codec, "avc1.640028");
        for i in 3..3 + VIEWER_QUEUE as u64 {
            hub.publish(b"p", false, i, UnixNs(0), UnixNs(0));
        }
        // The queue (VIEWER_QUEUE) is full now: the next P frame is skipped, an IDR asked for.
        assert!(hub.take_idr_request());
        hub.publish(b"p", false, 99, UnixNs(0), UnixNs(0));
        let ids: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| u32::from_be_bytes(m[4..8].try_into().unwrap()))
            .collect();
        assert_eq!(ids, (2..2 + VIEWER_QUEUE as u32).collect::<Vec<_>>());
        hub.publish(&idr, true, 100, UnixNs(0), UnixNs(0));
        assert_eq!(rx.try_recv().map(|m| m[1]), Ok(1), "back at the IDR");
        drop(rx);
        hub.publish(&idr, true, 101, UnixNs(0), UnixNs(0));
        assert!(!hub.has_viewers(), "a gone viewer is dropped");
    }
}
