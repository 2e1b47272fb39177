//! The control segment: supervisor ↔ stages state, counters, SPS/PPS and the per-frame
//! latency records. Written by the stages, read by the supervisor (and later `dashboard`);
//! readers never block writers.
//!
//! Layout after the 64-byte segment header: `ControlHeader` (flags, encoder headers, network
//! counters), [`STAGES`] × `StageSlot` (one per stage), then [`RECORDS`] × record slots.
//! Each record slot is a seqlock: `seq` odd while the (single) writer fills it, even when
//! done; a reader retries or skips a record whose `seq` changed under it.

use super::{Kind, Layout, Segment, ShmError, KIND_HEADER_OFFSET};
use crate::latency::FrameRecord;
use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Stage slots.
pub const STAGES: usize = 4;
/// Per-frame records kept (a ring; about 68 s at 60 fps).
pub const RECORDS: usize = 4096;
/// Largest SPS/PPS blob, bytes.
pub const MAX_HEADERS: usize = 1024;
/// Largest stage error message, bytes.
pub const MAX_ERROR: usize = 512;

/// Stage index: camera.
pub const STAGE_CAMERA: usize = 0;
/// Stage index: encode.
pub const STAGE_ENCODE: usize = 1;
/// Stage index: network.
pub const STAGE_NETWORK: usize = 2;

/// Life cycle of a stage, as stored in its slot.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    /// Not started.
    Idle = 0,
    /// Process started, setting up.
    Starting = 1,
    /// Set up, waiting for or past the go signal.
    Ready = 2,
    /// Finished cleanly.
    Done = 3,
    /// Failed; the error text is in the slot.
    Failed = 4,
    /// Running, but its input is gone (camera unplugged) and it is reopening it with
    /// backoff; the reason is in the slot's error text.
    Retrying = 5,
}

impl StageState {
    fn from_u32(v: u32) -> StageState {
        match v {
            1 => StageState::Starting,
            2 => StageState::Ready,
            3 => StageState::Done,
            4 => StageState::Failed,
            5 => StageState::Retrying,
            _ => StageState::Idle,
        }
    }
}

#[repr(C, align(64))]
struct ControlHeader {
    stop: AtomicU32,
    go: AtomicU32,
    bitrate_request_kbps: AtomicU32,
    headers_len: AtomicU32,
    headers: std::cell::UnsafeCell<[u8; MAX_HEADERS]>,
    records_written: AtomicU64,
    net_packets: AtomicU64,
    net_bytes: AtomicU64,
    net_batches: AtomicU64,
    net_send_errors: AtomicU64,
    enc_frames: AtomicU64,
    enc_bytes: AtomicU64,
    enc_idr: AtomicU64,
    /// RTP state of the network stage, kept here so that a restarted network stage goes on
    /// with the same SSRC, sequence numbers and timestamps (receivers see one stream).
    rtp_valid: AtomicU32,
    rtp_ssrc: AtomicU32,
    rtp_next_seq: AtomicU32,
    rtp_ts_offset: AtomicU32,
    rtp_base_ns: AtomicU64,
}

/// RTP continuity state (see [`Control::rtp_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpState {
    /// SSRC.
    pub ssrc: u32,
    /// Sequence number of the next packet.
    pub next_seq: u16,
    /// Random RTP timestamp offset.
    pub ts_offset: u32,
    /// Capture time (CLOCK_MONOTONIC ns) that maps to `ts_offset`.
    pub base_ns: u64,
}

/// What one stage reports about itself.
#[repr(C, align(64))]
pub struct StageSlot {
    state: AtomicU32,
    /// Process id.
    pub pid: AtomicU32,
    /// CPU the affinity mask allows (-1 = several / unknown).
    pub cpu: AtomicI32,
    /// Scheduling policy in force (SCHED_OTHER = 0, SCHED_FIFO = 1).
    pub policy: AtomicU32,
    /// Realtime priority in force.
    pub priority: AtomicU32,
    /// Locked memory (VmLck), KiB.
    pub vmlck_kb: AtomicU64,
    /// Last heartbeat, CLOCK_MONOTONIC ns.
    pub heartbeat_ns: AtomicU64,
    /// Frames taken in.
    pub frames_in: AtomicU64,
    /// Frames handed on.
    pub frames_out: AtomicU64,
    /// Frames dropped by this stage.
    pub drops: AtomicU64,
    /// Times the supervisor restarted this stage.
    pub restarts: AtomicU64,
    /// Times the stage reopened its input after losing it (camera unplugged).
    pub retries: AtomicU64,
    /// 1 if the failure is permanent (a broken input file): not worth a restart.
    permanent: AtomicU32,
    error_len: AtomicU32,
    error: std::cell::UnsafeCell<[u8; MAX_ERROR]>,
}

#[repr(C)]
struct RecordSlot {
    seq: AtomicU64,
    fields: [AtomicU64; FrameRecord::FIELDS],
}

const KIND_HEADER_SIZE: usize =
    std::mem::size_of::<ControlHeader>() + STAGES * std::mem::size_of::<StageSlot>() + RECORDS * std::mem::size_of::<RecordSlot>();

fn layout() -> Layout {
    Layout {
        kind: Kind::Control,
        kind_header_size: KIND_HEADER_SIZE as u32,
        slot_size: std::mem::size_of::<RecordSlot>() as u64,
        slot_count: RECORDS as u64,
        total_size: super::align_up(KIND_HEADER_OFFSET + KIND_HEADER_SIZE, 4096) as u64,
    }
}

/// The mapped control segment.
pub struct Control {
    seg: Segment,
}

// SAFETY: all shared fields are atomics, except `headers` and `error`, which are written
// once before a Release store of their length and read after an Acquire load of it.
unsafe impl Send for Control {}
// SAFETY: as above.
unsafe impl Sync for Control {}

impl Control {
    /// Creates control segment `name`.
    pub fn create(name: &str) -> Result<Control, ShmError> {
        let seg = Segment::create(name, layout())?;
        seg.finish_init();
        Ok(Control { seg })
    }

    /// Opens control segment `name`, checking its header.
    pub fn open(name: &str) -> Result<Control, ShmError> {
        Ok(Control { seg: Segment::open(name, layout())? })
    }

    fn hdr(&self) -> &ControlHeader {
        // SAFETY: checked layout: the ControlHeader lies at KIND_HEADER_OFFSET.
        unsafe { &*(self.seg.base().add(KIND_HEADER_OFFSET) as *const ControlHeader) }
    }

    /// Stage slot `i` (< [`STAGES`]).
    pub fn stage(&self, i: usize) -> &StageSlot {
        assert!(i < STAGES);
        // SAFETY: i < STAGES; the slots follow the header inside the checked kind header.
        unsafe {
            &*(self.seg.base().add(KIND_HEADER_OFFSET + std::mem::size_of::<ControlHeader>()) as *const StageSlot).add(i)
        }
    }

    fn record(&self, i: usize) -> &RecordSlot {
        // SAFETY: i % RECORDS < RECORDS; the records follow the stage slots.
        unsafe {
            &*(self.seg.base().add(
                KIND_HEADER_OFFSET + std::mem::size_of::<ControlHeader>() + STAGES * std::mem::size_of::<StageSlot>(),
            ) as *const RecordSlot)
                .add(i % RECORDS)
        }
    }

    /// Touches every page (the record ring is 360 KB): resident from the start, so the
    /// reader's memory does not grow as records wrap around.
    pub fn prefault(&self) {
        self.seg.prefault();
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
        self.hdr().bitrate_request_kbps.store(kbps, Ordering::Release);
    }

    /// Takes a pending bitrate request, kbit/s.
    pub fn take_bitrate_request(&self) -> Option<u32> {
        match self.hdr().bitrate_request_kbps.swap(0, Ordering::AcqRel) {
            0 => None,
            k => Some(k),
        }
    }

    /// Stores the encoder's SPS/PPS (Annex-B). Call once, before the encode stage reports
    /// ready. Longer blobs are truncated to [`MAX_HEADERS`] (x264's are ~40 bytes).
    pub fn set_headers(&self, h: &[u8]) {
        let n = h.len().min(MAX_HEADERS);
        // SAFETY: written once by the encode stage before the Release store of the length;
        // readers read only after an Acquire load of a non-zero length.
        unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), self.hdr().headers.get() as *mut u8, n) };
        self.hdr().headers_len.store(n as u32, Ordering::Release);
    }

    /// The encoder's SPS/PPS, once set.
    pub fn headers(&self) -> Option<Vec<u8>> {
        let n = self.hdr().headers_len.load(Ordering::Acquire) as usize;
        // SAFETY: see set_headers.
        (n > 0).then(|| unsafe { std::slice::from_raw_parts(self.hdr().headers.get() as *const u8, n) }.to_vec())
    }

    /// Adds to the network counters: packets, bytes, sendmmsg batches, send errors.
    pub fn add_net(&self, packets: u64, bytes: u64, batches: u64, errors: u64) {
        let h = self.hdr();
        h.net_packets.fetch_add(packets, Ordering::Relaxed);
        h.net_bytes.fetch_add(bytes, Ordering::Relaxed);
        h.net_batches.fetch_add(batches, Ordering::Relaxed);
        h.net_send_errors.fetch_add(errors, Ordering::Relaxed);
    }

    /// Network counters: (packets, bytes, batches, send errors).
    pub fn net(&self) -> (u64, u64, u64, u64) {
        let h = self.hdr();
        (
            h.net_packets.load(Ordering::Relaxed),
            h.net_bytes.load(Ordering::Relaxed),
            h.net_batches.load(Ordering::Relaxed),
            h.net_send_errors.load(Ordering::Relaxed),
        )
    }

    /// Adds one encoded frame of `bytes` (IDR or not) to the encoder counters.
    pub fn add_encoded(&self, bytes: u64, idr: bool) {
        let h = self.hdr();
        h.enc_frames.fetch_add(1, Ordering::Relaxed);
        h.enc_bytes.fetch_add(bytes, Ordering::Relaxed);
        h.enc_idr.fetch_add(idr as u64, Ordering::Relaxed);
    }

    /// Encoder counters: (frames, bytes, IDR frames).
    pub fn encoded(&self) -> (u64, u64, u64) {
        let h = self.hdr();
        (h.enc_frames.load(Ordering::Relaxed), h.enc_bytes.load(Ordering::Relaxed), h.enc_idr.load(Ordering::Relaxed))
    }

    /// The network stage's RTP state, if one was saved.
    pub fn rtp_state(&self) -> Option<RtpState> {
        let h = self.hdr();
        // SYNC POINT R: Acquire pairs with the Release store of rtp_valid in save_rtp_state.
        (h.rtp_valid.load(Ordering::Acquire) != 0).then(|| RtpState {
            ssrc: h.rtp_ssrc.load(Ordering::Relaxed),
            next_seq: h.rtp_next_seq.load(Ordering::Relaxed) as u16,
            ts_offset: h.rtp_ts_offset.load(Ordering::Relaxed),
            base_ns: h.rtp_base_ns.load(Ordering::Relaxed),
        })
    }

    /// Saves the RTP state (single writer: the network stage, after each access unit).
    pub fn save_rtp_state(&self, s: RtpState) {
        let h = self.hdr();
        h.rtp_ssrc.store(s.ssrc, Ordering::Relaxed);
        h.rtp_next_seq.store(s.next_seq as u32, Ordering::Relaxed);
        h.rtp_ts_offset.store(s.ts_offset, Ordering::Relaxed);
        h.rtp_base_ns.store(s.base_ns, Ordering::Relaxed);
        // SYNC POINT W: Release pairs with the Acquire load in rtp_state.
        h.rtp_valid.store(1, Ordering::Release);
    }

    /// Appends a per-frame record (single writer: the network stage).
    pub fn push_record(&self, r: &FrameRecord) {
        let h = self.hdr();
        let n = h.records_written.load(Ordering::Relaxed);
        let slot = self.record(n as usize);
        let s = slot.seq.load(Ordering::Relaxed);
        // SYNC POINT W (seqlock): odd seq, Release fence, fields, even seq with Release;
        // pairs with the reader's Acquire load / Acquire fence in `record_at`.
        slot.seq.store(s | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (f, v) in slot.fields.iter().zip(r.to_array()) {
            f.store(v, Ordering::Relaxed);
        }
        slot.seq.store((s | 1) + 1, Ordering::Release);
        h.records_written.store(n + 1, Ordering::Release);
    }

    /// Records written so far (the next record's index).
    pub fn records_written(&self) -> u64 {
        self.hdr().records_written.load(Ordering::Acquire)
    }

    /// Record number `n` if it is still in the ring and was not being rewritten.
    pub fn record_at(&self, n: u64) -> Option<FrameRecord> {
        let written = self.records_written();
        if n >= written || written - n > RECORDS as u64 {
            return None;
        }
        let slot = self.record(n as usize);
        for _ in 0..4 {
            let s1 = slot.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut a = [0u64; FrameRecord::FIELDS];
            for (v, f) in a.iter_mut().zip(&slot.fields) {
                *v = f.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) == s1 {
                // The slot may have been reused for a newer record meanwhile.
                let still = self.records_written() - n <= RECORDS as u64;
                return still.then(|| FrameRecord::from_array(a));
            }
        }
        None
    }
}

impl StageSlot {
    /// Current state.
    pub fn state(&self) -> StageState {
        StageState::from_u32(self.state.load(Ordering::Acquire))
    }

    /// Sets the state (Release: everything the stage wrote before is visible with it).
    pub fn set_state(&self, s: StageState) {
        self.state.store(s as u32, Ordering::Release);
    }

    /// Records a failure message (first one wins) and sets [`StageState::Failed`].
    pub fn fail(&self, msg: &str) {
        if self.error_len.load(Ordering::Acquire) == 0 {
            let b = msg.as_bytes();
            let n = b.len().min(MAX_ERROR);
            // SAFETY: only the stage itself writes its error, once, before the Release
            // store of the length; readers read after an Acquire load of the length.
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.error.get() as *mut u8, n) };
            self.error_len.store(n as u32, Ordering::Release);
        }
        self.set_state(StageState::Failed);
    }

    /// Records why the stage is [`StageState::Retrying`] (replacing any earlier reason).
    pub fn retrying(&self, msg: &str) {
        let b = msg.as_bytes();
        let n = b.len().min(MAX_ERROR);
        self.error_len.store(0, Ordering::Release);
        // SAFETY: only the stage itself writes its error text; the length is 0 while it
        // writes, and readers read only after an Acquire load of a non-zero length.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.error.get() as *mut u8, n) };
        self.error_len.store(n as u32, Ordering::Release);
        self.set_state(StageState::Retrying);
    }

    /// Like [`StageSlot::fail`], and marks the failure permanent (no restart helps).
    pub fn fail_permanent(&self, msg: &str) {
        self.permanent.store(1, Ordering::Release);
        self.fail(msg);
    }

    /// Whether the recorded failure is permanent.
    pub fn is_permanent(&self) -> bool {
        self.permanent.load(Ordering::Acquire) != 0
    }

    /// The failure message, if any.
    pub fn error(&self) -> Option<String> {
        let n = self.error_len.load(Ordering::Acquire) as usize;
        // SAFETY: see `fail`.
        (n > 0).then(|| String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(self.error.get() as *const u8, n) }).into_owned())
    }

    /// Resets the slot for a new process (keeps the counters and the restart count).
    pub fn reset(&self) {
        self.permanent.store(0, Ordering::Release);
        self.error_len.store(0, Ordering::Release);
        self.heartbeat_ns.store(0, Ordering::Relaxed);
        self.set_state(StageState::Idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip_and_age_out() {
        let name = format!("vr-stream-test-ctl-{}", std::process::id());
        let c = Control::create(&name).unwrap();
        for i in 0..(RECORDS as u64 + 10) {
            c.push_record(&FrameRecord { frame_id: i, capture_ns: i * 10, ..Default::default() });
        }
        assert!(c.record_at(0).is_none());
        assert_eq!(c.record_at(RECORDS as u64 + 9).unwrap().frame_id, RECORDS as u64 + 9);
        assert_eq!(c.record_at(10).unwrap().capture_ns, 100);
        c.stage(1).fail("boom");
        assert_eq!(c.stage(1).error().as_deref(), Some("boom"));
        assert_eq!(c.stage(1).state(), StageState::Failed);
        c.set_headers(&[0, 0, 0, 1, 0x67]);
        assert_eq!(Control::open(&name).unwrap().headers().unwrap().len(), 5);
    }
}
