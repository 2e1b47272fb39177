//! Text and blobs in the shared segments that one process rewrites while another reads them
//! (crates/shm/src/seqtext.rs), across two real processes: a child (this test binary run again as
//! `writer_process`) rewrites the SPS/PPS blob, a stage's retry reason and the stream
//! description as fast as it can, alternating between two contents of different lengths
//! and bytes, while this process reads them; every copy read must be one of the two whole
//! values. (Before the sequence lock, a reader copied the bytes behind a length while the
//! writer rewrote them: mixed copies, e.g. a restarted encoder's SPS/PPS half old.)

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};
use vr_stream::shm::control::{Control, Stage, StreamInfo};

const ENV: &str = "VRS_SEQLOCK_WRITER";
const WRITE_FOR: Duration = Duration::from_secs(3);

fn values() -> ([Vec<u8>; 2], [String; 2], [String; 2]) {
    (
        [vec![0xAA; 700], vec![0x55; 37]],
        ["a".repeat(500), "b".repeat(9)],
        ["x".repeat(60), "y".repeat(5)],
    )
}

fn info(destination: &str) -> StreamInfo {
    StreamInfo {
        destination: destination.into(),
        width: 64,
        height: 48,
        fps: 30,
        bitrate_kbps: 1000,
        profile: String::new(),
        target_ms: 20,
        supervisor_pid: std::process::id(),
        started_ns: 0,
    }
}

/// The writer; does nothing unless started by the test below.
#[test]
fn writer_process() {
    let Ok(name) = std::env::var(ENV) else {
        return;
    };
    let c = Control::open(&name, &format!("{name}-stats")).unwrap();
    let (blobs, texts, dests) = values();
    let t0 = Instant::now();
    let mut i = 0usize;
    while t0.elapsed() < WRITE_FOR {
        c.set_headers(&blobs[i % 2]);
        c.stage(Stage::Encode).retrying(&texts[i % 2]);
        c.stats().set_info(&info(&dests[i % 2]));
        i += 1;
    }
    eprintln!("writer: {i} rounds");
}

#[test]
fn a_reader_in_another_process_never_sees_a_torn_blob_or_text() {
    let name = instance("seqlock");
    let c = Control::create(&name, &format!("{name}-stats")).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["writer_process", "--exact", "--nocapture"])
        .env(ENV, &name)
        .spawn()
        .unwrap();
    let (blobs, texts, dests) = values();
    let (mut whole, mut torn) = ([0u64; 3], vec![]);
    let deadline = Instant::now() + WRITE_FOR * 10;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the writer did not finish");
        if let Some(h) = c.headers() {
            if blobs.contains(&h) {
                whole[0] += 1;
            } else {
                torn.push(format!("headers of {} bytes", h.len()));
            }
        }
        if let Some(e) = c.stage(Stage::Encode).error() {
            if texts.contains(&e) {
                whole[1] += 1;
            } else {
                torn.push(format!("error text of {} bytes", e.len()));
            }
        }
        let d = c.stats().info().destination;
        if dests.contains(&d) {
            whole[2] += 1;
        } else if !d.is_empty() {
            torn.push(format!("destination of {} bytes", d.len()));
        }
    }
    assert!(child.wait().unwrap().success());
    eprintln!("whole copies read: {whole:?}");
    assert!(
        torn.is_empty(),
        "{} torn copies, e.g. {:?}",
        torn.len(),
        &torn[..torn.len().min(5)]
    );
    assert!(
        whole.iter().all(|&n| n > 100),
        "too few reads overlapped the writer: {whole:?}"
    );
}
