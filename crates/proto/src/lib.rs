//! vr-proto: vr-stream's protocol and decision code, with no I/O, no clock reads and no
//! `unsafe` — every time is an argument. RTP packetization of H.264 (RFC 6184, RFC 3550)
//! with abs-capture-time ([`rtp`]), RTCP (RFC 3550, RFC 4585: [`rtcp`]), FEC (Reed-Solomon
//! over a frame's packets: [`fec`]), SDP ([`sdp`]), send pacing ([`pacing`]), the bitrate
//! controller ([`abr`]), the NTP-style clock offset ([`clock`]), the reference receiver's
//! core ([`receiver`]), RFC 4571 framing
//! ([`framing`]), detections with their wire format ([`detection`]), and the sender's
//! decisions for one stream, sans-IO ([`session`]), the typed timestamps of the two
//! clocks ([`time`]), and the raw I420 video format every stage agrees on ([`video`]).
//! Everything here is unit-tested on numbers; the processes, sockets and clocks that drive
//! it are in the `vr-stream` crate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod abr;
pub mod clock;
pub mod detection;
pub mod fec;
pub mod framing;
pub mod pacing;
pub mod receiver;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod time;
pub mod video;
