//! vr-sys: what every vr-stream program reads from the operating system, with no media
//! code: the clocks ([`time`]), a process's scheduling read back from the kernel
//! ([`proc`]), routes and interfaces ([`net`]), stop signals as a flag ([`signal`]), and
//! the command-line error convention ([`cli`]). `vr-stream`, `dashboard` and `vr-shm` share it, so that the dashboard links
//! none of the encoder, detector or WebRTC code.
#![warn(missing_docs)]

pub mod cli;
pub mod net;
pub mod proc;
pub mod signal;
pub mod time;
