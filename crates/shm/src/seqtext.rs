//! [`SeqBytes`]: a short byte string in shared memory that one process rewrites while
//! others read it (a stage's error text, the encoder's SPS/PPS, the stream description), as
//! a sequence lock over atomic words: no `unsafe`, and a reader never sees a mix of two
//! writes.
//!
//! The protocol is Linux's seqcount (Documentation/locking/seqlock.rst) in the form that is
//! sound under the C++/Rust memory model (H.-J. Boehm, "Can seqlocks get along with
//! programming language memory models?", MSPC 2012): the writer makes the sequence odd,
//! issues a Release fence, stores the length and the words Relaxed, then stores the next
//! even sequence with Release; a reader loads the sequence with Acquire, retries while it is
//! odd, loads length and words Relaxed, issues an Acquire fence and accepts the copy only if
//! the sequence is unchanged. A writer that died mid-write leaves the sequence odd: the next
//! writer starts from it (`seq | 1`) instead of flipping it to even.
//!
//! Layout (`#[repr(C)]`, all zero = empty): `seq: u32`, `len: u32`, then `WORDS` × u64 holding
//! the bytes little-endian, 8 per word. Capacity `8 × WORDS` bytes; longer input is cut at
//! that length (at a byte, not a character: text readers use lossy UTF-8).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// How many times a reader retries while writes keep overlapping it before giving up
/// (a writer that died mid-write, or one rewriting without pause).
const READ_TRIES: u32 = 10_000;

/// A byte string of at most `8 × WORDS` bytes with one writer at a time and any number of
/// readers, possibly in other processes (see the module doc).
#[repr(C)]
pub struct SeqBytes<const WORDS: usize> {
    seq: AtomicU32,
    len: AtomicU32,
    words: [AtomicU64; WORDS],
}

impl<const WORDS: usize> SeqBytes<WORDS> {
    /// Capacity, bytes.
    pub const CAPACITY: usize = 8 * WORDS;

    /// Replaces the content with `b` (cut at [`Self::CAPACITY`]). One writer at a time: the
    /// callers own their field (a stage its error, the encoder the headers).
    pub fn write(&self, b: &[u8]) {
        let b = &b[..b.len().min(Self::CAPACITY)];
        let s = self.seq.load(Ordering::Relaxed) | 1;
        self.seq.store(s, Ordering::Relaxed);
        fence(Ordering::Release);
        self.len.store(b.len() as u32, Ordering::Relaxed);
        for (w, chunk) in self.words.iter().zip(b.chunks(8)) {
            let mut le = [0u8; 8];
            le[..chunk.len()].copy_from_slice(chunk);
            w.store(u64::from_le_bytes(le), Ordering::Relaxed);
        }
        self.seq.store(s.wrapping_add(1), Ordering::Release);
    }

    /// Empties it.
    pub fn clear(&self) {
        self.write(&[]);
    }

    /// A consistent copy of the content (empty when never written), or `None` when writes
    /// kept overlapping every one of its 10,000 attempts (`READ_TRIES`).
    pub fn read(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..READ_TRIES {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let n = (self.len.load(Ordering::Relaxed) as usize).min(Self::CAPACITY);
            out.clear();
            for w in &self.words[..n.div_ceil(8)] {
                out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            out.truncate(n);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return Some(out);
            }
        }
        None
    }

    /// [`Self::read`] as text (lossy UTF-8); empty when unreadable.
    pub fn read_text(&self) -> String {
        String::from_utf8_lossy(&self.read().unwrap_or_default()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed<const W: usize>() -> SeqBytes<W> {
        SeqBytes {
            seq: AtomicU32::new(0),
            len: AtomicU32::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    #[test]
    fn writes_read_back_whole_and_are_cut_at_capacity() {
        let t = zeroed::<2>();
        assert_eq!(t.read().unwrap(), b"");
        t.write(b"hello");
        assert_eq!(t.read().unwrap(), b"hello");
        t.write(b"0123456789abcdefXYZ");
        assert_eq!(t.read().unwrap(), b"0123456789abcdef");
        t.write(b"ab");
        assert_eq!(t.read_text(), "ab");
        t.clear();
        assert_eq!(t.read().unwrap(), b"");
    }

    #[test]
    fn a_writer_that_died_mid_write_does_not_make_a_torn_copy_look_stable() {
        let t = zeroed::<2>();
        t.write(b"old");
        t.seq
            .store(t.seq.load(Ordering::Relaxed) | 1, Ordering::Relaxed); // died here
        assert_eq!(t.read(), None, "odd sequence: never accepted");
        t.write(b"new");
        assert_eq!(t.read().unwrap(), b"new");
    }

    #[test]
    fn a_reader_racing_a_writer_sees_only_whole_writes() {
        let t = std::sync::Arc::new(zeroed::<8>());
        let (a, b) = ([b'a'; 61], [b'b'; 23]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    t.write(if i.is_multiple_of(2) { &a } else { &b });
                    i += 1;
                    // A short pause, as real writers have: a writer that never pauses
                    // starves the readers (seen under qemu-user: 26 reads in 20 s).
                    std::thread::yield_now();
                }
                i
            })
        };
        // Until both values were read 1,000 times (the writer thread may start late on a
        // busy machine), with a deadline.
        let mut seen = [0u32; 2];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while seen.iter().any(|&n| n < 1_000) && std::time::Instant::now() < deadline {
            if let Some(v) = t.read() {
                if v == a {
                    seen[0] += 1;
                } else if v == b {
                    seen[1] += 1;
                } else {
                    assert!(v.is_empty(), "torn read: {} bytes {:?}", v.len(), v);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().unwrap();
        assert!(
            seen.iter().all(|&n| n >= 1_000),
            "{writes} writes, {seen:?}"
        );
    }
}
