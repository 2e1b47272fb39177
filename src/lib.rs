//! vr-stream: a low-latency camera → H.264 → RTP sender for the Raspberry Pi 5.
//!
//! Each stage (camera, encode, network) runs as its own process, pinned to a CPU under
//! SCHED_FIFO with locked memory, and the stages pass frames through lock-free
//! shared-memory rings ([`shm`]). Pure protocol code ([`rtp`], [`rtcp`], [`sdp`], [`config`],
//! [`latency`]) does no I/O and reads no clock; `unsafe` lives in [`shm`], [`rt`],
//! [`encode`] (x264 FFI) and [`net`] (sendmmsg).
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod abr;
pub mod cli;
pub mod clock;
pub mod config;
pub mod detect;
pub mod encode;
pub mod fec;
pub mod fuzzing;
pub mod impair;
pub mod latency;
pub mod net;
pub mod pacing;
pub mod quickbench;
pub mod receiver;
pub mod rt;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod shm;
pub mod source;
pub mod stage;
pub mod supervisor;
pub mod web;
