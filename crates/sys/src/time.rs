//! Clock reads (clock_gettime(2)) and absolute sleeps (clock_nanosleep(2)). Every timestamp
//! of the pipeline is CLOCK_MONOTONIC ns; CLOCK_REALTIME (Unix ns) only where a time leaves
//! the machine (RTCP SR NTP time, the viewer page). The types are vr-proto's
//! ([`vr_proto::time`]).

pub use vr_proto::time::{ClockPair, MonotonicNs, UnixNs};

/// `clock` now, ns.
fn now_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC and CLOCK_REALTIME, the only
    // clocks passed, always exist on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC now, ns (the clock of every timestamp in the pipeline).
pub fn monotonic_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC now, typed.
pub fn monotonic() -> MonotonicNs {
    MonotonicNs(monotonic_ns())
}

/// CLOCK_REALTIME now: the wall clock (there is no untyped reading of it, so that it
/// cannot be mistaken for a pipeline timestamp).
pub fn realtime() -> UnixNs {
    UnixNs(now_ns(libc::CLOCK_REALTIME))
}

/// Both clocks, read one right after the other (for [`ClockPair::wall`]).
pub fn clock_pair() -> ClockPair {
    ClockPair {
        mono: monotonic(),
        real: realtime(),
    }
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (clock_nanosleep TIMER_ABSTIME;
/// restarted after signals). Returns at once if it has passed.
pub fn sleep_until_ns(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid absolute time; the remainder pointer may be null with
        // TIMER_ABSTIME.
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if r != libc::EINTR {
            return;
        }
    }
}
