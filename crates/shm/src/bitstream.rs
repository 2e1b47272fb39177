//! The bitstream queue: encode stage → network stage, single producer / single consumer,
//! variable-length records, bounded in bytes.
//!
//! Layout after the 64-byte segment header: `QueueHeader` (cache-line aligned, the write
//! and read positions on separate lines), then at `data_offset` (page-aligned) `capacity`
//! bytes of records. A record is a 64-byte header (`total_len`, `kind`, [`AuMeta`]) followed by the access unit (Annex-B
//! NAL units) padded to 8 bytes. Positions are growing byte counts; a record never wraps:
//! when it does not fit before the end, a padding record (`kind = PAD`) fills the rest.
//!
//! When the queue lacks room the producer drops the whole access unit (never part of one),
//! counts it and raises `idr_request`, so the encoder's next frame is an IDR and the
//! receiver recovers. The consumer reads a record in place and frees it when done.

use super::{KIND_HEADER_OFFSET, Kind, Layout, Segment, ShmError, align_up, futex};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const KIND_AU: u32 = 1;
const KIND_PAD: u32 = 2;
/// Flag bit in [`AuMeta::flags`]: the access unit starts with an IDR (SPS/PPS + IDR slice).
pub const FLAG_KEYFRAME: u32 = 1;
/// [`AuMeta::flags`]: the frame is a stereo pair and `pair_skew_ns` holds its skew.
pub const FLAG_STEREO_PAIR: u32 = 2;

#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C)]
struct QueueHeader {
    write_pos: Line<AtomicU64>,
    read_pos: Line<AtomicU64>,
    capacity: u64,
    data_offset: u64,
    bell: futex::Doorbell,
    idr_request: AtomicU32,
    pushed: AtomicU64,
    busy_since_ns: AtomicU64,
    dropped_aus: AtomicU64,
    dropped_bytes: AtomicU64,
}

/// Metadata of one access unit, carried in its record header. Times are CLOCK_MONOTONIC ns.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuMeta {
    /// Source frame id.
    pub frame_id: u64,
    /// Capture time.
    pub capture_ns: u64,
    /// When the camera stage published the frame.
    pub published_ns: u64,
    /// When the encode stage took the frame (x264 call start).
    pub encode_start_ns: u64,
    /// When x264 returned the access unit.
    pub encode_end_ns: u64,
    /// A stereo pair's skew, ns, when `flags` has [`FLAG_STEREO_PAIR`] (see
    /// [`AuMeta::pair_skew_ns`]).
    pub pair_skew_ns: u64,
    /// [`FLAG_KEYFRAME`], [`FLAG_STEREO_PAIR`].
    pub flags: u32,
    /// Bytes of Annex-B data that follow.
    pub payload_len: u32,
}

impl AuMeta {
    /// Sets [`AuMeta::pair_skew_ns`] and [`FLAG_STEREO_PAIR`] from a frame's pair skew
    /// (`None`: one camera, the flag cleared).
    pub fn set_pair_skew(&mut self, skew_ns: Option<u64>) {
        self.pair_skew_ns = skew_ns.unwrap_or(0);
        if skew_ns.is_some() {
            self.flags |= FLAG_STEREO_PAIR;
        } else {
            self.flags &= !FLAG_STEREO_PAIR;
        }
    }

    /// The stereo pair skew, ns; `None` when the frame came from one camera.
    pub fn pair_skew(&self) -> Option<u64> {
        (self.flags & FLAG_STEREO_PAIR != 0).then_some(self.pair_skew_ns)
    }
}

/// The record header: `total_len` (bytes, multiple of 8, header included), `kind`, then
/// [`AuMeta`]. 64 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct AuHeader {
    total_len: u32,
    kind: u32,
    meta: AuMeta,
}
const AU_HEADER: usize = std::mem::size_of::<AuHeader>();
const _: () = assert!(AU_HEADER == 64);

/// What [`Writer::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued.
    Queued,
    /// Not enough room: dropped whole, counted, IDR requested.
    Dropped,
}

/// A mapped bitstream queue.
pub struct BitstreamQueue {
    seg: Segment,
}

// SAFETY: shared state is atomics; record bytes are only touched by the side that owns
// them according to the positions (SPSC protocol in the module docs).
unsafe impl Send for BitstreamQueue {}
// SAFETY: as above.
unsafe impl Sync for BitstreamQueue {}

fn layout_of(capacity: u64) -> Layout {
    let data_offset = align_up(
        KIND_HEADER_OFFSET + std::mem::size_of::<QueueHeader>(),
        4096,
    ) as u64;
    Layout {
        kind: Kind::Bitstream,
        kind_header_size: std::mem::size_of::<QueueHeader>() as u32,
        slot_size: 1,
        slot_count: capacity,
        total_size: data_offset + capacity,
    }
}

impl BitstreamQueue {
    /// Creates queue `name` holding up to `capacity` bytes (rounded up to 4096).
    pub fn create(name: &str, capacity: usize) -> Result<BitstreamQueue, ShmError> {
        let capacity = align_up(capacity.max(4096), 4096) as u64;
        let layout = layout_of(capacity);
        let seg = Segment::create(name, layout)?;
        // SAFETY: segment is ours until finish_init; the header lies at KIND_HEADER_OFFSET.
        unsafe {
            let h = seg.base().add(KIND_HEADER_OFFSET) as *mut QueueHeader;
            (*h).capacity = capacity;
            (*h).data_offset = layout.total_size - capacity;
        }
        seg.finish_init();
        Ok(BitstreamQueue { seg })
    }

    /// Opens queue `name` of `capacity` bytes (as given to `create`), checking its header.
    pub fn open(name: &str, capacity: usize) -> Result<BitstreamQueue, ShmError> {
        let capacity = align_up(capacity.max(4096), 4096) as u64;
        let seg = Segment::open(name, layout_of(capacity))?;
        Ok(BitstreamQueue { seg })
    }

    fn hdr(&self) -> &QueueHeader {
        // SAFETY: checked layout: the QueueHeader lies at KIND_HEADER_OFFSET.
        unsafe { &*(self.seg.base().add(KIND_HEADER_OFFSET) as *const QueueHeader) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: data_offset + capacity == total size (checked layout).
        unsafe { self.seg.base().add(self.hdr().data_offset as usize) }
    }

    /// Capacity, bytes.
    pub fn capacity(&self) -> usize {
        self.hdr().capacity as usize
    }

    /// Access units queued so far.
    pub fn pushed(&self) -> u64 {
        self.hdr().pushed.load(Ordering::Relaxed)
    }

    /// Access units dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.hdr().dropped_aus.load(Ordering::Relaxed)
    }

    /// Asks the encoder for an IDR (a consumer-side PLI, or a drop).
    pub fn request_idr(&self) {
        self.hdr().idr_request.store(1, Ordering::Release);
    }

    /// Takes a pending IDR request (returns true at most once per request).
    pub fn take_idr_request(&self) -> bool {
        self.hdr().idr_request.swap(0, Ordering::AcqRel) != 0
    }

    /// Marks the end of the stream; the reader gets [`Next::Eos`] after the last record.
    pub fn set_eos(&self) {
        self.hdr().bell.set_eos();
    }

    /// Wakes a waiting reader (shutdown).
    pub fn wake_all(&self) {
        self.hdr().bell.notify();
    }

    /// Touches every page (prefault).
    pub fn prefault(&self) {
        self.seg.prefault();
    }

    /// The writer side. Call once, in the producing process.
    pub fn writer(&self) -> Writer<'_> {
        Writer {
            q: self,
            lossy: false,
        }
    }

    /// A writer whose drops do not raise the IDR request: for a consumer that may stall or
    /// die without that costing the other outputs an IDR (the web stage's copy of the
    /// stream). Its reader notices drops by [`BitstreamQueue::dropped`] and asks for an IDR
    /// itself ([`BitstreamQueue::request_idr`]) when it needs one.
    pub fn lossy_writer(&self) -> Writer<'_> {
        Writer {
            q: self,
            lossy: true,
        }
    }

    /// The reader side. Call once, in the consuming process.
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            q: self,
            last_arrival_ns: 0,
            interval_ns: 0,
            window_ns: 0,
            work: [0; 16],
            work_n: 0,
        }
    }
}

/// The producing side.
pub struct Writer<'a> {
    q: &'a BitstreamQueue,
    lossy: bool,
}

impl Writer<'_> {
    /// Tells the reader that the next record is being made since `now_ns` (the encoder
    /// calls this before x264), so it can spin around the expected arrival instead of
    /// paying a futex wake-up. Cleared by the next [`Writer::push`].
    pub fn set_busy(&mut self, now_ns: u64) {
        let h = self.q.hdr();
        h.busy_since_ns.store(now_ns, Ordering::Release);
        h.bell.notify();
    }

    /// Queues one access unit, or drops it whole when it does not fit (counted; IDR
    /// requested unless the writer is lossy). Never blocks.
    pub fn push(&mut self, meta: AuMeta, payload: &[u8]) -> Push {
        let q = self.q;
        let h = q.hdr();
        let cap = h.capacity;
        let need = align_up(AU_HEADER + payload.len(), 8) as u64;
        let w = h.write_pos.0.load(Ordering::Relaxed);
        // SYNC POINT R: Acquire pairs with the reader's Release store of read_pos, so its
        // reads of freed records happen-before we overwrite them.
        let r = h.read_pos.0.load(Ordering::Acquire);
        let off = w % cap;
        let to_end = cap - off;
        let pad = if to_end < need { to_end } else { 0 };
        if need > cap || (w - r) + pad + need > cap {
            h.dropped_aus.fetch_add(1, Ordering::Relaxed);
            h.dropped_bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
            if !self.lossy {
                h.idr_request.store(1, Ordering::Release);
            }
            return Push::Dropped;
        }
        let base = q.data();
        let mut off = off as usize;
        if pad > 0 {
            // SAFETY: [off, cap) is free (checked above: used + pad + need <= cap) and at
            // least 8 bytes (all sizes are multiples of 8); we write the 8-byte PAD marker.
            unsafe {
                let p = base.add(off) as *mut u32;
                p.write(pad as u32);
                p.add(1).write(KIND_PAD);
            }
            off = 0;
        }
        let hdr = AuHeader {
            total_len: need as u32,
            kind: KIND_AU,
            meta: AuMeta {
                payload_len: payload.len() as u32,
                ..meta
            },
        };
        // SAFETY: [off, off + need) is free and inside the data area (off + need <= cap
        // because pad was taken when it would not fit); 8-byte aligned for the header.
        unsafe {
            std::ptr::write(base.add(off) as *mut AuHeader, hdr);
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                base.add(off + AU_HEADER),
                payload.len(),
            );
        }
        // SYNC POINT W: Release publishes the record bytes; pairs with the reader's Acquire
        // load of write_pos.
        h.write_pos.0.store(w + pad + need, Ordering::Release);
        h.busy_since_ns.store(0, Ordering::Relaxed);
        h.pushed.fetch_add(1, Ordering::Relaxed);
        h.bell.notify();
        Push::Queued
    }
}

/// The consuming side.
pub struct Reader<'a> {
    q: &'a BitstreamQueue,
    last_arrival_ns: u64,
    interval_ns: u64,
    window_ns: u64,
    /// Recent production times (encode_end - encode_start), ns.
    work: [u64; 16],
    work_n: usize,
}

/// Result of [`Reader::next`].
pub enum Next<'a> {
    /// The oldest queued access unit, read in place; freed when dropped.
    Au(AuGuard<'a>),
    /// Nothing before the deadline.
    Timeout,
    /// The writer ended the stream and everything was read.
    Eos,
}

/// An access unit being read; its bytes are freed for the writer on drop.
pub struct AuGuard<'a> {
    h: &'a QueueHeader,
    end: u64,
    /// Its metadata.
    pub meta: AuMeta,
    /// Annex-B NAL units.
    pub data: &'a [u8],
}

impl Drop for AuGuard<'_> {
    fn drop(&mut self) {
        // SYNC POINT W: Release pairs with the writer's Acquire load of read_pos.
        self.h.read_pos.0.store(self.end, Ordering::Release);
    }
}

impl Reader<'_> {
    /// Frees every record queued now without reading it (a restarted consumer that wants
    /// the live stream, not what piled up while it was away). Returns how many bytes.
    pub fn skip_all(&mut self) -> u64 {
        let h = self.q.hdr();
        let r = h.read_pos.0.load(Ordering::Relaxed);
        // SYNC POINT R: Acquire pairs with the writer's Release store of write_pos (a
        // record boundary: the writer only ever publishes whole records).
        let w = h.write_pos.0.load(Ordering::Acquire);
        // SYNC POINT W: Release pairs with the writer's Acquire load of read_pos.
        h.read_pos.0.store(w, Ordering::Release);
        w - r
    }

    /// Records arrive about every `interval` (one access unit per frame): spin instead of
    /// sleeping within `window` either side of the expected arrival. While the writer is
    /// busy ([`Writer::set_busy`]) the arrival is expected at busy-since + the shortest to
    /// longest of the last 16 production times; otherwise at the last arrival + `interval`.
    /// Zero window (the default) always sleeps after the short spin.
    pub fn set_spin_window(&mut self, interval: Duration, window: Duration) {
        self.interval_ns = interval.as_nanos() as u64;
        self.window_ns = window.as_nanos() as u64;
    }

    /// The oldest access unit, waiting until `deadline` (spin `spin`, then futex).
    pub fn next(&mut self, deadline: Instant, spin: Duration) -> Next<'_> {
        let q = self.q;
        let h = q.hdr();
        let cap = h.capacity;
        loop {
            let r = h.read_pos.0.load(Ordering::Relaxed);
            let avail = || h.write_pos.0.load(Ordering::Acquire) > r || h.bell.is_eos();
            let (wn, last, interval) = (self.window_ns, self.last_arrival_ns, self.interval_ns);
            let recent = &self.work[..self.work_n.min(16)];
            let (lo, hi) = (recent.iter().min().copied(), recent.iter().max().copied());
            let window = || {
                if wn == 0 {
                    return None;
                }
                let busy = h.busy_since_ns.load(Ordering::Acquire);
                match (busy, lo, hi) {
                    (b, Some(lo), Some(hi)) if b > 0 => {
                        Some((b + lo.saturating_sub(wn), b + hi.min(lo + 4 * wn) + wn))
                    }
                    _ if last > 0 => {
                        Some(((last + interval).saturating_sub(wn), last + interval + wn))
                    }
                    _ => None,
                }
            };
            if !h.bell.wait_until(spin, window, deadline, avail) {
                return Next::Timeout;
            }
            // SYNC POINT R: Acquire pairs with the writer's Release store of write_pos.
            let w = h.write_pos.0.load(Ordering::Acquire);
            if w == r {
                return Next::Eos;
            }
            let off = (r % cap) as usize;
            // SAFETY: [r, w) holds complete records published by the writer; the header
            // at `off` is inside the data area and 8-aligned. PAD markers only have their
            // first 8 bytes written, so read those first.
            let (total_len, kind) = unsafe {
                let p = q.data().add(off) as *const u32;
                (p.read(), p.add(1).read())
            };
            if kind == KIND_PAD {
                h.read_pos.0.store(r + total_len as u64, Ordering::Release);
                continue;
            }
            // SAFETY: as above: a full AU record of total_len bytes starts at `off`.
            let hdr = unsafe { std::ptr::read(q.data().add(off) as *const AuHeader) };
            debug_assert_eq!(hdr.kind, KIND_AU);
            // SAFETY: the payload follows the header inside the same record.
            let data = unsafe {
                std::slice::from_raw_parts(
                    q.data().add(off + AU_HEADER),
                    hdr.meta.payload_len as usize,
                )
            };
            if self.window_ns > 0 {
                self.last_arrival_ns = vr_sys::time::monotonic_ns();
                let m = hdr.meta;
                if m.encode_end_ns > m.encode_start_ns {
                    self.work[self.work_n % 16] = m.encode_end_ns - m.encode_start_ns;
                    self.work_n += 1;
                }
            }
            return Next::Au(AuGuard {
                h,
                end: r + total_len as u64,
                meta: hdr.meta,
                data,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4 KiB queue named after the test and this process.
    fn queue(test: &str) -> BitstreamQueue {
        let name = format!("vr-stream-test-bs-{test}-{}", std::process::id());
        BitstreamQueue::create(&name, 4096).unwrap()
    }

    #[test]
    fn wraps_drops_whole_and_requests_idr() {
        let q = queue("wrap");
        let mut w = q.writer();
        let mut r = q.reader();
        let never = Instant::now();
        let mut expect = 0u64;
        for (next_id, round) in (0..200u64).enumerate() {
            let next_id = next_id as u64;
            let len = (round * 37 % 1500) as usize + 1;
            let payload: Vec<u8> = (0..len).map(|i| (i as u64 + round) as u8).collect();
            let res = w.push(
                AuMeta {
                    frame_id: next_id,
                    ..Default::default()
                },
                &payload,
            );
            assert_eq!(res, Push::Queued, "room after each read");
            match r.next(never, Duration::ZERO) {
                Next::Au(a) => {
                    assert_eq!(a.meta.frame_id, expect);
                    assert_eq!(a.data, &payload[..]);
                    expect += 1;
                }
                _ => panic!("record expected"),
            }
        }
        // Fill: later pushes are dropped whole and raise the IDR request.
        let big = vec![7u8; 1500];
        let mut dropped = 0;
        for _ in 0..5 {
            if w.push(AuMeta::default(), &big) == Push::Dropped {
                dropped += 1;
            }
        }
        assert!(dropped >= 3 && q.dropped() == dropped);
        assert!(q.take_idr_request());
        assert!(!q.take_idr_request());
        assert_eq!(w.push(AuMeta::default(), &vec![0u8; 5000]), Push::Dropped);
        q.set_eos();
        let mut n = 0;
        while let Next::Au(a) = r.next(never, Duration::ZERO) {
            assert_eq!(a.data.len(), 1500);
            n += 1;
        }
        assert_eq!(n, 5 - dropped);
        assert!(matches!(r.next(never, Duration::ZERO), Next::Eos));
    }

    #[test]
    fn a_lossy_writer_drops_without_an_idr_request_and_skip_all_frees_the_backlog() {
        let q = queue("lossy");
        let mut w = q.lossy_writer();
        let mut r = q.reader();
        let big = vec![1u8; 1500];
        let pushed: Vec<Push> = (0..4)
            .map(|i| {
                w.push(
                    AuMeta {
                        frame_id: i,
                        ..Default::default()
                    },
                    &big,
                )
            })
            .collect();
        assert_eq!(
            pushed.iter().filter(|p| **p == Push::Dropped).count() as u64,
            q.dropped()
        );
        assert!(q.dropped() >= 1);
        assert!(
            !q.take_idr_request(),
            "a lossy writer's drop asks for no IDR"
        );
        assert!(r.skip_all() > 0);
        assert!(
            matches!(r.next(Instant::now(), Duration::ZERO), Next::Timeout),
            "nothing left after skip_all"
        );
        assert_eq!(
            w.push(
                AuMeta {
                    frame_id: 9,
                    ..Default::default()
                },
                &big
            ),
            Push::Queued,
            "room again"
        );
        match r.next(Instant::now(), Duration::ZERO) {
            Next::Au(a) => assert_eq!(a.meta.frame_id, 9),
            _ => panic!("the record pushed after skip_all"),
        }
    }
}
