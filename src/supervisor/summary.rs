//! What a finished run did: the counters of the control and stats segments gathered into
//! one [`ExitSummary`], printed as the human summary lines on stderr and, with `--json`, as
//! one JSON document on stdout (schemas/vr-stream-summary.schema.json) for scripts and
//! tests to read instead of the human lines.

use crate::latency::{LatencyStats, Percentiles, SPANS};
use crate::shm::stats::{DetectionSet, NetCounters, RtcpCounters};
use serde::Serialize;
use std::collections::BTreeMap;

/// Version of the `--json` document; bumped when a field changes meaning or goes away.
pub const SUMMARY_VERSION: u32 = 1;

/// The exit summary (`vr-stream --json` on stdout).
#[derive(Debug, Clone, Serialize)]
pub struct ExitSummary {
    /// [`SUMMARY_VERSION`].
    pub version: u32,
    /// Frame counts along the pipeline.
    pub frames: FrameCounts,
    /// The RTP sender's counters.
    pub network: NetworkSummary,
    /// Stage restarts by stage name; stages never restarted are absent.
    pub restarts: BTreeMap<&'static str, u64>,
    /// Detection (`--yolo`), `null` when off.
    pub detect: Option<DetectSummary>,
    /// RTCP feedback received from the receiver.
    pub rtcp: RtcpSummary,
    /// Per-frame latency by span (`camera`, `queue`, `encode`, `send`, `total`), ms.
    pub latency_ms: BTreeMap<&'static str, SpanMs>,
    /// `--stereo`: how far apart the two eyes' capture times were, per frame, ms; `null`
    /// for one camera.
    pub stereo_pair_skew_ms: Option<SpanMs>,
    /// Frames whose latency records were overwritten in the control segment before the
    /// supervisor read them (not in `latency_ms`).
    pub latency_records_lost: u64,
    /// Why the run failed, `null` when it did not.
    pub error: Option<String>,
}

/// Frame counts along the pipeline.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FrameCounts {
    /// Delivered by the source into the frame ring.
    pub captured: u64,
    /// Taken from the ring by the encoder.
    pub encoded: u64,
    /// Access units whose packets were all sent.
    pub sent: u64,
    /// Frames the encoder never took: overwritten in the ring (latest-wins).
    pub ring_drops: u64,
    /// Access units dropped from the bitstream queue before the network stage took them.
    pub queue_drops: u64,
    /// IDR access units encoded.
    pub idr: u64,
    /// Bytes of H.264 encoded.
    pub encoded_bytes: u64,
}

/// The RTP sender's counters.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkSummary {
    /// RTP and FEC packets sent.
    pub packets: u64,
    /// UDP payload bytes sent.
    pub bytes: u64,
    /// sendmmsg(2) calls.
    pub sendmmsg_batches: u64,
    /// Packets not sent: errors and a full socket buffer, without the refusals explained
    /// by `nobody_listening`.
    pub send_errors: u64,
    /// FEC packets among `packets`.
    pub fec_packets: u64,
    /// Packets refused with ICMP port unreachable (ECONNREFUSED).
    pub refused: u64,
    /// The destination refused packets until the end: no receiver was there.
    pub nobody_listening: bool,
    /// Frames whose packets were spread out by pacing, and the pacing time in all (ms).
    pub paced_frames: u64,
    /// Total pacing delay, ms.
    pub pacing_ms: f64,
    /// Frames dropped whole on a congested RTP-over-TCP connection.
    pub tcp_frames_dropped: u64,
    /// Bitrate changes made by the adaptive bitrate controller.
    pub bitrate_changes: u64,
    /// Bitrate in force at the end, kbit/s.
    pub bitrate_kbps: u32,
}

/// Detection (`--yolo`).
#[derive(Debug, Clone, Serialize)]
pub struct DetectSummary {
    /// Frames run through the detector.
    pub inferences: u64,
    /// Frames skipped while the detector was busy.
    pub skipped: u64,
    /// Mean inference time, ms.
    pub mean_infer_ms: f64,
    /// Detections published in all.
    pub detections: u64,
}

/// RTCP feedback received (RFC 3550 §6.4 report blocks, RFC 4585 PLI/NACK).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RtcpSummary {
    /// Report blocks about our SSRC.
    pub reports: u64,
    /// Fraction lost in the last report, percent.
    pub last_fraction_lost_pct: f64,
    /// Cumulative packets lost in the last report.
    pub cumulative_lost: i64,
    /// Interarrival jitter in the last report, ms.
    pub jitter_ms: f64,
    /// Round-trip time from the last report, ms; `null` when none could be computed.
    pub rtt_ms: Option<f64>,
    /// PLIs acted on.
    pub pli: u64,
    /// RTP packets NACKed.
    pub nack_packets: u64,
}

/// Percentiles of one latency span, ms (HdrHistogram, 3 significant digits).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SpanMs {
    /// Frames measured.
    pub frames: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl RtcpSummary {
    /// From the stats segment's counters.
    pub fn from_counters(r: &RtcpCounters) -> RtcpSummary {
        RtcpSummary {
            reports: r.reports,
            last_fraction_lost_pct: r.fraction_lost as f64 * 100.0 / 256.0,
            cumulative_lost: r.cumulative_lost as i64,
            jitter_ms: r.jitter_90k as f64 / 90.0,
            rtt_ms: r.rtt_us.map(|u| u as f64 / 1000.0),
            pli: r.pli,
            nack_packets: r.nack_packets,
        }
    }
}

impl NetworkSummary {
    /// From the stats segment's counters; `absent`: nobody listened at the end
    /// (`super::nobody_listening`), so the refusals are not send errors.
    pub fn from_counters(net: &NetCounters, absent: bool, bitrate_kbps: u32) -> NetworkSummary {
        NetworkSummary {
            packets: net.packets,
            bytes: net.bytes,
            sendmmsg_batches: net.batches,
            send_errors: (net.send_errors + net.wouldblock_drops).saturating_sub(if absent {
                net.refused
            } else {
                0
            }),
            fec_packets: net.fec_packets,
            refused: net.refused,
            nobody_listening: absent,
            paced_frames: net.paced_frames,
            pacing_ms: net.paced_ns as f64 / 1e6,
            tcp_frames_dropped: net.dropped_frames,
            bitrate_changes: net.abr_changes,
            bitrate_kbps,
        }
    }
}

/// Every span of `stats` that has frames, ms.
pub fn latency_ms(stats: &LatencyStats) -> BTreeMap<&'static str, SpanMs> {
    SPANS
        .iter()
        .filter_map(|(name, _)| {
            let p = stats.span(name)?;
            (p.count > 0).then_some((*name, SpanMs::from(p)))
        })
        .collect()
}

impl From<Percentiles> for SpanMs {
    fn from(p: Percentiles) -> SpanMs {
        SpanMs {
            frames: p.count,
            p50: p.p50 / 1000.0,
            p95: p.p95 / 1000.0,
            p99: p.p99 / 1000.0,
            max: p.max / 1000.0,
        }
    }
}

/// The document `--json` prints when the run could not start (bad configuration, a
/// missing device): `{"version": 1, "error": "…"}`.
pub fn error_json(message: &str) -> String {
    serde_json::json!({ "version": SUMMARY_VERSION, "error": message }).to_string()
}

/// The detection line: `d`, the last run's inference and letterbox times (µs) and the
/// newest published detections.
pub fn detect_line(
    d: &DetectSummary,
    last_infer_us: u32,
    last_prep_us: u32,
    newest: Option<&DetectionSet>,
) -> String {
    let last = newest
        .map(|s| {
            let each: Vec<String> = s
                .detections
                .iter()
                .map(|d| format!("class {} {:.2}", d.class, d.score))
                .collect();
            format!(" (last frame {}: {})", s.frame_id, each.join(", "))
        })
        .unwrap_or_default();
    format!(
        "vr-stream: detect: {} frames run ({} skipped while busy), mean inference {:.1} ms, last {:.1} ms + {:.1} ms letterbox; {} detections{last}",
        d.inferences,
        d.skipped,
        d.mean_infer_ms,
        last_infer_us as f64 / 1000.0,
        last_prep_us as f64 / 1000.0,
        d.detections,
    )
}

impl ExitSummary {
    /// The one-line frame summary of stderr (`vr-stream: frames captured …`).
    pub fn frames_line(&self) -> String {
        let (f, n) = (&self.frames, &self.network);
        format!(
            "vr-stream: frames captured {} encoded {} sent {} (ring drops {}, queue drops {}, IDR {}); \
             packets {} bytes {} sendmmsg {} send errors {} FEC packets {}; encoded {} bytes{}",
            f.captured,
            f.encoded,
            f.sent,
            f.ring_drops,
            f.queue_drops,
            f.idr,
            n.packets,
            n.bytes,
            n.sendmmsg_batches,
            n.send_errors,
            n.fec_packets,
            f.encoded_bytes,
            if self.latency_records_lost > 0 {
                format!(
                    "; {} latency records overwritten before read",
                    self.latency_records_lost
                )
            } else {
                String::new()
            }
        )
    }

    /// The pacing/ABR line, `None` when there was neither.
    pub fn pacing_line(&self) -> Option<String> {
        let n = &self.network;
        (n.paced_frames + n.tcp_frames_dropped + n.bitrate_changes > 0).then(|| {
            format!(
                "vr-stream: paced frames {} ({:.1} ms pacing in all); frames dropped whole (TCP) {}; bitrate changes {} (last {} kbit/s)",
                n.paced_frames,
                n.pacing_ms,
                n.tcp_frames_dropped,
                n.bitrate_changes,
                n.bitrate_kbps
            )
        })
    }

    /// The restarts line (`vr-stream: restarts: encode 2, network 1`), `None` when no stage
    /// was restarted.
    pub fn restarts_line(&self) -> Option<String> {
        (!self.restarts.is_empty()).then(|| {
            let r: Vec<String> = self
                .restarts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!("vr-stream: restarts: {}", r.join(", "))
        })
    }

    /// What to do when the receiver's host refused the RTP packets until the end (no
    /// receiver listened at `destination`, `ADDR:PORT`), `None` otherwise. `rtp_port`: the
    /// port to give `vr-receive`; `sdp`: the SDP file written (empty: none); `web`: the
    /// viewer page is on.
    pub fn nobody_listening_line(
        &self,
        destination: &str,
        rtp_port: u16,
        sdp: &str,
        web: bool,
    ) -> Option<String> {
        let n = &self.network;
        n.nobody_listening.then(|| {
            let sdp = if sdp.is_empty() {
                "the SDP (--sdp PATH)"
            } else {
                sdp
            };
            format!(
                "vr-stream: nobody is listening at {destination}: its host answered with ICMP port unreachable ({} RTP packets refused). \
                 Start a receiver there first: `vr-receive --port {rtp_port}`, or `ffplay -protocol_whitelist file,udp,rtp -i {sdp}`{}",
                n.refused,
                if web {
                    "; the viewer page does not need it"
                } else {
                    ""
                }
            )
        })
    }

    /// The RTCP line, `None` when no feedback came.
    pub fn rtcp_line(&self) -> Option<String> {
        let r = &self.rtcp;
        (r.reports + r.pli + r.nack_packets > 0).then(|| {
            let rtt = r.rtt_ms.map_or("n/a".into(), |ms| format!("{ms:.2} ms"));
            format!(
                "vr-stream: RTCP: {blocks} receiver report blocks (last: {lost:.1}% lost, {all} lost in all, jitter {jitter:.2} ms, RTT {rtt}), PLI {pli}, NACKed packets {nacked}",
                blocks = r.reports,
                lost = r.last_fraction_lost_pct,
                all = r.cumulative_lost,
                jitter = r.jitter_ms,
                pli = r.pli,
                nacked = r.nack_packets
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> ExitSummary {
        let net = NetCounters {
            packets: 100,
            send_errors: 41,
            refused: 40,
            ..Default::default()
        };
        ExitSummary {
            version: SUMMARY_VERSION,
            frames: FrameCounts {
                captured: 600,
                encoded: 599,
                sent: 598,
                ring_drops: 1,
                queue_drops: 0,
                idr: 10,
                encoded_bytes: 123,
            },
            network: NetworkSummary::from_counters(&net, true, 3000),
            restarts: BTreeMap::new(),
            detect: None,
            rtcp: RtcpSummary::from_counters(&RtcpCounters::default()),
            latency_ms: latency_ms(&LatencyStats::new()),
            stereo_pair_skew_ms: None,
            latency_records_lost: 0,
            error: None,
        }
    }

    #[test]
    fn refusals_of_an_absent_receiver_are_not_send_errors() {
        let s = summary();
        assert_eq!(s.network.send_errors, 1);
        let line = s.frames_line();
        assert!(
            line.starts_with("vr-stream: frames captured 600 encoded 599 sent 598 (ring drops 1"),
            "{line}"
        );
        assert!(line.contains("IDR 10);"), "{line}");
        assert!(s.pacing_line().is_none() && s.rtcp_line().is_none());
    }

    #[test]
    fn the_rtcp_line_says_each_counter_once() {
        let mut s = summary();
        s.rtcp = RtcpSummary {
            reports: 12,
            last_fraction_lost_pct: 1.5,
            cumulative_lost: 7,
            jitter_ms: 0.5,
            rtt_ms: None,
            pli: 2,
            nack_packets: 3,
        };
        let want = "vr-stream: RTCP: 12 receiver report blocks (last: 1.5% lost, 7 lost in all, jitter 0.50 ms, RTT n/a), PLI 2, NACKed packets 3";
        assert_eq!(s.rtcp_line().as_deref(), Some(want));
        s.rtcp.rtt_ms = Some(1.234);
        assert!(s.rtcp_line().unwrap().contains("RTT 1.23 ms), PLI"));
    }

    #[test]
    fn the_json_document_has_the_schema_fields() {
        let v = serde_json::to_value(summary()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["frames"]["sent"], 598);
        assert_eq!(v["network"]["nobody_listening"], true);
        assert!(v["error"].is_null() && v["detect"].is_null());
        assert!(v["latency_ms"].as_object().unwrap().is_empty());
        let e: serde_json::Value = serde_json::from_str(&error_json("bad \"x\"")).unwrap();
        assert_eq!(e["error"], "bad \"x\"");
    }

    #[test]
    fn the_restarts_and_nobody_listening_lines() {
        let mut s = summary();
        assert_eq!(s.restarts_line(), None);
        s.restarts.insert("network", 1);
        s.restarts.insert("encode", 2);
        assert_eq!(
            s.restarts_line().as_deref(),
            Some("vr-stream: restarts: encode 2, network 1")
        );
        let want = "vr-stream: nobody is listening at 192.168.1.100:5004: its host answered with \
                    ICMP port unreachable (40 RTP packets refused). Start a receiver there first: \
                    `vr-receive --port 5004`, or `ffplay -protocol_whitelist file,udp,rtp -i \
                    the SDP (--sdp PATH)`; the viewer page does not need it";
        let line = s.nobody_listening_line("192.168.1.100:5004", 5004, "", true);
        assert_eq!(line.as_deref(), Some(want));
        let line = s.nobody_listening_line("10.0.0.2:6000", 6000, "/tmp/s.sdp", false);
        assert!(line.unwrap().ends_with("-i /tmp/s.sdp`"));
        s.network.nobody_listening = false;
        assert_eq!(
            s.nobody_listening_line("10.0.0.2:6000", 6000, "", true),
            None
        );
    }

    #[test]
    fn the_detect_line_names_the_newest_detections() {
        let d = DetectSummary {
            inferences: 90,
            skipped: 510,
            mean_infer_ms: 41.25,
            detections: 180,
        };
        let det = |class, score| vr_proto::detection::Detection {
            class,
            score,
            bbox: [0.0; 4],
        };
        let newest = DetectionSet {
            frame_id: 597,
            capture_ns: 1,
            published_ns: 2,
            detections: vec![det(0, 0.875), det(16, 0.5)],
        };
        assert_eq!(
            detect_line(&d, 40_500, 1_250, Some(&newest)),
            "vr-stream: detect: 90 frames run (510 skipped while busy), mean inference 41.2 ms, \
             last 40.5 ms + 1.2 ms letterbox; 180 detections (last frame 597: class 0 0.88, \
             class 16 0.50)"
        );
        assert!(detect_line(&d, 0, 0, None).ends_with("; 180 detections"));
    }
}
