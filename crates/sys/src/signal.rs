//! SIGINT, SIGTERM and SIGHUP as a request to stop cleanly (sigaction(2)): a flag the
//! program's loop polls, instead of the default of dying at once.

static STOP_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set a flag instead of killing the process (SA_RESTART):
/// the program polls [`stop_signal`] and stops cleanly.
pub fn install_stop_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(s, &act) };
    }
}

/// The number of the last stop signal received, 0 if none.
pub fn stop_signal() -> i32 {
    STOP_SIGNAL.load(std::sync::atomic::Ordering::SeqCst)
}
