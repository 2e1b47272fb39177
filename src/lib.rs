//! vr-stream: a low-latency camera → H.264 → RTP sender for the Raspberry Pi 5.
//!
//! Each stage (camera, encode, network) runs as its own process, pinned to a CPU under
//! SCHED_FIFO with locked memory, and the stages pass frames through lock-free
//! shared-memory rings ([`shm`], the `vr-shm` crate; OS helpers in `vr-sys`). Pure protocol code ([`rtp`], [`rtcp`], [`sdp`], [`config`],
//! [`latency`]) does no I/O and reads no clock; `unsafe` lives in [`shm`], [`rt`],
//! [`encode`] (x264 FFI) and [`net`] (sendmmsg).
#![warn(missing_docs)]

pub mod config;
pub mod detect;
pub mod encode;
pub mod net;
pub mod quickbench;
pub mod rt;
pub mod source;
pub mod stage;
pub mod supervisor;
pub mod web;

pub use vr_proto::{abr, clock, fec, pacing, receiver, rtcp, rtp, sdp};

/// The shared-memory segments (the `vr-shm` crate, which `dashboard` uses on its own).
pub use vr_shm as shm;
/// Per-frame latency records and percentiles (`vr-shm`).
pub use vr_shm::latency;
/// Command-line parsing shared by the programs (`vr-sys`).
pub use vr_sys::cli;
