//! A network impairment model (sans-IO, deterministic with a seed): what `vr-relay` — the
//! userspace stand-in for `tc netem`, which this project's test kernels lack — does to
//! each packet, and what the simulated-link tests of the receiver use.
//!
//! Per packet, in arrival order:
//! - **loss**: a two-state Gilbert–Elliott chain (good: delivered, bad: dropped) with
//!   the stationary loss rate `loss_percent` and mean burst length `burst` packets
//!   (P(bad → good) = 1/burst, P(good → bad) = loss·r/(1 − loss)); `burst` 1 is
//!   independent (Bernoulli) loss;
//! - **delay**: `delay` ± `jitter` (uniform), but never before the packet in front of
//!   it: jitter alone does not reorder (like netem with a rate, or a real Wi-Fi queue);
//! - **reordering**: with probability `reorder_percent`, a packet is held back
//!   `reorder_gap` beyond that, so packets behind it overtake it.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::time::Duration;

/// What to do to the packets (the relay's command-line options).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImpairParams {
    /// Long-run share of packets dropped, per cent (0..100).
    pub loss_percent: f64,
    /// Mean length of a loss burst, packets (>= 1; 1 = independent losses).
    pub burst: f64,
    /// Base one-way delay added.
    pub delay: Duration,
    /// Uniform jitter around the delay (± this).
    pub jitter: Duration,
    /// Share of packets held back to arrive out of order, per cent.
    pub reorder_percent: f64,
    /// How long such a packet is held back beyond its turn.
    pub reorder_gap: Duration,
    /// Seed of the random generator (PCG-64 MCG): equal seeds, equal decisions.
    pub seed: u64,
}

impl Default for ImpairParams {
    fn default() -> Self {
        ImpairParams {
            loss_percent: 0.0,
            burst: 1.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder_percent: 0.0,
            reorder_gap: Duration::from_millis(2),
            seed: 1,
        }
    }
}

/// Errors in [`ImpairParams`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImpairError {
    /// A value out of range: the name and what is allowed.
    #[error("{0}")]
    Invalid(String),
}

/// The decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Dropped.
    Drop,
    /// Delivered at this time (same clock as the arrival, ns); `reordered` when held back
    /// to arrive after later packets.
    Deliver {
        /// Release time, ns.
        at_ns: u64,
        /// Held back beyond its turn.
        reordered: bool,
    },
}

/// The impairment state of one direction of one flow.
#[derive(Debug, Clone)]
pub struct Impairment {
    p: ImpairParams,
    rng: Pcg64Mcg,
    bad: bool,
    p_gb: f64,
    p_bg: f64,
    last_release_ns: u64,
}

impl Impairment {
    /// A model with `p`.
    ///
    /// Errors: loss outside 0..100, burst below 1, jitter above the delay, reorder outside
    /// 0..=100 — each named with what is allowed.
    pub fn new(p: ImpairParams) -> Result<Impairment, ImpairError> {
        if !(0.0..100.0).contains(&p.loss_percent) {
            return Err(ImpairError::Invalid(format!(
                "loss {}%: allowed 0 <= loss < 100",
                p.loss_percent
            )));
        }
        if p.burst.is_nan() || p.burst < 1.0 {
            return Err(ImpairError::Invalid(format!(
                "burst {}: allowed >= 1 (packets)",
                p.burst
            )));
        }
        if p.jitter > p.delay {
            return Err(ImpairError::Invalid(format!(
                "jitter {:?} above the delay {:?}: allowed jitter <= delay",
                p.jitter, p.delay
            )));
        }
        if !(0.0..=100.0).contains(&p.reorder_percent) {
            return Err(ImpairError::Invalid(format!(
                "reorder {}%: allowed 0..=100",
                p.reorder_percent
            )));
        }
        let loss = p.loss_percent / 100.0;
        let p_bg = 1.0 / p.burst;
        let p_gb = if loss == 0.0 {
            0.0
        } else {
            (loss * p_bg / (1.0 - loss)).min(1.0)
        };
        Ok(Impairment {
            p,
            rng: Pcg64Mcg::seed_from_u64(p.seed),
            bad: false,
            p_gb,
            p_bg,
            last_release_ns: 0,
        })
    }

    /// Decides the fate of a packet arriving at `now_ns`.
    pub fn on_packet(&mut self, now_ns: u64) -> Fate {
        // Every draw happens for every packet, so the decisions for packet n depend only
        // on the seed and n.
        let (u_state, u_delay, u_reorder) = (
            self.rng.r#gen::<f64>(),
            self.rng.r#gen::<f64>(),
            self.rng.r#gen::<f64>(),
        );
        self.bad = if self.bad {
            u_state >= self.p_bg
        } else {
            u_state < self.p_gb
        };
        if self.bad {
            return Fate::Drop;
        }
        let d = self.p.delay.as_nanos() as f64
            + (u_delay * 2.0 - 1.0) * self.p.jitter.as_nanos() as f64;
        let in_order = (now_ns + d.max(0.0) as u64).max(self.last_release_ns);
        if u_reorder * 100.0 < self.p.reorder_percent {
            // Held back: does not hold back the packets behind it.
            return Fate::Deliver {
                at_ns: in_order + self.p.reorder_gap.as_nanos() as u64,
                reordered: true,
            };
        }
        self.last_release_ns = in_order;
        Fate::Deliver {
            at_ns: in_order,
            reordered: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: ImpairParams, n: usize) -> Vec<Fate> {
        let mut m = Impairment::new(p).unwrap();
        (0..n).map(|i| m.on_packet(i as u64 * 100_000)).collect()
    }

    #[test]
    fn loss_rate_and_burst_length_match_the_parameters() {
        for (loss, burst) in [(1.0, 1.0), (5.0, 1.0), (5.0, 4.0)] {
            let f = run(
                ImpairParams {
                    loss_percent: loss,
                    burst,
                    ..Default::default()
                },
                400_000,
            );
            let drops = f.iter().filter(|x| **x == Fate::Drop).count();
            let rate = drops as f64 / f.len() as f64 * 100.0;
            assert!(
                (rate - loss).abs() < loss * 0.1,
                "loss {loss}%: measured {rate:.2}%"
            );
            let mut bursts = vec![];
            let mut run_len = 0;
            for x in &f {
                if *x == Fate::Drop {
                    run_len += 1;
                } else if run_len > 0 {
                    bursts.push(run_len);
                    run_len = 0;
                }
            }
            let mean = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
            // Independent losses at rate L have mean run length 1/(1-L).
            let want = if burst == 1.0 {
                1.0 / (1.0 - loss / 100.0)
            } else {
                burst
            };
            assert!(
                (mean - want).abs() < want * 0.1,
                "burst {burst}: mean run {mean:.2}"
            );
        }
    }

    #[test]
    fn delay_and_jitter_stay_in_bounds_and_do_not_reorder() {
        let p = ImpairParams {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(2),
            ..Default::default()
        };
        let mut m = Impairment::new(p).unwrap();
        let mut last = 0;
        let mut min_d = u64::MAX;
        for i in 0..10_000u64 {
            // Packets 1 ms apart: jitter can exceed the spacing.
            let now = i * 1_000_000;
            let Fate::Deliver { at_ns, reordered } = m.on_packet(now) else {
                panic!("no loss configured")
            };
            assert!(!reordered);
            assert!(at_ns >= last, "reordered at {i}");
            let d = at_ns - now;
            assert!(d <= 7_000_000 + 1, "{d}");
            min_d = min_d.min(d);
            last = at_ns;
        }
        assert!(
            min_d < 3_200_000,
            "the low end of the jitter is used: {min_d}"
        );
    }

    #[test]
    fn reordered_packets_are_overtaken_and_the_seed_decides() {
        let p = ImpairParams {
            delay: Duration::from_millis(5),
            reorder_percent: 10.0,
            reorder_gap: Duration::from_millis(1),
            seed: 7,
            ..Default::default()
        };
        let a = run(p, 2000);
        assert_eq!(a, run(p, 2000), "same seed, same fates");
        assert_ne!(a, run(ImpairParams { seed: 8, ..p }, 2000));
        let held = a
            .iter()
            .filter(|f| {
                matches!(
                    f,
                    Fate::Deliver {
                        reordered: true,
                        ..
                    }
                )
            })
            .count();
        assert!((150..250).contains(&held), "{held} of 2000 held back");
        // A held-back packet (sent at i * 0.1 ms) arrives after the next 10 packets.
        let at = |f: &Fate| match f {
            Fate::Deliver { at_ns, .. } => *at_ns,
            Fate::Drop => unreachable!(),
        };
        let i = a
            .iter()
            .position(|f| {
                matches!(
                    f,
                    Fate::Deliver {
                        reordered: true,
                        ..
                    }
                )
            })
            .unwrap();
        assert!(at(&a[i]) > at(&a[i + 5]));
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = Impairment::new(ImpairParams {
            loss_percent: 100.0,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("loss 100%"), "{e}");
        let e = Impairment::new(ImpairParams {
            burst: 0.5,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("burst"), "{e}");
        let e = Impairment::new(ImpairParams {
            jitter: Duration::from_millis(3),
            delay: Duration::from_millis(1),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("jitter"), "{e}");
    }
}
