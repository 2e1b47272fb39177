//! What the supervisor does when a stage process dies: restart it after a backoff that
//! doubles up to [`MAX_BACKOFF`], give up after `supervise.max_restarts` restarts in a
//! row (or at once when the stage says retrying cannot help), and reset the count once a
//! stage has run [`HEALTHY_AFTER`] without dying. An optional stage (detect, web) that is
//! given up on is abandoned and the video goes on; a required one ends the stream.
//!
//! Pure: the supervisor passes in the time (`Instant`s it read) and acts on the
//! [`Decision`]; the process handling and the messages are its own.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// A stage that ran this long without dying resets its restart count and backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// Longest restart backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long a stage must still look hung, on a later look of the supervisor, before it is
/// killed ([`HangWatch`]).
pub const HANG_CONFIRM: Duration = Duration::from_millis(100);

/// Watches one stage's heartbeat for a hang: alive, but no beat for the timeout.
///
/// A silence is acted on only when a later look, at least [`HANG_CONFIRM`] after the
/// first that saw it, still sees it. A machine-wide stall (a paused VM, an SD card holding
/// every process in I/O) stops the stages and the supervisor alike, and the first look
/// after it sees every heartbeat old; the confirming look comes after the stages had
/// time to run again. A stage that really hangs (or spins, and starves the supervisor to
/// one look a second) is killed one look later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HangWatch {
    /// When a look first saw the current silence (CLOCK_MONOTONIC ns).
    seen_ns: Option<u64>,
}

impl HangWatch {
    /// A look at `now_ns`: the stage's last heartbeat was at `beat_ns` (0: none yet, not
    /// hung). Returns whether to kill it.
    pub fn look(&mut self, beat_ns: u64, now_ns: u64, timeout: Duration) -> bool {
        let silent = beat_ns > 0 && now_ns.saturating_sub(beat_ns) > timeout.as_nanos() as u64;
        if !silent {
            self.seen_ns = None;
            return false;
        }
        let seen = *self.seen_ns.get_or_insert(now_ns);
        now_ns - seen >= HANG_CONFIRM.as_nanos() as u64
    }
}

/// The `[supervise]` settings the policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Backoff before the first restart (then doubled each time, up to [`MAX_BACKOFF`]).
    pub first_backoff: Duration,
    /// Restarts in a row after which the stage is given up on.
    pub max_restarts: u32,
}

/// What to do about a stage that died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again at `at` (after `delay`); this is restart `nth` in a row.
    Restart {
        /// When.
        at: Instant,
        /// The backoff before it.
        delay: Duration,
        /// 1 for the first restart in a row.
        nth: u32,
    },
    /// An optional stage given up on: stream on without it.
    Abandon,
    /// A required stage given up on: end the stream. `times` is how often it failed in a
    /// row (1: once, with a failure retrying cannot help).
    GiveUp {
        /// Failures in a row.
        times: u32,
    },
}

/// The restart state of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restarts {
    policy: Policy,
    optional: bool,
    backoff: Duration,
    in_a_row: u32,
    started: Instant,
}

impl Restarts {
    /// A stage (`optional`: detect or web) whose process was started at `started`.
    pub fn new(policy: Policy, optional: bool, started: Instant) -> Restarts {
        Restarts {
            policy,
            optional,
            backoff: policy.first_backoff,
            in_a_row: 0,
            started,
        }
    }

    /// Restarts in a row so far.
    pub fn in_a_row(&self) -> u32 {
        self.in_a_row
    }

    /// The stage's process ended uncleanly at `now`; `permanent`: its own report says a
    /// retry cannot help (a device that does not exist, a bad setting).
    pub fn on_failure(&mut self, now: Instant, permanent: bool) -> Decision {
        if now.saturating_duration_since(self.started) >= HEALTHY_AFTER {
            self.in_a_row = 0;
            self.backoff = self.policy.first_backoff;
        }
        if permanent || self.in_a_row >= self.policy.max_restarts {
            return if self.optional {
                Decision::Abandon
            } else {
                Decision::GiveUp {
                    times: self.in_a_row + 1,
                }
            };
        }
        self.in_a_row += 1;
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Decision::Restart {
            at: now + delay,
            delay,
            nth: self.in_a_row,
        }
    }

    /// The stage's new process was started at `now`.
    pub fn on_restarted(&mut self, now: Instant) {
        self.started = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        first_backoff: Duration::from_millis(200),
        max_restarts: 5,
    };
    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Kills the stage `n` times, `alive` after each (re)start; returns the decisions.
    fn crash(r: &mut Restarts, t: &mut Instant, n: usize, alive: Duration) -> Vec<Decision> {
        let mut out = vec![];
        for _ in 0..n {
            *t += alive;
            let d = r.on_failure(*t, false);
            if let Decision::Restart { at, .. } = d {
                *t = at;
                r.on_restarted(at);
            }
            out.push(d);
        }
        out
    }

    #[test]
    fn backoff_doubles_up_to_two_seconds_then_a_required_stage_gives_up() {
        let t0 = Instant::now();
        let (mut t, mut r) = (t0, Restarts::new(P, false, t0));
        let d = crash(&mut r, &mut t, 6, ms(100));
        let delays: Vec<(u64, u32)> = d
            .iter()
            .filter_map(|d| match d {
                Decision::Restart { delay, nth, .. } => Some((delay.as_millis() as u64, *nth)),
                _ => None,
            })
            .collect();
        assert_eq!(
            delays,
            vec![(200, 1), (400, 2), (800, 3), (1600, 4), (2000, 5)]
        );
        assert_eq!(d[5], Decision::GiveUp { times: 6 });
    }

    #[test]
    fn an_optional_stage_is_abandoned_instead() {
        let t0 = Instant::now();
        let (mut t, mut r) = (t0, Restarts::new(P, true, t0));
        let d = crash(&mut r, &mut t, 6, ms(100));
        assert!(matches!(d[4], Decision::Restart { nth: 5, .. }));
        assert_eq!(d[5], Decision::Abandon);
    }

    #[test]
    fn a_permanent_failure_is_not_retried() {
        let t0 = Instant::now();
        let mut r = Restarts::new(P, false, t0);
        assert_eq!(
            r.on_failure(t0 + ms(50), true),
            Decision::GiveUp { times: 1 }
        );
        let mut r = Restarts::new(P, true, t0);
        assert_eq!(r.on_failure(t0 + ms(50), true), Decision::Abandon);
    }

    #[test]
    fn a_hang_is_acted_on_only_when_a_later_look_still_sees_it() {
        const MS: u64 = 1_000_000;
        let timeout = Duration::from_secs(2);
        let mut w = HangWatch::default();
        // No beat yet: starting, not hung.
        assert!(!w.look(0, 100_000 * MS, timeout));
        // Beating: fine.
        assert!(!w.look(10_000 * MS, 11_000 * MS, timeout));
        // The machine stalled from 10 s to 12.78 s (the CI run that killed a healthy
        // network stage, "stopped beating (2780 ms)"): the first look after it sees the
        // silence, the next one (20 ms later) the stage's new beat.
        assert!(!w.look(10_000 * MS, 12_780 * MS, timeout));
        assert!(!w.look(12_790 * MS, 12_800 * MS, timeout));
        // A stage that hangs: silent at 14.8 s, still at 14.82 s, killed at 14.9 s.
        assert!(!w.look(12_790 * MS, 14_800 * MS, timeout));
        assert!(!w.look(12_790 * MS, 14_820 * MS, timeout));
        assert!(w.look(12_790 * MS, 14_900 * MS, timeout));
        // Starved to one look a second by a spinning stage: killed on the second look.
        let mut w = HangWatch::default();
        assert!(!w.look(1_000 * MS, 3_500 * MS, timeout));
        assert!(w.look(1_000 * MS, 4_500 * MS, timeout));
    }

    #[test]
    fn a_healthy_run_resets_the_count_and_the_backoff() {
        let t0 = Instant::now();
        let (mut t, mut r) = (t0, Restarts::new(P, false, t0));
        crash(&mut r, &mut t, 4, ms(100));
        assert_eq!(r.in_a_row(), 4);
        // Up for 10 s: the next death is the first in a row again, with the first backoff.
        let d = crash(&mut r, &mut t, 1, HEALTHY_AFTER);
        assert!(
            matches!(d[0], Decision::Restart { nth: 1, delay, .. } if delay == ms(200)),
            "{d:?}"
        );
        // Just short of it: counted on.
        let d = crash(&mut r, &mut t, 1, HEALTHY_AFTER - ms(1));
        assert!(matches!(d[0], Decision::Restart { nth: 2, .. }), "{d:?}");
    }

    #[test]
    fn no_restarts_allowed_means_the_first_failure_ends_it() {
        let t0 = Instant::now();
        let mut r = Restarts::new(
            Policy {
                max_restarts: 0,
                ..P
            },
            false,
            t0,
        );
        assert_eq!(
            r.on_failure(t0 + ms(1), false),
            Decision::GiveUp { times: 1 }
        );
    }
}
