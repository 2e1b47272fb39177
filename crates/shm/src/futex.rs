//! Cross-process futex wait/wake on a 32-bit word in shared memory (futex(2)).
//!
//! The word lives in a `MAP_SHARED` mapping, so the non-private operations are used (the
//! kernel keys the waiters by the physical page, not the address in one process).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Blocks while `*word == expected`, for at most `timeout`.
///
/// Returns when woken, when the word differs from `expected` (EAGAIN), on a signal (EINTR)
/// or at the timeout: callers re-check their condition in a loop.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned 32-bit atomic that outlives the call; FUTEX_WAIT
    // only reads it; `ts` is a valid relative timeout on our stack.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every waiter on `word`.
pub fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid aligned 32-bit atomic; FUTEX_WAKE does not access memory
    // beyond looking up waiters keyed by its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        );
    }
}

/// The wake-up words of a shared-memory queue's header (12 bytes, `repr(C)`: an event
/// counter, a waiter count and the end-of-stream flag): the producer calls
/// [`Doorbell::notify`] after publishing, consumers [`Doorbell::wait_until`] with their
/// readiness condition. A zeroed mapping is a valid, quiet doorbell.
///
/// Protocol (Dekker-style, all SeqCst): the producer publishes its data, increments `seq`,
/// then reads `waiters` and wakes only if someone waits. A consumer reads `seq`, checks its
/// condition, increments `waiters`, then sleeps only while `seq` is unchanged. Either the
/// producer sees the waiter, or the kernel sees the new `seq` and does not sleep: no lost
/// wake-up, and no syscall on the producer side when nobody waits.
#[repr(C)]
pub struct Doorbell {
    seq: AtomicU32,
    waiters: AtomicU32,
    eos: AtomicU32,
}

impl Doorbell {
    /// Wakes the waiting consumers, if any (after a publication, or at shutdown).
    pub fn notify(&self) {
        // SYNC POINT W: SeqCst pairs with the consumer's SeqCst `waiters` increment in
        // `wait_until` (see the protocol above).
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            wake_all(&self.seq);
        }
    }

    /// Marks the end of the stream (one way) and [`Doorbell::notify`]s, so that a waiter
    /// sees it: the end is a readiness condition of its own.
    pub fn set_eos(&self) {
        self.eos.store(1, Ordering::SeqCst);
        self.notify();
    }

    /// Whether [`Doorbell::set_eos`] was called (Acquire).
    pub fn is_eos(&self) -> bool {
        self.eos.load(Ordering::Acquire) != 0
    }

    /// Waits until `ready()` is true (the consumer's side of the protocol above): spins for
    /// `spin` first (polling), then sleeps on the futex. Inside the window `window()`
    /// returns (absolute CLOCK_MONOTONIC ns, `[from, until)`: when the next message is
    /// expected; asked again after every wake-up) it spins instead of sleeping, and before
    /// the window it sleeps only until the window opens; this trades a bounded amount of
    /// CPU per message for a hand-off without a wake-up. Gives up at `deadline` and returns
    /// `ready()`'s last value.
    pub fn wait_until(
        &self,
        spin: Duration,
        window: impl FnMut() -> Option<(u64, u64)>,
        deadline: Instant,
        ready: impl FnMut() -> bool,
    ) -> bool {
        wait_until(&self.seq, &self.waiters, spin, window, deadline, ready)
    }
}

/// [`Doorbell::wait_until`] on the words `seq` and `waiters`.
fn wait_until(
    seq: &AtomicU32,
    waiters: &AtomicU32,
    spin: Duration,
    mut window: impl FnMut() -> Option<(u64, u64)>,
    deadline: Instant,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let start = Instant::now();
    loop {
        // SYNC POINT R: read the event counter before testing the condition, so a
        // publication after the test changes it and FUTEX_WAIT returns at once.
        let s = seq.load(Ordering::SeqCst);
        if ready() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        if now.duration_since(start) < spin {
            std::hint::spin_loop();
            continue;
        }
        let mut sleep = (deadline - now).min(Duration::from_millis(100));
        if let Some((from, until)) = window() {
            let mono = vr_sys::time::monotonic_ns();
            if mono >= from && mono < until {
                std::hint::spin_loop();
                continue;
            }
            if mono < from {
                sleep = sleep.min(Duration::from_nanos(from - mono));
            }
        }
        waiters.fetch_add(1, Ordering::SeqCst);
        wait(seq, s, sleep);
        waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
