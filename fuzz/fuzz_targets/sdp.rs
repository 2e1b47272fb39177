//! Fuzz target: vr_stream::fuzzing::sdp (see there for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vr_stream::fuzzing::sdp(data));
