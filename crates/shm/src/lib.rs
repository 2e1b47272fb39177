//! vr-shm: the shared-memory segments between vr-stream's stage processes, and what is
//! stored in them: per-frame latency records ([`latency`]) and detections (`vr-proto`'s),
//! and the segment names of an instance ([`names`]). This crate is all `dashboard` needs
//! to read a running stream: it has no encoder, detector, network or web code.
//!
//! A segment is a file under `/dev/shm` (tmpfs), mapped shared by every process that uses
//! it. It starts with a [`SegmentHeader`] (`#[repr(C)]`, 64 bytes): magic, layout version,
//! kind, the `size_of` of the header and of the kind's own header, slot size and count, total
//! size, owner PID, and an init-complete flag written last (Release). [`Segment::open`]
//! refuses a segment whose magic, version, kind, sizes or init flag do not match, with an
//! error that names the segment.
//!
//! Kinds: [`frame_ring`] (camera → encode, latest-wins, zero-copy),
//! [`bitstream`] (encode → network, SPSC, bounded in bytes), [`control`] (states,
//! counters, per-frame latency records). Positions in them are growing 64-bit counters and
//! payloads are addressed by offsets, never pointers.

#![warn(missing_docs)]

pub mod bitstream;
pub mod control;
pub mod frame_ring;
pub mod futex;
pub mod latency;
pub mod names;
pub mod seqtext;
pub mod stats;

use memmap2::MmapMut;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// `b"VRSTSHM\0"` as a little-endian u64: the first 8 bytes of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"VRSTSHM\0");
/// Layout version of every segment kind; bump on any change of a `#[repr(C)]` layout.
pub const LAYOUT_VERSION: u32 = 11;
/// Directory holding the segment files.
pub const SHM_DIR: &str = "/dev/shm";

/// Which layout follows the [`SegmentHeader`], stored there as u32: 1 to 4 in declaration
/// order, 99 for [`Kind::Test`]. Renumbering is a layout change ([`LAYOUT_VERSION`]).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`frame_ring::FrameRing`].
    FrameRing = 1,
    /// [`bitstream::BitstreamQueue`].
    Bitstream,
    /// [`control::Control`].
    Control,
    /// [`stats::Stats`].
    Stats,
    /// A bare segment used by tests and benchmarks.
    Test = 99,
}

/// Errors from creating or opening a segment. Every variant names the segment.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// The OS refused an operation on the segment file.
    #[error("shared-memory segment {name}: {op}: {err}")]
    Io {
        /// Segment name.
        name: String,
        /// What was attempted.
        op: &'static str,
        /// The OS error.
        err: io::Error,
    },
    /// A live process owns a segment of that name.
    #[error("shared-memory segment {name} is in use by running process {pid} (another vr-stream?)")]
    InUse {
        /// Segment name.
        name: String,
        /// Its owner.
        pid: u32,
    },
    /// The file is not a vr-stream segment.
    #[error("shared-memory segment {name}: bad magic {found:#018x} (not a vr-stream segment)")]
    BadMagic {
        /// Segment name.
        name: String,
        /// The first 8 bytes.
        found: u64,
    },
    /// Written by another version of vr-stream.
    #[error(
        "shared-memory segment {name}: layout version {found}, this build reads version {expected}"
    )]
    VersionMismatch {
        /// Segment name.
        name: String,
        /// Version in the segment.
        found: u32,
        /// Version of this build.
        expected: u32,
    },
    /// A header field differs from what this build expects.
    #[error("shared-memory segment {name}: {field} is {found}, expected {expected}")]
    LayoutMismatch {
        /// Segment name.
        name: String,
        /// Which field.
        field: &'static str,
        /// Its value.
        found: u64,
        /// What this build expects.
        expected: u64,
    },
    /// The creator has not finished initializing it.
    #[error("shared-memory segment {name}: initialization not complete")]
    NotInitialized {
        /// Segment name.
        name: String,
    },
}

impl ShmError {
    /// [`ShmError::Io`]: segment `name`, operation `op`, the OS's error `err`.
    pub(crate) fn io(name: &str, op: &'static str, err: io::Error) -> ShmError {
        ShmError::Io {
            name: name.to_string(),
            op,
            err,
        }
    }

    /// [`ShmError::Io`] for a refusal of ours rather than the OS's: an error of `kind`
    /// saying `msg`.
    pub(crate) fn refused(name: &str, op: &'static str, kind: io::ErrorKind, msg: String) -> Self {
        Self::io(name, op, io::Error::new(kind, msg))
    }
}

/// The first 64 bytes of every segment.
#[repr(C)]
pub struct SegmentHeader {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// [`Kind`] as u32.
    pub kind: u32,
    /// `size_of::<SegmentHeader>()`.
    pub header_size: u32,
    /// `size_of` of the kind's own header that follows at offset 64.
    pub kind_header_size: u32,
    /// Bytes per slot (kind-specific; 0 if none).
    pub slot_size: u64,
    /// Number of slots (kind-specific; 0 if none).
    pub slot_count: u64,
    /// Total bytes of the segment.
    pub total_size: u64,
    /// PID of the creating process.
    pub owner_pid: u32,
    /// 0 while the creator initializes, 1 once every field is written (Release store).
    pub init_complete: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<SegmentHeader>() == 56);
/// Offset of the kind's own header: the segment header padded to a cache line.
pub const KIND_HEADER_OFFSET: usize = 64;

/// What a segment's header must say; used to create it and checked when opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Kind of segment.
    pub kind: Kind,
    /// `size_of` the kind header.
    pub kind_header_size: u32,
    /// Bytes per slot.
    pub slot_size: u64,
    /// Slots.
    pub slot_count: u64,
    /// Total bytes, header included.
    pub total_size: u64,
}

/// A mapped segment. The creator ([`Segment::create`]) removes the file when dropped.
pub struct Segment {
    name: String,
    path: PathBuf,
    map: MmapMut,
    owner: bool,
}

/// Path of segment `name` (no slash) under [`SHM_DIR`].
pub fn segment_path(name: &str) -> PathBuf {
    Path::new(SHM_DIR).join(name)
}

/// Whether process `pid` exists (kill(pid, 0) succeeds or fails with EPERM).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

fn read_owner(path: &Path) -> Option<u32> {
    let mut buf = [0u8; 56];
    let f = File::open(path).ok()?;
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut buf, 0).ok()?;
    if u64::from_le_bytes(buf[0..8].try_into().ok()?) != MAGIC {
        return None;
    }
    Some(u32::from_le_bytes(buf[48..52].try_into().ok()?))
}

impl Segment {
    /// Creates segment `name` with `layout`, zero-filled, header written, init flag still 0.
    ///
    /// A leftover file whose owner PID is dead (a crashed run) is removed and recreated;
    /// one whose owner lives gives [`ShmError::InUse`]. Call [`Segment::finish_init`] after
    /// writing the kind header.
    pub fn create(name: &str, layout: Layout) -> Result<Segment, ShmError> {
        let path = segment_path(name);
        let io_err = |op, err| ShmError::io(name, op, err);
        if path.exists() {
            match read_owner(&path) {
                Some(pid) if pid_alive(pid) && pid != std::process::id() => {
                    return Err(ShmError::InUse {
                        name: name.to_string(),
                        pid,
                    });
                }
                _ => std::fs::remove_file(&path).map_err(|e| io_err("remove stale segment", e))?,
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err("create", e))?;
        let cleanup = |e| {
            let _ = std::fs::remove_file(&path);
            e
        };
        file.set_len(layout.total_size)
            .map_err(|e| cleanup(io_err("set size", e)))?;
        // SAFETY: the file was just created by us (create_new, mode 0600) and is only
        // resized by us; other processes map it but never truncate it, so the mapping stays
        // backed for its whole life.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| cleanup(io_err("mmap", e)))?;
        let hdr = SegmentHeader {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            kind: layout.kind as u32,
            header_size: std::mem::size_of::<SegmentHeader>() as u32,
            kind_header_size: layout.kind_header_size,
            slot_size: layout.slot_size,
            slot_count: layout.slot_count,
            total_size: layout.total_size,
            owner_pid: std::process::id(),
            init_complete: AtomicU32::new(0),
        };
        // SAFETY: the mapping is at least KIND_HEADER_OFFSET bytes (every layout's total
        // includes the header), page-aligned, and nobody else has opened it yet (the init
        // flag is 0, so readers refuse it).
        unsafe { std::ptr::write(map.as_mut_ptr() as *mut SegmentHeader, hdr) };
        Ok(Segment {
            name: name.to_string(),
            path,
            map,
            owner: true,
        })
    }

    /// Publishes the segment: readers accept it from now on.
    pub fn finish_init(&self) {
        // SYNC POINT W: Release pairs with the Acquire load in `open`; every header and
        // kind-header write above happens-before a reader's checks.
        self.header().init_complete.store(1, Ordering::Release);
    }

    /// Opens an existing segment and checks its header against `expect`.
    ///
    /// Errors: [`ShmError::Io`] (missing file...), [`ShmError::BadMagic`],
    /// [`ShmError::VersionMismatch`], [`ShmError::LayoutMismatch`] (kind, sizes),
    /// [`ShmError::NotInitialized`].
    pub fn open(name: &str, expect: Layout) -> Result<Segment, ShmError> {
        let path = segment_path(name);
        let io_err = |op, err| ShmError::io(name, op, err);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open", e))?;
        let len = file.metadata().map_err(|e| io_err("stat", e))?.len();
        if len < KIND_HEADER_OFFSET as u64 {
            return Err(ShmError::LayoutMismatch {
                name: name.into(),
                field: "file size",
                found: len,
                expected: expect.total_size,
            });
        }
        // SAFETY: see `create`; the file is at least a header long and is never truncated
        // while mapped (only the creator removes it, which keeps existing mappings valid).
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io_err("mmap", e))?;
        let seg = Segment {
            name: name.to_string(),
            path,
            map,
            owner: false,
        };
        let h = seg.header();
        // SYNC POINT R: pairs with the Release store in `finish_init`.
        let init = h.init_complete.load(Ordering::Acquire);
        if h.magic != MAGIC {
            return Err(ShmError::BadMagic {
                name: name.into(),
                found: h.magic,
            });
        }
        if h.version != LAYOUT_VERSION {
            return Err(ShmError::VersionMismatch {
                name: name.into(),
                found: h.version,
                expected: LAYOUT_VERSION,
            });
        }
        let mism = |field, found: u64, expected: u64| {
            if found != expected {
                Err(ShmError::LayoutMismatch {
                    name: name.into(),
                    field,
                    found,
                    expected,
                })
            } else {
                Ok(())
            }
        };
        mism("kind", h.kind as u64, expect.kind as u64)?;
        mism(
            "header size",
            h.header_size as u64,
            std::mem::size_of::<SegmentHeader>() as u64,
        )?;
        mism(
            "kind header size",
            h.kind_header_size as u64,
            expect.kind_header_size as u64,
        )?;
        if expect.slot_size != 0 {
            mism("slot size", h.slot_size, expect.slot_size)?;
        }
        if expect.slot_count != 0 {
            mism("slot count", h.slot_count, expect.slot_count)?;
        }
        if expect.total_size != 0 {
            mism("total size", h.total_size, expect.total_size)?;
        }
        mism("file size", len, h.total_size)?;
        if init != 1 {
            return Err(ShmError::NotInitialized { name: name.into() });
        }
        Ok(seg)
    }

    /// The segment header.
    pub fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is page-aligned and at least 64 bytes (checked in
        // create/open); SegmentHeader is repr(C) with no invalid bit patterns except the
        // atomic, which is valid for any bits.
        unsafe { &*(self.map.as_ptr() as *const SegmentHeader) }
    }

    /// Base address of the mapping (for the kind modules, which cast offsets into it).
    pub fn base(&self) -> *mut u8 {
        self.map.as_ptr() as *mut u8
    }

    /// Element 0 of the array of `T` that follows kind header `H`:
    /// `KIND_HEADER_OFFSET + size_of::<H>()` bytes into the mapping. Whether the array is
    /// there (a checked layout that holds it) is the caller's to know before reading.
    pub fn array_after<H, T>(&self) -> *const T {
        self.base()
            .wrapping_add(KIND_HEADER_OFFSET + std::mem::size_of::<H>())
            .cast::<T>()
    }

    /// Length of the mapping, bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a segment has at least its header.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Segment name (file name under [`SHM_DIR`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this handle created the segment (and removes it on drop).
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Touches every page so no page fault happens on the hot path (prefault).
    pub fn prefault(&self) {
        let base = self.base();
        let mut off = 0;
        while off < self.len() {
            // SAFETY: off < len, so the byte is inside the mapping; a volatile read of a
            // byte that another process may be writing is a plain racy read of u8, whose
            // value we discard.
            unsafe { std::ptr::read_volatile(base.add(off)) };
            off += 4096;
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two).
pub const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// Removes every segment of instance `prefix` whose owner is dead; returns how many.
pub fn reclaim_stale(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return 0;
    };
    let mut n = 0;
    for ent in dir.flatten() {
        let name = ent.file_name().to_string_lossy().to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let path = ent.path();
        if let Some(pid) = read_owner(&path)
            && !pid_alive(pid)
            && std::fs::remove_file(&path).is_ok()
        {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout {
        kind: Kind::Test,
        kind_header_size: 0,
        slot_size: 8,
        slot_count: 4,
        total_size: 4096,
    };

    #[test]
    fn kind_values_are_the_stored_ones() {
        let kinds = [
            Kind::FrameRing,
            Kind::Bitstream,
            Kind::Control,
            Kind::Stats,
            Kind::Test,
        ];
        assert_eq!(kinds.map(|k| k as u32), [1, 2, 3, 4, 99]);
    }

    #[test]
    fn create_open_and_refuse_mismatch() {
        let name = format!("vr-stream-test-seg-{}", std::process::id());
        let seg = Segment::create(&name, LAYOUT).unwrap();
        assert!(matches!(
            Segment::open(&name, LAYOUT),
            Err(ShmError::NotInitialized { .. })
        ));
        seg.finish_init();
        Segment::open(&name, LAYOUT).unwrap();
        let mut other = LAYOUT;
        other.slot_count = 5;
        let e = Segment::open(&name, other).err().unwrap();
        assert!(
            e.to_string().contains(&name) && e.to_string().contains("slot count"),
            "{e}"
        );
        // A different layout version is refused with a clear error.
        // SAFETY: test-only write to our own mapping's version field.
        unsafe { (*(seg.base() as *mut SegmentHeader)).version = LAYOUT_VERSION + 1 };
        let e = Segment::open(&name, LAYOUT).err().unwrap();
        assert!(
            matches!(e, ShmError::VersionMismatch { found, .. } if found == LAYOUT_VERSION + 1),
            "{e}"
        );
        drop(seg);
        assert!(!segment_path(&name).exists());
    }

    #[test]
    fn second_live_owner_is_refused_and_dead_one_reclaimed() {
        let name = format!("vr-stream-test-own-{}", std::process::id());
        let seg = Segment::create(&name, LAYOUT).unwrap();
        // Pretend PID 1 (alive) owns it.
        // SAFETY: test-only write to our own mapping.
        unsafe { (*(seg.base() as *mut SegmentHeader)).owner_pid = 1 };
        assert!(matches!(
            Segment::create(&name, LAYOUT),
            Err(ShmError::InUse { pid: 1, .. })
        ));
        // A dead owner: reclaimed.
        // SAFETY: as above.
        unsafe { (*(seg.base() as *mut SegmentHeader)).owner_pid = i32::MAX as u32 - 1 };
        let again = Segment::create(&name, LAYOUT).unwrap();
        std::mem::forget(seg); // the file now belongs to `again`
        drop(again);
        assert!(!segment_path(&name).exists());
    }
}
