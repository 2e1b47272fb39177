//! vr-testkit: what the tests need and no shipped program links.
//! - [`impair`]: a network impairment model (sans-IO, seeded): loss with bursts, delay,
//!   jitter, reordering, a rate limit. The `vr-relay` binary of this crate puts it between
//!   vr-stream and a receiver (the kernels these tests run on lack `tc netem`), and
//!   vr-proto's receiver tests run simulated links through it.
//! - [`fuzzing`]: the fuzz targets' entry points (`fuzz/`, cargo-fuzz), which
//!   `tests/fuzz_corpus.rs` replays on stable.
//!
//! The network-namespace helpers of the integration tests are in `tests/common`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod fuzzing;
pub mod impair;
