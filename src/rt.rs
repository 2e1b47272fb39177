//! Realtime helpers for a stage process: clock, CPU pinning, SCHED_FIFO, mlockall,
//! prefaulting, and reading back what is actually in force.
//!
//! Missing privileges are not fatal unless asked: [`apply`] returns what it could not do
//! (as [`RtShortfall`]s naming the limit and the `setup` fix), and the caller either warns
//! once or, with `--strict-rt`, refuses to start.

use std::time::Duration;

pub use vr_sys::proc::{RtState, ThreadState, read_state, read_threads, status_field_kb};
pub use vr_sys::signal::{install_stop_signals, stop_signal};
pub use vr_sys::time::{
    ClockPair, MonotonicNs, UnixNs, clock_pair, monotonic, monotonic_ns, realtime, sleep_until_ns,
};

/// Maps a configured CPU onto the CPUs present (`cpu % count`). Returns the CPU to use
/// and whether it differs from the configured one.
pub fn map_cpu(cpu: u32) -> (usize, bool) {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    // available_parallelism honours our own affinity mask; count online CPUs instead.
    let online = online_cpus().unwrap_or(n).max(1);
    let c = cpu as usize % online;
    (c, c != cpu as usize)
}

/// Maps a configured CPU set onto the CPUs present ([`map_cpu`] for each, duplicates
/// merged): on a 2-CPU machine `2-3` becomes `0-1` and `1-3` becomes `0-1`. Returns the
/// sorted set and whether it differs from the configured one.
pub fn map_cpus(cpus: &[u32]) -> (Vec<usize>, bool) {
    let mut out: Vec<usize> = cpus.iter().map(|&c| map_cpu(c).0).collect();
    out.sort_unstable();
    out.dedup();
    let mut want: Vec<usize> = cpus.iter().map(|&c| c as usize).collect();
    want.sort_unstable();
    want.dedup();
    let changed = out != want;
    (out, changed)
}

/// Formats a CPU set as a kernel CPU list (`0-1,3`), as in `Cpus_allowed_list`.
pub fn cpu_list_text(cpus: &[usize]) -> String {
    let mut out: Vec<String> = vec![];
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j == i {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

fn online_cpus() -> Option<usize> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (n > 0).then_some(n as usize)
}

/// Smallest RLIMIT_MEMLOCK (bytes) with which a stage locks its memory: x264 and the ring
/// mappings need tens of MiB; below this, locking is skipped rather than risking failed
/// allocations under MCL_FUTURE.
pub const MIN_MEMLOCK: u64 = 256 << 20;

/// What a stage asks for.
/// Nice value of a stage configured with priority 0 (SCHED_OTHER).
pub const BACKGROUND_NICE: i32 = 10;

/// What [`apply`] is asked to do for a stage process.
#[derive(Debug, Clone)]
pub struct RtRequest {
    /// CPUs the thread (and the threads it creates later, such as x264's slice threads) may
    /// run on: one CPU pins it; already mapped with [`map_cpu`] / [`map_cpus`].
    pub cpus: Vec<usize>,
    /// SCHED_FIFO priority, 1..=99; 0 = SCHED_OTHER at nice [`BACKGROUND_NICE`] (a stage
    /// that computes flat out, like the detector, must not be SCHED_FIFO on a CPU it shares:
    /// it would starve SCHED_OTHER work and trip the kernel's RT throttling
    /// (sched_rt_runtime_us), which then stalls every FIFO stage on that CPU).
    pub priority: u8,
    /// Call mlockall(MCL_CURRENT | MCL_FUTURE).
    pub mlock: bool,
}

/// One thing [`apply`] could not do, with the limit involved and how `setup` fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtShortfall(pub String);

/// The shortfalls as one message ("…; …"), `None` when there are none.
pub fn describe(short: &[RtShortfall]) -> Option<String> {
    (!short.is_empty()).then(|| {
        short
            .iter()
            .map(|s| s.0.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Reads a resource limit: (soft, hard); `u64::MAX` for unlimited.
pub fn rlimit(resource: nix::sys::resource::Resource) -> (u64, u64) {
    nix::sys::resource::getrlimit(resource).unwrap_or((0, 0))
}

/// Describes what would stop SCHED_FIFO / mlockall before trying (used by the supervisor
/// to warn once): an empty list means the limits allow both.
pub fn check_limits(req_priority: u8, mlock: bool) -> Vec<RtShortfall> {
    use nix::sys::resource::Resource;
    let mut out = vec![];
    let root = nix::unistd::geteuid().is_root();
    let (rt_soft, _) = rlimit(Resource::RLIMIT_RTPRIO);
    if !root && rt_soft < req_priority as u64 {
        out.push(RtShortfall(format!(
            "RLIMIT_RTPRIO is {rt_soft}, SCHED_FIFO priority {req_priority} needs at least that: stages run SCHED_OTHER \
             (fix: `sudo setup --apply` installs rtprio 99 in /etc/security/limits.d, then log in again; or run as root)"
        )));
    }
    if mlock {
        let (ml_soft, _) = rlimit(Resource::RLIMIT_MEMLOCK);
        if !root && ml_soft != u64::MAX && ml_soft < MIN_MEMLOCK {
            out.push(RtShortfall(format!(
                "RLIMIT_MEMLOCK is {} KiB, too small to lock a stage's memory: page faults may stall stages \
                 (fix: `sudo setup --apply` installs memlock unlimited in /etc/security/limits.d; or run as root)",
                ml_soft / 1024
            )));
        }
    }
    out
}

/// Restricts the calling thread (and threads it creates later) to `req.cpus`, sets
/// SCHED_FIFO at `req.priority`, and locks memory. Threads created afterwards inherit the
/// CPU set and the policy (sched_setaffinity(2), sched_setscheduler(2) act on the calling
/// thread; clone(2) copies both). Returns what could not be done.
pub fn apply(req: &RtRequest) -> Vec<RtShortfall> {
    let mut out = vec![];
    let mut set = nix::sched::CpuSet::new();
    for &c in &req.cpus {
        let _ = set.set(c);
    }
    if req.cpus.is_empty()
        || nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_err()
    {
        out.push(RtShortfall(format!(
            "cannot pin to CPUs {} (sched_setaffinity failed)",
            cpu_list_text(&req.cpus)
        )));
    }
    let param = libc::sched_param {
        sched_priority: req.priority as i32,
    };
    let policy = if req.priority == 0 {
        libc::SCHED_OTHER
    } else {
        libc::SCHED_FIFO
    };
    // SAFETY: `param` is a valid sched_param; pid 0 = the calling thread.
    let r = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if req.priority == 0 {
        // SAFETY: setpriority has no memory-safety preconditions; 0 = this process.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
    } else if r != 0 {
        let e = std::io::Error::last_os_error();
        out.push(RtShortfall(format!(
            "cannot set SCHED_FIFO priority {}: {e} (RLIMIT_RTPRIO / CAP_SYS_NICE; fix: `sudo setup --apply`)",
            req.priority
        )));
    }
    let (ml_soft, _) = rlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK);
    let root = nix::unistd::geteuid().is_root();
    if req.mlock && !root && ml_soft != u64::MAX && ml_soft < MIN_MEMLOCK {
        // With MCL_FUTURE a small limit would make later allocations fail (x264's
        // buffers): do not lock at all.
        out.push(RtShortfall(format!(
            "not locking memory: RLIMIT_MEMLOCK is {} KiB (fix: `sudo setup --apply` sets memlock unlimited)",
            ml_soft / 1024
        )));
    } else if req.mlock {
        // No transparent huge pages for a realtime stage (prctl(2) PR_SET_THP_DISABLE).
        // x264 madvise(MADV_HUGEPAGE)s its large buffers, but mlockall(MCL_FUTURE) has
        // already faulted them in as small pages, so khugepaged collapses them later, while
        // we stream: it takes the process's mmap_lock and copies 2 MiB at a time, and on a
        // kernel without full preemption it runs on the stage's CPU without yielding (seen
        // here: khugepaged 31 ms on CPU 1, the camera, encode and network stages all late
        // by 26-30 ms, frames dropped). Best effort: an old kernel without it loses nothing.
        let _ = nix::sys::prctl::set_thp_disable(true);
        // SAFETY: mlockall has no memory-safety preconditions.
        let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            out.push(RtShortfall(format!(
                "mlockall failed: {e} (RLIMIT_MEMLOCK; fix: `sudo setup --apply` sets memlock unlimited)"
            )));
        }
    }
    prefault_stack();
    out
}

/// Sets up a process that must stay out of the realtime stages' way (the web stage):
/// SCHED_OTHER at `nice`, allowed on `cpus` (those present on this machine; none present =
/// any CPU), and no memory locking. Returns what could not be done.
pub fn apply_background(cpus: &[usize], nice: i32) -> Vec<RtShortfall> {
    let mut out = vec![];
    let online = online_cpus().unwrap_or(1);
    let present: Vec<usize> = cpus.iter().copied().filter(|&c| c < online).collect();
    if !present.is_empty() {
        let mut set = nix::sched::CpuSet::new();
        for &c in &present {
            let _ = set.set(c);
        }
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
            out.push(RtShortfall(format!(
                "cannot restrict to CPUs {present:?}: {e}"
            )));
        }
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param; pid 0 = the calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
    // SAFETY: setpriority has no memory-safety preconditions; 0 = this process.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        out.push(RtShortfall(format!(
            "cannot set nice {nice}: {}",
            std::io::Error::last_os_error()
        )));
    }
    out
}

/// Touches 512 KiB of stack so that later calls do not page-fault on it.
#[inline(never)]
pub fn prefault_stack() {
    let mut buf = [0u8; 512 * 1024];
    // A volatile write per page keeps the compiler from eliding the buffer.
    for i in (0..buf.len()).step_by(4096) {
        // SAFETY: i < buf.len(): an in-bounds write to our own stack array.
        unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(i), 1) };
    }
    std::hint::black_box(&buf);
}

/// Sleeps `d` (for slow-path loops: supervisor polling, startup).
pub fn sleep(d: Duration) {
    std::thread::sleep(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_and_readback() {
        let a = monotonic_ns();
        sleep_until_ns(a + 1_000_000);
        assert!(monotonic_ns() >= a + 1_000_000);
        let st = read_state(0);
        assert!(!st.cpus.is_empty());
        assert_eq!(status_field_kb("VmLck:\t  128 kB\n", "VmLck:"), Some(128));
        let (c, _) = map_cpu(1000);
        assert!(c < 1000);
        assert_eq!(cpu_list_text(&[0, 1, 3, 5, 6, 7]), "0-1,3,5-7");
        assert_eq!(cpu_list_text(&[2]), "2");
    }
}
