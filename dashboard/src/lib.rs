//! `dashboard`: a live terminal view of a running vr-stream instance, for a second
//! terminal: per-core CPU, the stages (PID, CPU %, RSS, affinity, policy, fps, drops,
//! heartbeat), latency per stage and in total (p50/p99 over a sliding window, sparkline),
//! network counters and rates, temperature and Raspberry Pi throttling.
//!
//! [`model`] collects a [`model::Snapshot`] per tick from the stats segment
//! (`vr_shm::stats`, read without blocking any writer), /proc and /sys; [`ui`]
//! draws it; [`sys`] reads the system files.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod model;
pub mod sys;
pub mod ui;

/// Renders a snapshot into a plain-text block of `width` x `height` (for `--once` without
/// `--json`, and tests).
pub fn render_text(snap: &model::Snapshot, view: &ui::View, width: u16, height: u16) -> String {
    let area = ratatui::layout::Rect::new(0, 0, width, height);
    let mut buf = ratatui::buffer::Buffer::empty(area);
    ui::draw(area, &mut buf, snap, view);
    let mut out = String::new();
    for y in 0..height {
        let line: String = (0..width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
