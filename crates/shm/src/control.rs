//! The control segment: supervisor <-> stages signals (stop, go, bitrate request), the
//! encoder's SPS/PPS and the network stage's RTP continuity state. It is paired with the
//! [`Stats`] segment, which carries what the stages report (stage slots, per-frame records,
//! counters); [`Control`] maps both and forwards the stats calls. Readers never block
//! writers.
//!
//! Layout after the 64-byte segment header: `ControlHeader` only.

use super::seqtext::SeqBytes;
pub use super::stats::{
    EncCounters, NetCounters, RECORDS, STAGES, Stage, StageSlot, StageState, Stats, StreamInfo,
};
use super::{KIND_HEADER_OFFSET, Kind, Layout, Segment, ShmError};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use vr_proto::time::MonotonicNs;

/// Largest SPS/PPS blob, bytes.
pub const MAX_HEADERS: usize = 1024;

#[repr(C, align(64))]
struct ControlHeader {
    stop: AtomicU32,
    go: AtomicU32,
    bitrate_request_kbps: AtomicU32,
    /// Rewritten by a restarted encoder while the network stage may read it: seqlocked.
    headers: SeqBytes<{ MAX_HEADERS / 8 }>,
    /// RTP state of the network stage, kept here so that a restarted network stage goes on
    /// with the same SSRC, sequence numbers and timestamps (receivers see one stream).
    rtp_valid: AtomicU32,
    rtp_ssrc: AtomicU32,
    rtp_next_seq: AtomicU32,
    rtp_ts_offset: AtomicU32,
    rtp_base_ns: AtomicU64,
    /// The web stage's bitrate target (the lowest of its WebRTC peers'), kbit/s; 0 = none.
    web_target_kbps: AtomicU32,
}

/// RTP continuity state (see [`Control::rtp_state`]; `vr-proto`'s).
pub use vr_proto::session::RtpState;

const KIND_HEADER_SIZE: usize = std::mem::size_of::<ControlHeader>();

fn layout() -> Layout {
    Layout {
        kind: Kind::Control,
        kind_header_size: KIND_HEADER_SIZE as u32,
        slot_size: 0,
        slot_count: 0,
        total_size: super::align_up(KIND_HEADER_OFFSET + KIND_HEADER_SIZE, 4096) as u64,
    }
}

/// The mapped control segment, with its stats segment.
pub struct Control {
    seg: Segment,
    stats: Stats,
}

// SAFETY: every shared field is an atomic (the headers are atomic words under a sequence
// lock, shm::seqtext); the mapping lives as long as `seg`.
unsafe impl Send for Control {}
// SAFETY: as above.
unsafe impl Sync for Control {}

impl Control {
    /// Creates control segment `name` and stats segment `stats_name`.
    pub fn create(name: &str, stats_name: &str) -> Result<Control, ShmError> {
        let seg = Segment::create(name, layout())?;
        seg.finish_init();
        Ok(Control {
            seg,
            stats: Stats::create(stats_name)?,
        })
    }

    /// Opens control segment `name` and stats segment `stats_name`, checking their headers.
    pub fn open(name: &str, stats_name: &str) -> Result<Control, ShmError> {
        Ok(Control {
            seg: Segment::open(name, layout())?,
            stats: Stats::open(stats_name)?,
        })
    }

    /// The stats segment.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn hdr(&self) -> &ControlHeader {
        // SAFETY: checked layout: the ControlHeader lies at KIND_HEADER_OFFSET.
        unsafe { &*(self.seg.base().add(KIND_HEADER_OFFSET) as *const ControlHeader) }
    }

    /// The slot of stage `s` in the stats segment.
    pub fn stage(&self, s: Stage) -> &StageSlot {
        self.stats.stage(s)
    }

    /// Touches every page of both segments (the record ring is 360 KB): resident from the
    /// start, so the reader's memory does not grow as records wrap around.
    pub fn prefault(&self) {
        self.seg.prefault();
        self.stats.prefault();
    }

    /// Asks every stage to stop.
    pub fn request_stop(&self) {
        self.hdr().stop.store(1, Ordering::Release);
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.hdr().stop.load(Ordering::Acquire) != 0
    }

    /// Tells the stages that every stage is ready: start producing.
    pub fn set_go(&self) {
        self.hdr().go.store(1, Ordering::Release);
    }

    /// Whether the go signal was given.
    pub fn go(&self) -> bool {
        self.hdr().go.load(Ordering::Acquire) != 0
    }

    /// Requests a new encoder bitrate, kbit/s.
    pub fn request_bitrate(&self, kbps: u32) {
        self.hdr()
            .bitrate_request_kbps
            .store(kbps, Ordering::Release);
    }

    /// Takes a pending bitrate request, kbit/s.
    pub fn take_bitrate_request(&self) -> Option<u32> {
        match self.hdr().bitrate_request_kbps.swap(0, Ordering::AcqRel) {
            0 => None,
            k => Some(k),
        }
    }

    /// Sets the web stage's bitrate target, kbit/s (`None`: no WebRTC peer has one). The
    /// network stage gives the encoder the lowest of this and the RTP path's target.
    pub fn set_web_target(&self, kbps: Option<u32>) {
        self.hdr()
            .web_target_kbps
            .store(kbps.unwrap_or(0), Ordering::Relaxed);
    }

    /// The web stage's bitrate target, kbit/s, if it has one.
    pub fn web_target(&self) -> Option<u32> {
        match self.hdr().web_target_kbps.load(Ordering::Relaxed) {
            0 => None,
            k => Some(k),
        }
    }

    /// Stores the encoder's SPS/PPS (Annex-B): the encode stage, before it reports ready,
    /// and again when it is restarted (readers may be reading then). Longer blobs are truncated to [`MAX_HEADERS`] (x264's are ~40 bytes).
    pub fn set_headers(&self, h: &[u8]) {
        self.hdr().headers.write(h);
    }

    /// The encoder's SPS/PPS, once set (a consistent copy even while a restarted encoder
    /// rewrites them).
    pub fn headers(&self) -> Option<Vec<u8>> {
        self.hdr().headers.read().filter(|h| !h.is_empty())
    }

    /// The network stage's RTP state, if one was saved.
    pub fn rtp_state(&self) -> Option<RtpState> {
        let h = self.hdr();
        // SYNC POINT R: Acquire pairs with the Release store of rtp_valid in save_rtp_state.
        (h.rtp_valid.load(Ordering::Acquire) != 0).then(|| RtpState {
            ssrc: h.rtp_ssrc.load(Ordering::Relaxed),
            next_seq: h.rtp_next_seq.load(Ordering::Relaxed) as u16,
            ts_offset: h.rtp_ts_offset.load(Ordering::Relaxed),
            base: MonotonicNs(h.rtp_base_ns.load(Ordering::Relaxed)),
        })
    }

    /// Saves the RTP state (single writer: the network stage, after each access unit).
    pub fn save_rtp_state(&self, s: RtpState) {
        let h = self.hdr();
        h.rtp_ssrc.store(s.ssrc, Ordering::Relaxed);
        h.rtp_next_seq.store(s.next_seq as u32, Ordering::Relaxed);
        h.rtp_ts_offset.store(s.ts_offset, Ordering::Relaxed);
        h.rtp_base_ns.store(s.base.0, Ordering::Relaxed);
        // SYNC POINT W: Release pairs with the Acquire load in rtp_state.
        h.rtp_valid.store(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_bitrate_requests() {
        let name = format!("vr-stream-test-ctl-{}", std::process::id());
        let c = Control::create(&name, &format!("{name}-stats")).unwrap();
        c.set_headers(&[0, 0, 0, 1, 0x67]);
        let o = Control::open(&name, &format!("{name}-stats")).unwrap();
        assert_eq!(o.headers().unwrap().len(), 5);
        c.request_bitrate(4000);
        assert_eq!(o.take_bitrate_request(), Some(4000));
        assert_eq!(o.take_bitrate_request(), None);
        c.stage(Stage::Camera)
            .heartbeat_ns
            .store(5, Ordering::Relaxed);
        let read = o
            .stats()
            .stage(Stage::Camera)
            .heartbeat_ns
            .load(Ordering::Relaxed);
        assert_eq!(read, 5);
    }
}
