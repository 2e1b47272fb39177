//! A process's and its threads' scheduling, read back from the kernel (the stages check
//! what is in force; `dashboard` shows it).

/// What is in force after `vr_stream::rt::apply`, read back from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtState {
    /// CPUs in the affinity mask.
    pub cpus: Vec<usize>,
    /// Scheduling policy (libc::SCHED_OTHER = 0, SCHED_FIFO = 1, ...).
    pub policy: i32,
    /// Realtime priority (0 for SCHED_OTHER).
    pub priority: i32,
    /// Locked memory, KiB (VmLck in /proc/self/status).
    pub vmlck_kb: u64,
}

/// Reads back the affinity, policy, priority and locked memory of process `pid` (0 = self)
/// from the kernel (sched_getaffinity, sched_getscheduler, sched_getparam, /proc status).
pub fn read_state(pid: i32) -> RtState {
    let mut st = RtState::default();
    // SAFETY: plain syscalls with a valid pid and out-pointers.
    unsafe {
        st.policy = libc::sched_getscheduler(pid);
        let mut p = libc::sched_param { sched_priority: 0 };
        if libc::sched_getparam(pid, &mut p) == 0 {
            st.priority = p.sched_priority;
        }
    }
    if let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(pid)) {
        st.cpus = (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect();
    }
    let path = if pid == 0 {
        "/proc/self/status".to_string()
    } else {
        format!("/proc/{pid}/status")
    };
    if let Ok(s) = std::fs::read_to_string(path) {
        st.vmlck_kb = status_field_kb(&s, "VmLck:").unwrap_or(0);
    }
    st
}

/// What is in force for one thread of a process ([`read_threads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadState {
    /// Thread id (a directory of /proc/PID/task).
    pub tid: i32,
    /// Its name (/proc/PID/task/TID/comm).
    pub name: String,
    /// CPUs it may run on, policy and priority, as [`read_state`] reads them.
    pub state: RtState,
}

/// Reads back every thread of process `pid` (/proc/PID/task/*): affinity, policy and
/// priority per thread, from the kernel (sched_getaffinity / sched_getscheduler /
/// sched_getparam take a thread id). Threads that exit meanwhile are left out.
pub fn read_threads(pid: i32) -> Vec<ThreadState> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    let mut out: Vec<ThreadState> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|tid| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            let mut state = read_state(tid);
            state.vmlck_kb = 0;
            (state.policy >= 0).then(|| ThreadState {
                tid,
                name: name.trim().to_string(),
                state,
            })
        })
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

/// Parses `Key:   123 kB` from /proc/PID/status text.
pub fn status_field_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_and_this_process() {
        assert_eq!(status_field_kb("VmLck:\t  128 kB\n", "VmLck:"), Some(128));
        assert_eq!(status_field_kb("VmRSS:\t  12 kB\n", "VmLck:"), None);
        assert!(!read_state(0).cpus.is_empty());
    }

    #[test]
    fn threads_are_read_back_one_by_one() {
        let me = std::process::id() as i32;
        let (tx, rx) = std::sync::mpsc::channel::<(i32, usize)>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // A thread restricted to the last CPU this process may use.
            let last = *read_state(0).cpus.last().unwrap();
            let mut set = nix::sched::CpuSet::new();
            set.set(last).unwrap();
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
            tx.send((nix::unistd::gettid().as_raw(), last)).unwrap();
            let _ = done_rx.recv();
        });
        let (tid, last) = rx.recv().unwrap();
        let threads = read_threads(me);
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(threads.iter().any(|t| t.tid == me), "{threads:?}");
        let th = threads.iter().find(|t| t.tid == tid).expect("the thread");
        assert_eq!(th.state.cpus, vec![last], "{threads:?}");
        assert_eq!(th.state.policy, libc::SCHED_OTHER);
    }
}
