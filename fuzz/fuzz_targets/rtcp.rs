//! Fuzz target: vr_testkit::fuzzing::rtcp (see there for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vr_testkit::fuzzing::rtcp(data));
