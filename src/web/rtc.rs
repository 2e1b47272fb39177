//! WebRTC to the page with `str0m` (sans-IO): the page sends an SDP offer (recvonly video
//! plus a data channel) over HTTPS, vr-stream answers, and a thread per peer runs the
//! ICE/DTLS/SRTP state machine on its own UDP socket.
//!
//! The peer joins the [`Hub`] like a WebSocket viewer: the same access units, from an IDR
//! on, written through str0m's frame API (H.264 packetization-mode 1, RFC 6184: FU-A for
//! NAL units over the MTU), with the playout-delay header extension set to 0/0 so Chromium
//! renders each frame as soon as it is decoded instead of buffering. Frame timestamps are
//! the capture time in 90 kHz ticks. A PLI or FIR from the browser asks the encoder for an
//! IDR through the hub.
//!
//! Feedback from the browser: str0m answers NACKs from its send buffer (RTX when the
//! browser offered it); PLI/FIR → IDR; the RTCP receiver reports (loss, highest sequence
//! number, cumulative loss, jitter, RTT), as str0m's egress statistics every
//! [`STATS_INTERVAL`], drive this peer's own [`RateController`] (the one the RTP path
//! uses); its target goes to the hub, and the network stage gives the encoder the lowest
//! target of all outputs.
//!
//! Data channel "vr" (JSON text): to the page, per frame `{"type":"frame","rtp":T,"cap":MS}`
//! (RTP timestamp, capture time in the sender's Unix ms) so the page can pair each decoded
//! frame (`requestVideoFrameCallback` gives its RTP timestamp) with its capture time,
//! `hello`, `pong` and `detections` ([`super::detections_message`]); from the page,
//! `ping`, `stats` and `keyframe` as on the WebSocket.

use super::Hub;
use crate::abr::{Feedback, RateController};
use crate::rt::monotonic_ns;
use crate::rtcp::ReportBlock;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// RTP header extension id offered for playout-delay (Chromium offers its own id; the
/// answer follows the offer).
const PLAYOUT_DELAY_ID: u8 = 12;
/// A peer with no ICE traffic for this long is gone.
const IDLE: Duration = Duration::from_secs(10);
/// How often str0m reports egress statistics (carrying the browser's receiver reports).
pub const STATS_INTERVAL: Duration = Duration::from_millis(100);

/// Answers `offer_sdp` (the page's offer) with a peer bound to `host` (the address the page
/// reached us at); starts the peer's thread. Returns the answer SDP.
///
/// Errors: an offer str0m cannot parse or accept, no UDP port, no thread.
///
/// `slot`: the viewer's place among `web.max_viewers`, held by the peer's thread until it ends.
/// `page`: the address the page's offer came from (listed in the stats).
pub fn answer(
    offer_sdp: &str,
    host: IpAddr,
    page: SocketAddr,
    hub: Arc<Hub>,
    slot: super::server::ViewerSlot,
) -> Result<String, String> {
    let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| format!("the SDP offer: {e}"))?;
    // str0m's own bandwidth estimation (transport-cc, `enable_bwe`) stays off: it paces
    // media at 1.1 x its estimate, which spreads each access unit over the frame interval
    // (measured with it on, the real clip at 6 Mbit/s: capture -> decoded p50 1.9 s at
    // 10 fps, against 10 ms at 60 fps). The browser's receiver reports drive `abr` instead.
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_h264(true)
        .set_extension(PLAYOUT_DELAY_ID, Extension::PlayoutDelay)
        .set_stats_interval(Some(STATS_INTERVAL))
        .build(Instant::now());
    let sock =
        UdpSocket::bind((host, 0)).map_err(|e| format!("WebRTC UDP socket on {host}: {e}"))?;
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    let cand = Candidate::host(local, "udp").map_err(|e| format!("ICE candidate {local}: {e}"))?;
    rtc.add_local_candidate(cand);
    let answer: SdpAnswer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| format!("the SDP offer: {e}"))?;
    std::thread::Builder::new()
        .name("web-rtc".into())
        .spawn(move || {
            let _slot = slot;
            if let Err(e) = run(rtc, sock, local, page, &hub) {
                eprintln!("vr-stream[web]: WebRTC peer: {e}");
            }
        })
        .map_err(|e| format!("WebRTC thread: {e}"))?;
    Ok(answer.to_sdp_string())
}

/// The H.264 payload type to send: packetization-mode 1, constrained baseline preferred.
fn h264_pt(rtc: &mut Rtc, mid: Mid) -> Option<str0m::media::Pt> {
    let w = rtc.writer(mid)?;
    let mut best: Option<(u8, str0m::media::Pt)> = None;
    for p in w.payload_params() {
        let s = p.spec();
        if s.codec != Codec::H264 || s.format.packetization_mode != Some(1) {
            continue;
        }
        let rank = match s.format.profile_level_id.map(|v| v >> 8) {
            Some(0x42e0) => 0,
            Some(0x4200) => 1,
            _ => 2,
        };
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, p.pt()));
        }
    }
    best.map(|(_, pt)| pt)
}

fn run(
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    page: SocketAddr,
    hub: &Hub,
) -> Result<(), String> {
    let (id, mut rx) = hub.join(page, crate::shm::stats::PageTransport::WebRtc);
    let mut peer = Peer {
        rtc,
        hub,
        id,
        video: None,
        channel: None,
        waiting_key: true,
        abr: hub.abr().map(RateController::new),
        sent: (0, 0),
        det_seen: 0,
    };
    let mut buf = vec![0u8; 2000];
    let mut last_heard = Instant::now();
    let res = loop {
        peer.send_detections();
        // Media from the hub: everything queued, newest last.
        while let Ok(m) = rx.try_recv() {
            peer.send_access_unit(&m);
        }
        // Everything str0m wants done now.
        let timeout = match peer.drive(&sock) {
            Ok(t) => t,
            Err(e) => break Err(e),
        };
        if !peer.rtc.is_alive() {
            break Ok(());
        }
        if last_heard.elapsed() > IDLE {
            break Err("no ICE traffic for 10 s".to_string());
        }
        // Wait for a packet, str0m's next timer, or at most 2 ms (media may be queued).
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_micros(100), Duration::from_millis(2));
        let _ = sock.set_read_timeout(Some(wait));
        let input = match sock.recv_from(&mut buf) {
            Ok((n, source)) => {
                last_heard = Instant::now();
                match buf[..n].try_into() {
                    Ok(contents) => Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: local,
                            contents,
                        },
                    ),
                    Err(_) => continue,
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Input::Timeout(Instant::now())
            }
            Err(e) => break Err(e.to_string()),
        };
        if let Err(e) = peer.rtc.handle_input(input) {
            break Err(e.to_string());
        }
    };
    hub.leave(id);
    res
}

/// One WebRTC peer: str0m's state machine and what this side knows about the peer.
struct Peer<'a> {
    rtc: Rtc,
    hub: &'a Hub,
    /// Its id in the hub.
    id: u64,
    /// The video m-line and the H.264 payload type to send, once the peer added it.
    video: Option<(Mid, str0m::media::Pt)>,
    /// The data channel "vr", once open.
    channel: Option<str0m::channel::ChannelId>,
    /// Nothing is sent before an IDR.
    waiting_key: bool,
    /// This peer's rate controller (`None`: `[abr]` off).
    abr: Option<RateController>,
    /// Egress totals (packets, bytes) at the previous statistics event.
    sent: (u64, u64),
    /// The detection results already sent (the hub's count).
    det_seen: u64,
}

impl Peer<'_> {
    /// Sends the newest detections on the data channel, once each.
    fn send_detections(&mut self) {
        if let Some(cid) = self.channel
            && let Some((n, m)) = self.hub.detections_after(self.det_seen)
            && let Some(mut ch) = self.rtc.channel(cid)
        {
            self.det_seen = n;
            let _ = ch.write(false, m.as_bytes());
        }
    }

    /// Writes one access unit from the hub (its header, then Annex-B) as a frame of the
    /// video, from the first IDR on, and announces it on the data channel.
    fn send_access_unit(&mut self, m: &[u8]) {
        let (Some((mid, pt)), true) = (self.video, m.len() > super::HEADER_LEN) else {
            return;
        };
        let key = m[1] & 1 != 0;
        if self.waiting_key && !key {
            return;
        }
        self.waiting_key = false;
        let cap_ns = u64::from_be_bytes(m[8..16].try_into().unwrap());
        let ts90 = crate::rtp::ticks_90k(cap_ns);
        let Some(w) = self.rtc.writer(mid) else {
            return;
        };
        let w = w.playout_delay(MediaTime::from_millis(0), MediaTime::from_millis(0));
        let au: Arc<[u8]> = Arc::from(&m[super::HEADER_LEN..]);
        if let Err(e) = w.write(pt, Instant::now(), MediaTime::from_90khz(ts90), au) {
            eprintln!("vr-stream[web]: WebRTC write: {e}");
        }
        if let Some(cid) = self.channel
            && let Some(mut ch) = self.rtc.channel(cid)
        {
            let msg = serde_json::json!({ "type": "frame", "rtp": ts90 as u32, "cap": cap_ns as f64 / 1e6, "id": u32::from_be_bytes(m[4..8].try_into().unwrap()) });
            let _ = ch.write(false, msg.to_string().as_bytes());
        }
    }

    /// Does everything str0m wants done now: sends its datagrams on `sock`, handles its
    /// events. Returns when str0m next wants time.
    ///
    /// Errors: str0m's.
    fn drive(&mut self, sock: &UdpSocket) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let _ = sock.send_to(&t.contents, t.destination);
                }
                Output::Event(ev) => self.on_event(ev),
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.rtc.disconnect();
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Video => {
                if let Some(pt) = h264_pt(&mut self.rtc, m.mid) {
                    self.video = Some((m.mid, pt));
                    self.hub.request_idr();
                } else {
                    eprintln!("vr-stream[web]: WebRTC peer offered no H.264 packetization-mode 1");
                }
            }
            Event::KeyframeRequest(_) => {
                self.hub.request_idr();
                self.waiting_key = false;
            }
            Event::MediaEgressStats(st) => self.on_egress_stats(&st),
            Event::ChannelOpen(cid, _) => {
                self.channel = Some(cid);
                if let Some(mut ch) = self.rtc.channel(cid) {
                    let _ = ch.write(false, self.hub.hello().as_bytes());
                }
            }
            Event::ChannelData(d) if !d.binary => {
                if let Some(reply) = self.hub.page_message(self.id, &d.data)
                    && let Some(mut ch) = self.rtc.channel(d.id)
                {
                    let _ = ch.write(false, reply.as_bytes());
                }
            }
            _ => {}
        }
    }

    /// str0m's egress statistics (every [`STATS_INTERVAL`]): the sent rate, and the
    /// browser's newest receiver report, to this peer's rate controller; a new target
    /// goes to the hub.
    fn on_egress_stats(&mut self, st: &str0m::stats::MediaEgressStats) {
        let Some(a) = self.abr.as_mut() else {
            return;
        };
        let (packets, bytes) = self.sent;
        a.on_sent(
            st.packets.saturating_sub(packets),
            st.bytes.saturating_sub(bytes),
        );
        self.sent = (st.packets, st.bytes);
        // `loss` is Some only when a receiver report came since the last event.
        let (Some(loss), Some(remote)) = (st.loss, st.remote.as_ref()) else {
            return;
        };
        let block = ReportBlock {
            ssrc: 0,
            fraction_lost: (loss.clamp(0.0, 1.0) * 256.0).min(255.0) as u8,
            cumulative_lost: remote.packets_lost.min(i32::MAX as u64) as i32,
            ext_highest_seq: *remote.maximum_sequence_number as u32,
            jitter: remote.jitter,
            lsr: 0,
            dlsr: 0,
        };
        let fb = Feedback {
            arrival_ns: monotonic_ns(),
            block,
            rtt_ns: st.rtt.map(|d| d.as_nanos() as u64),
        };
        if let Some(ch) = a.on_report(fb) {
            eprintln!("vr-stream[web]: WebRTC peer {}: {ch}", self.id);
            self.hub.set_target(self.id, Some(ch.to_kbps));
        }
    }
}
