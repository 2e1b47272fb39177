//! The per-frame latency records of a run: the stages publish one [`FrameRecord`] per frame
//! into a ring of [`RECORDS`] in the stats segment; the supervisor reads them into the
//! run's statistics, the window of the periodic report and the `--latency-log` CSV.

use crate::config::Config;
use crate::latency::{FrameRecord, LatencyStats};
use crate::shm::control::{Control, RECORDS};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};

/// The records read so far.
pub(super) struct Records {
    /// Every record of the run.
    pub all: LatencyStats,
    /// The records since the last periodic report.
    pub window: LatencyStats,
    /// Index of the next record to read.
    next: u64,
    /// Records overwritten in the ring before they were read.
    pub lost: u64,
    /// `stats.latency_log`: the CSV, and its path for messages.
    csv: Option<(BufWriter<File>, String)>,
}

impl Records {
    /// Nothing read yet; creates the CSV log (with its header line) when
    /// `stats.latency_log` names one.
    ///
    /// Errors: the log cannot be created or written.
    pub fn open(cfg: &Config) -> Result<Records> {
        let path = &cfg.stats.latency_log;
        let csv = if path.is_empty() {
            None
        } else {
            let f = File::create(path)
                .with_context(|| format!("--latency-log {path}: cannot create"))?;
            let mut w = BufWriter::new(f);
            writeln!(w, "{}", FrameRecord::CSV_HEADER)?;
            Some((w, path.clone()))
        };
        Ok(Records {
            all: LatencyStats::new(),
            window: LatencyStats::new(),
            next: 0,
            lost: 0,
            csv,
        })
    }

    /// Reads every record written since the last call. Records the stages overwrote before
    /// they were read are counted in `lost`.
    pub fn drain(&mut self, ctl: &Control) {
        let written = ctl.stats().records_written();
        if written - self.next > RECORDS as u64 {
            self.lost += written - self.next - RECORDS as u64;
            self.next = written - RECORDS as u64;
        }
        while self.next < written {
            if let Some(r) = ctl.stats().record_at(self.next) {
                self.all.add(&r);
                self.window.add(&r);
                if let Some((w, _)) = self.csv.as_mut() {
                    let _ = writeln!(w, "{}", r.csv_line());
                }
            }
            self.next += 1;
        }
    }

    /// Flushes the CSV log. Errors: it cannot be written.
    pub fn finish(&mut self) -> Result<()> {
        if let Some((w, path)) = self.csv.as_mut() {
            w.flush().with_context(|| format!("--latency-log {path}"))?;
        }
        Ok(())
    }
}
