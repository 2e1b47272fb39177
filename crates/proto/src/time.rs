//! Typed timestamps, so that the two clocks of the pipeline cannot be mixed up: every
//! timestamp inside the pipeline is CLOCK_MONOTONIC ns ([`MonotonicNs`]; in the
//! shared-memory layouts a bare `u64` of that clock), and CLOCK_REALTIME ns since the Unix
//! epoch ([`UnixNs`]) appears only where a time leaves the machine: RTCP SR and clock-probe
//! NTP times, the abs-capture-time extension, the viewer page. (clock_gettime(2); the
//! readings are taken in `vr_sys::time`, never here.)

use std::time::Duration;

/// A CLOCK_MONOTONIC reading, ns since an unspecified point (boot, on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonotonicNs(pub u64);

/// A CLOCK_REALTIME reading, ns since 1970-01-01 00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixNs(pub u64);

impl MonotonicNs {
    /// The time from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: MonotonicNs) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl UnixNs {
    /// As a 64-bit NTP timestamp: Q32.32 seconds since 1900-01-01 (RFC 5905 §6, as RTCP SR
    /// uses it: RFC 3550 §4).
    pub fn to_ntp(self) -> u64 {
        crate::rtp::ntp_from_unix_ns(self.0)
    }

    /// Milliseconds since the epoch, as JavaScript's `Date.now()` counts (the viewer page).
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

/// A pair of readings of both clocks taken together: what converts one into the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPair {
    /// CLOCK_MONOTONIC now.
    pub mono: MonotonicNs,
    /// CLOCK_REALTIME now.
    pub real: UnixNs,
}

impl ClockPair {
    /// The wall-clock time of the monotonic instant `at`: its age subtracted from the wall
    /// clock. Instants after the pair was read count as now.
    pub fn wall(self, at: MonotonicNs) -> UnixNs {
        UnixNs(self.real.0.saturating_sub(self.mono.0.saturating_sub(at.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_monotonic_instant_on_the_wall_clock() {
        let now = ClockPair {
            mono: MonotonicNs(5_000),
            real: UnixNs(1_700_000_000_000_000_000),
        };
        // 1 µs old.
        assert_eq!(now.wall(MonotonicNs(4_000)).0, 1_699_999_999_999_999_000);
        // From the future: now.
        assert_eq!(now.wall(MonotonicNs(9_000)), now.real);
        assert_eq!(
            MonotonicNs(10).saturating_since(MonotonicNs(4)),
            Duration::from_nanos(6)
        );
        assert_eq!(
            MonotonicNs(4).saturating_since(MonotonicNs(10)),
            Duration::ZERO
        );
        // 1970-01-01 is NTP second 2,208,988,800.
        assert_eq!(UnixNs(0).to_ntp() >> 32, 2_208_988_800);
        assert_eq!(UnixNs(1_500_000).as_millis_f64(), 1.5);
    }
}
