//! The frame ring: one producer (camera stage), up to [`MAX_CONSUMERS`] consumers (encode,
//! detect), latest-wins, zero-copy.
//!
//! Layout after the 64-byte [`SegmentHeader`](super::SegmentHeader):
//! `RingHeader` (one cache line), `MAX_CONSUMERS` × `ConsumerState` (a cache line each),
//! `MAX_SLOTS` × `SlotMeta` (a cache line each), then at `data_offset` (page-aligned)
//! `slots` frame buffers of `slot_stride` bytes. A frame buffer holds one I420 frame:
//! Y (`width × height`), then U and V (`width/2 × height/2` each), strides = widths.
//!
//! Protocol. `latest` packs the newest published position (a growing 1-based frame count)
//! with its slot index: `pos << 8 | slot`. The producer writes only into a slot that is
//! neither the latest one nor held by a consumer, so it never blocks and never tears a frame
//! being read: `slots = consumers + 2` always leaves one free. A consumer takes the newest
//! frame by storing the slot in its `held` word and re-reading `latest`: if `latest` moved,
//! the producer may have picked that slot before seeing `held`, so it retries; if not, the
//! producer had not published since, could not have picked the latest slot, and will see
//! `held` from now on (both sides SeqCst: store then load, Dekker-style). A consumer counts
//! every position it skipped as a drop: for live video a stale frame is worse than a missing
//! one.

use super::{KIND_HEADER_OFFSET, Kind, Layout, Segment, ShmError, align_up, futex};
use std::io::ErrorKind::{AddrInUse, InvalidInput};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vr_proto::video::VideoFormat;

/// Most consumers a ring supports.
pub const MAX_CONSUMERS: usize = 4;
/// Most slots (consumers + 2).
pub const MAX_SLOTS: usize = MAX_CONSUMERS + 2;
/// Pixel format code for planar 4:2:0 (I420).
pub const FORMAT_I420: u32 = 1;
/// Spin time before sleeping on the futex: covers a hand-off between two busy cores.
pub const SPIN: Duration = Duration::from_micros(20);

#[repr(C, align(64))]
struct RingHeader {
    latest: AtomicU64,
    bell: futex::Doorbell,
    producer_pid: AtomicU32,
    consumers: u32,
    slots: u32,
    frame_bytes: u64,
    slot_stride: u64,
    data_offset: u64,
    width: u32,
    height: u32,
    fps_num: u32,
    fps_den: u32,
}

#[repr(C, align(64))]
struct ConsumerState {
    /// Slot index + 1 of the frame held, 0 = none.
    held: AtomicU64,
    /// Last position taken.
    last_pos: AtomicU64,
    /// Frames never seen by this consumer.
    drops: AtomicU64,
    /// Frames taken.
    taken: AtomicU64,
    /// PID attached as this consumer, 0 = free.
    pid: AtomicU32,
}

/// Metadata of one frame, stored beside its buffer; written by the producer before it
/// publishes the frame, read by a consumer while it holds the slot.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// Ring position (1-based count of published frames).
    pub pos: u64,
    /// Source frame id (0-based; the pattern source draws it into the picture).
    pub frame_id: u64,
    /// Capture time, CLOCK_MONOTONIC ns.
    pub capture_ns: u64,
    /// When the producer published the frame, CLOCK_MONOTONIC ns.
    pub published_ns: u64,
    /// A stereo pair's skew, ns (the two eyes' capture times apart); `None` for one camera.
    pub pair_skew_ns: Option<u64>,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Luma stride, bytes (chroma stride is half).
    pub stride: u32,
    /// [`FORMAT_I420`].
    pub format: u32,
    /// Bytes of frame data in the slot.
    pub len: u64,
}

#[repr(C, align(64))]
struct SlotMeta {
    meta: std::cell::UnsafeCell<FrameMeta>,
}

/// Geometry of a ring: the frames it carries and how many consumers take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingGeometry {
    /// Size (even width and height) and rate of the I420 frames in the slots.
    pub format: VideoFormat,
    /// Consumers, 1..=[`MAX_CONSUMERS`].
    pub consumers: u32,
}

impl RingGeometry {
    /// Bytes of one I420 frame.
    pub fn frame_bytes(&self) -> u64 {
        self.format.frame_bytes() as u64
    }
}

const KIND_HEADER_SIZE: usize = std::mem::size_of::<RingHeader>()
    + MAX_CONSUMERS * std::mem::size_of::<ConsumerState>()
    + MAX_SLOTS * std::mem::size_of::<SlotMeta>();

fn layout_of(g: &RingGeometry) -> (Layout, u64, u64) {
    let slots = g.consumers as u64 + 2;
    let stride = align_up(g.frame_bytes() as usize, 4096) as u64;
    let data_offset = align_up(KIND_HEADER_OFFSET + KIND_HEADER_SIZE, 4096) as u64;
    let layout = Layout {
        kind: Kind::FrameRing,
        kind_header_size: KIND_HEADER_SIZE as u32,
        slot_size: stride,
        slot_count: slots,
        total_size: data_offset + slots * stride,
    };
    (layout, stride, data_offset)
}

/// A mapped frame ring.
pub struct FrameRing {
    seg: Segment,
}

// SAFETY: all shared state is reached through atomics or through slots whose exclusive use
// the protocol above guarantees; the mapping itself is plain memory.
unsafe impl Send for FrameRing {}
// SAFETY: as above.
unsafe impl Sync for FrameRing {}

/// Result of [`Consumer::take`].
pub enum Take<'a> {
    /// A frame newer than the last one taken; released when dropped.
    Frame(FrameGuard<'a>),
    /// Nothing new before the deadline.
    Timeout,
    /// The producer has ended the stream and every frame was taken.
    Eos,
}

impl FrameRing {
    /// Creates ring segment `name` (see [`Segment::create`] for stale-segment handling).
    ///
    /// Errors: [`ShmError`]; an invalid geometry (odd size, 0 or too many consumers) is an
    /// `Io` error of kind InvalidInput.
    pub fn create(name: &str, g: RingGeometry) -> Result<FrameRing, ShmError> {
        if g.consumers == 0
            || g.consumers as usize > MAX_CONSUMERS
            || !g.format.width.is_multiple_of(2)
            || !g.format.height.is_multiple_of(2)
            || g.format.width == 0
            || g.format.height == 0
        {
            let msg = format!("bad ring geometry {g:?}");
            return Err(ShmError::refused(name, "create", InvalidInput, msg));
        }
        let (layout, stride, data_offset) = layout_of(&g);
        let seg = Segment::create(name, layout)?;
        let ring = FrameRing { seg };
        // SAFETY: the segment is ours alone until finish_init; the RingHeader lies at
        // KIND_HEADER_OFFSET (64-aligned) inside the mapping (total_size includes it), and
        // the zero-filled file is a valid RingHeader except for the fields written here.
        unsafe {
            let h = ring.seg.base().add(KIND_HEADER_OFFSET) as *mut RingHeader;
            (*h).consumers = g.consumers;
            (*h).slots = g.consumers + 2;
            (*h).frame_bytes = g.frame_bytes();
            (*h).slot_stride = stride;
            (*h).data_offset = data_offset;
            (*h).width = g.format.width;
            (*h).height = g.format.height;
            (*h).fps_num = g.format.fps_num;
            (*h).fps_den = g.format.fps_den;
        }
        ring.seg.finish_init();
        Ok(ring)
    }

    /// Opens ring `name`, checking the segment header and that the geometry is `g`.
    pub fn open(name: &str, g: RingGeometry) -> Result<FrameRing, ShmError> {
        let (layout, _, _) = layout_of(&g);
        let seg = Segment::open(name, layout)?;
        let ring = FrameRing { seg };
        let h = ring.hdr();
        for (field, found, expected) in [
            ("width", h.width, g.format.width),
            ("height", h.height, g.format.height),
            ("consumers", h.consumers, g.consumers),
        ] {
            if found != expected {
                return Err(ShmError::LayoutMismatch {
                    name: name.into(),
                    field,
                    found: found as u64,
                    expected: expected as u64,
                });
            }
        }
        Ok(ring)
    }

    fn hdr(&self) -> &RingHeader {
        // SAFETY: checked at create/open: the mapping holds a RingHeader at this offset.
        unsafe { &*(self.seg.base().add(KIND_HEADER_OFFSET) as *const RingHeader) }
    }

    fn consumer_state(&self, i: usize) -> &ConsumerState {
        debug_assert!(i < MAX_CONSUMERS);
        // SAFETY: i < MAX_CONSUMERS, and the consumer array follows the header inside the
        // kind header, which the layout check covers.
        unsafe { &*self.seg.array_after::<RingHeader, ConsumerState>().add(i) }
    }

    fn slot_meta(&self, s: usize) -> *mut FrameMeta {
        debug_assert!(s < MAX_SLOTS);
        // SAFETY: s < MAX_SLOTS, the slot-meta array is inside the checked kind header.
        unsafe {
            let base = self.seg.base().add(
                KIND_HEADER_OFFSET
                    + std::mem::size_of::<RingHeader>()
                    + MAX_CONSUMERS * std::mem::size_of::<ConsumerState>(),
            ) as *const SlotMeta;
            (*base.add(s)).meta.get()
        }
    }

    fn slot_data(&self, s: usize) -> *mut u8 {
        let h = self.hdr();
        debug_assert!(s < h.slots as usize);
        // SAFETY: s < slots; data_offset + slots*stride == total_size (checked at open).
        unsafe {
            self.seg
                .base()
                .add(h.data_offset as usize + s * h.slot_stride as usize)
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.hdr().slots as usize
    }

    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        self.hdr().frame_bytes as usize
    }

    /// The geometry stored in the segment.
    pub fn geometry(&self) -> RingGeometry {
        let h = self.hdr();
        RingGeometry {
            format: VideoFormat {
                width: h.width,
                height: h.height,
                fps_num: h.fps_num,
                fps_den: h.fps_den,
            },
            consumers: h.consumers,
        }
    }

    /// Frames published so far (the newest position).
    pub fn published(&self) -> u64 {
        self.hdr().latest.load(Ordering::Acquire) >> 8
    }

    /// Frames consumer `i` never saw.
    pub fn drops(&self, i: usize) -> u64 {
        self.consumer_state(i).drops.load(Ordering::Relaxed)
    }

    /// Frames consumer `i` took.
    pub fn taken(&self, i: usize) -> u64 {
        self.consumer_state(i).taken.load(Ordering::Relaxed)
    }

    /// The PID holding consumer role `i`, if a process has claimed it (it may have died
    /// since: [`Self::consumer`] takes a dead holder's role over).
    pub fn consumer_pid(&self, i: usize) -> Option<u32> {
        match self.consumer_state(i).pid.load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Touches every page of the segment (prefault before the realtime loop).
    pub fn prefault(&self) {
        self.seg.prefault();
    }

    /// Claims the producer role. Errors with `Io(AddrInUse)` if a live process holds it.
    pub fn producer(&self) -> Result<Producer<'_>, ShmError> {
        claim(&self.hdr().producer_pid, self.seg.name(), "producer")?;
        Ok(Producer {
            ring: self,
            next_slot: 0,
        })
    }

    /// Claims consumer role `i` (< consumers). A role whose PID is dead is taken over,
    /// keeping its position and counters; a crashed holder's slot is released.
    pub fn consumer(&self, i: usize) -> Result<Consumer<'_>, ShmError> {
        if i >= self.hdr().consumers as usize {
            let msg = format!("consumer {i} of {}", self.hdr().consumers);
            return Err(ShmError::refused(
                self.seg.name(),
                "attach consumer",
                InvalidInput,
                msg,
            ));
        }
        let st = self.consumer_state(i);
        claim(&st.pid, self.seg.name(), "consumer")?;
        // A previous holder that died mid-frame: its slot is free again.
        st.held.store(0, Ordering::SeqCst);
        Ok(Consumer {
            ring: self,
            idx: i,
            last_pos: st.last_pos.load(Ordering::Relaxed),
            last_published_ns: 0,
            spin_window_ns: 0,
            frame_interval_ns: self.geometry().format.frame_interval_ns(),
        })
    }

    /// Marks the end of the stream: consumers get [`Take::Eos`] once they have taken the
    /// last frame.
    pub fn set_eos(&self) {
        self.hdr().bell.set_eos();
    }

    /// Wakes every consumer waiting in [`Consumer::take`] (used at shutdown).
    pub fn wake_all(&self) {
        self.hdr().bell.notify();
    }
}

fn claim(word: &AtomicU32, name: &str, role: &str) -> Result<(), ShmError> {
    let me = std::process::id();
    loop {
        let cur = word.load(Ordering::Acquire);
        if cur == me {
            return Ok(());
        }
        if cur != 0 && super::pid_alive(cur) {
            let msg = format!("{role} role held by running process {cur}");
            return Err(ShmError::refused(name, "claim role", AddrInUse, msg));
        }
        if word
            .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Ok(());
        }
    }
}

/// The producer role; at most one per ring.
pub struct Producer<'a> {
    ring: &'a FrameRing,
    next_slot: usize,
}

impl Producer<'_> {
    /// Fills a free slot with `fill` and publishes it as the newest frame. Never blocks.
    ///
    /// `fill` gets the frame buffer (exactly `frame_bytes` long) and returns the frame's
    /// metadata (`pos` is set here), or an error, in which case nothing is published.
    /// Returns the published position.
    pub fn produce<E>(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Result<FrameMeta, E>,
    ) -> Result<u64, E> {
        let ring = self.ring;
        let h = ring.hdr();
        let slot = self.free_slot();
        // SAFETY: `slot` is neither latest nor held: no consumer reads it until we publish
        // it, and we are the only producer (claimed role; `&mut self`). The buffer lies
        // inside the mapping (checked layout) and is frame_bytes long.
        let data =
            unsafe { std::slice::from_raw_parts_mut(ring.slot_data(slot), h.frame_bytes as usize) };
        let mut meta = fill(data)?;
        let pos = (h.latest.load(Ordering::Relaxed) >> 8) + 1;
        meta.pos = pos;
        // SAFETY: we still own `slot` exclusively (see above).
        unsafe { std::ptr::write(ring.slot_meta(slot), meta) };
        // SYNC POINT W: SeqCst store publishes meta + data (its Release part pairs with the
        // consumer's load of `latest`) and takes part in the Dekker pattern with `held`.
        h.latest.store(pos << 8 | slot as u64, Ordering::SeqCst);
        h.bell.notify();
        Ok(pos)
    }

    /// Metadata of the newest published frame, if any (a restarted producer resumes after
    /// it). Sound because only the producer role, which `self` holds, writes metadata.
    pub fn last_published(&self) -> Option<FrameMeta> {
        let l = self.ring.hdr().latest.load(Ordering::Acquire);
        // SAFETY: the latest slot is never written by anyone but the producer, and we are
        // the producer; its metadata was completely written before `latest` was stored.
        (l != 0).then(|| unsafe { std::ptr::read(self.ring.slot_meta((l & 0xff) as usize)) })
    }

    fn free_slot(&mut self) -> usize {
        let ring = self.ring;
        let h = ring.hdr();
        let n = h.slots as usize;
        let l = h.latest.load(Ordering::SeqCst);
        for k in 0..n {
            let s = (self.next_slot + k) % n;
            if l != 0 && s == (l & 0xff) as usize {
                continue;
            }
            // SYNC POINT R: SeqCst load pairs with the consumer's SeqCst `held` store
            // (Dekker pattern, see module docs), and with its Release store of 0 on release,
            // so the consumer's reads of the slot happen-before our writes.
            let busy = (0..h.consumers as usize)
                .any(|c| ring.consumer_state(c).held.load(Ordering::SeqCst) == s as u64 + 1);
            if !busy {
                self.next_slot = (s + 1) % n;
                return s;
            }
        }
        // slots = consumers + 2: one latest + at most one held per consumer leaves a slot.
        unreachable!("frame ring invariant broken: no free slot among {n}")
    }
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        let _ = self.ring.hdr().producer_pid.compare_exchange(
            std::process::id(),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// A consumer role.
pub struct Consumer<'a> {
    ring: &'a FrameRing,
    idx: usize,
    last_pos: u64,
    last_published_ns: u64,
    spin_window_ns: u64,
    /// The ring's frame interval, ns: where the spin window expects the next frame.
    frame_interval_ns: u64,
}

/// A held frame, read in place; the slot is released when this is dropped.
pub struct FrameGuard<'a> {
    st: &'a ConsumerState,
    /// The frame's metadata.
    pub meta: FrameMeta,
    /// Frames skipped between the previous take and this one.
    pub skipped: u64,
    /// The frame: `meta.len` bytes of I420.
    pub data: &'a [u8],
}

impl Drop for FrameGuard<'_> {
    fn drop(&mut self) {
        // SYNC POINT W: Release pairs with the producer's SeqCst load of `held` in `free_slot`.
        self.st.held.store(0, Ordering::Release);
    }
}

impl<'a> Consumer<'a> {
    /// Spins instead of sleeping within `w` either side of the time the next frame is
    /// expected (last publish time + the ring's frame interval). Zero (the default) always
    /// sleeps on the futex after the short [`SPIN`].
    pub fn set_spin_window(&mut self, w: Duration) {
        self.spin_window_ns = w.as_nanos() as u64;
    }

    /// Takes the newest frame newer than the last one taken, waiting until `deadline`
    /// (short spin, then futex). Skipped positions are added to this consumer's drops.
    pub fn take(&mut self, deadline: Instant) -> Take<'_> {
        let ring = self.ring;
        let h = ring.hdr();
        let st = ring.consumer_state(self.idx);
        let last = self.last_pos;
        let fresh = || (h.latest.load(Ordering::Acquire) >> 8) > last || h.bell.is_eos();
        let window = (self.spin_window_ns > 0 && self.last_published_ns > 0).then(|| {
            let next = self.last_published_ns + self.frame_interval_ns;
            (
                next.saturating_sub(self.spin_window_ns),
                next + self.spin_window_ns,
            )
        });
        if !h.bell.wait_until(SPIN, || window, deadline, fresh) {
            return Take::Timeout;
        }
        loop {
            let l = h.latest.load(Ordering::SeqCst);
            let pos = l >> 8;
            if pos <= last {
                // Only EOS woke us and everything was taken.
                return Take::Eos;
            }
            let slot = (l & 0xff) as usize;
            // SYNC POINT W: SeqCst store then SeqCst load of `latest` (Dekker pattern with
            // the producer's `latest` store / `held` load).
            st.held.store(slot as u64 + 1, Ordering::SeqCst);
            if h.latest.load(Ordering::SeqCst) != l {
                continue;
            }
            // SAFETY: we hold `slot` and it is still the latest: the producer will not
            // write it until we release it (module docs). Meta and data were written before
            // the SeqCst store of `latest` that we loaded.
            let meta = unsafe { std::ptr::read(ring.slot_meta(slot)) };
            debug_assert_eq!(meta.pos, pos);
            let len = (meta.len as usize).min(ring.frame_bytes());
            // SAFETY: as above; the buffer lies inside the mapping.
            let data = unsafe { std::slice::from_raw_parts(ring.slot_data(slot), len) };
            let skipped = pos - last - 1;
            self.last_pos = pos;
            self.last_published_ns = meta.published_ns;
            st.last_pos.store(pos, Ordering::Relaxed);
            st.drops.fetch_add(skipped, Ordering::Relaxed);
            st.taken.fetch_add(1, Ordering::Relaxed);
            return Take::Frame(FrameGuard {
                st,
                meta,
                skipped,
                data,
            });
        }
    }

    /// Frames this consumer never saw.
    pub fn drops(&self) -> u64 {
        self.ring.drops(self.idx)
    }
}

impl Drop for Consumer<'_> {
    fn drop(&mut self) {
        let st = self.ring.consumer_state(self.idx);
        st.held.store(0, Ordering::Release);
        let _ = st
            .pid
            .compare_exchange(std::process::id(), 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom() -> RingGeometry {
        RingGeometry {
            format: VideoFormat {
                width: 64,
                height: 32,
                fps_num: 60,
                fps_den: 1,
            },
            consumers: 2,
        }
    }

    #[test]
    fn latest_wins_and_drops_are_counted() {
        let name = format!("vr-stream-test-ring-{}", std::process::id());
        let ring = FrameRing::create(&name, geom()).unwrap();
        let mut p = ring.producer().unwrap();
        let mut c = ring.consumer(0).unwrap();
        for i in 0..5u8 {
            p.produce(|d| {
                d.fill(i);
                Ok::<_, ()>(FrameMeta {
                    frame_id: i as u64,
                    len: d.len() as u64,
                    ..Default::default()
                })
            })
            .unwrap();
        }
        let soon = Instant::now() + Duration::from_millis(10);
        match c.take(soon) {
            Take::Frame(f) => {
                assert_eq!(f.meta.frame_id, 4);
                assert_eq!(f.skipped, 4);
                assert!(f.data.iter().all(|&b| b == 4));
                // While held, the producer never writes this slot.
                for _ in 0..10 {
                    p.produce(|d| {
                        assert_ne!(d.as_ptr(), f.data.as_ptr());
                        Ok::<_, ()>(FrameMeta {
                            frame_id: 99,
                            len: d.len() as u64,
                            ..Default::default()
                        })
                    })
                    .unwrap();
                }
                assert!(f.data.iter().all(|&b| b == 4));
            }
            _ => panic!("expected a frame"),
        }
        assert!(matches!(c.take(Instant::now()), Take::Frame(_)));
        assert!(matches!(c.take(Instant::now()), Take::Timeout));
        ring.set_eos();
        assert!(matches!(
            c.take(Instant::now() + Duration::from_millis(10)),
            Take::Eos
        ));
        assert_eq!(ring.drops(0), 4 + 9);
        // A second producer in the same process re-claims (same PID) - allowed; another
        // geometry is refused.
        let mut g = geom();
        g.format.width = 66;
        assert!(FrameRing::open(&name, g).is_err());
    }
}
