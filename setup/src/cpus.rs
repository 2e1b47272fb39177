//! CPU lists in the kernel's "cpu list" format (`0-3,5`), as taken by `isolcpus=`,
//! `nohz_full=`, `rcu_nocbs=`, `irqaffinity=` and `/proc/irq/N/smp_affinity_list`
//! (Documentation/admin-guide/kernel-parameters.rst, "CPU lists"). Pure code.

use std::collections::BTreeSet;
use std::fmt;

/// The highest CPU number accepted (the kernel's NR_CPUS on arm64 defconfig is 256+; the
/// Pi 5 has 4).
pub const MAX_CPU: u32 = 1023;

/// A set of CPU numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct CpuList(BTreeSet<u32>);

/// A CPU list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CPU list '{input}': {reason} (allowed: numbers 0-{MAX_CPU} and ranges, e.g. 2,3 or 1-3)")]
pub struct CpuListError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl CpuList {
    /// Parses `2,3`, `1-3`, `0,2-3`. Empty text is an error.
    pub fn parse(input: &str) -> Result<Self, CpuListError> {
        let err = |reason: String| CpuListError {
            input: input.to_string(),
            reason,
        };
        let mut set = BTreeSet::new();
        if input.trim().is_empty() {
            return Err(err("empty".into()));
        }
        for part in input.split(',') {
            let part = part.trim();
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let num = |s: &str| -> Result<u32, CpuListError> {
                let n: u32 = s
                    .parse()
                    .map_err(|_| err(format!("'{part}' is not a CPU number or range")))?;
                if n > MAX_CPU {
                    return Err(err(format!("CPU {n} is too large")));
                }
                Ok(n)
            };
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(err(format!("range '{part}' goes backwards")));
            }
            set.extend(a..=b);
        }
        Ok(CpuList(set))
    }

    /// Parses the CPU part of an `isolcpus=` value, which may start with flags
    /// (`isolcpus=managed_irq,domain,2-3`): tokens that do not start with a digit are
    /// skipped. `None` when no CPU is listed.
    pub fn parse_isolcpus(value: &str) -> Option<Self> {
        let cpus: Vec<&str> = value
            .split(',')
            .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
            .collect();
        if cpus.is_empty() {
            return None;
        }
        Self::parse(&cpus.join(",")).ok()
    }

    /// All CPUs `0..n`.
    pub fn first(n: u32) -> Self {
        CpuList((0..n).collect())
    }

    /// A list from CPU numbers.
    pub fn from_cpus(cpus: impl IntoIterator<Item = u32>) -> Self {
        CpuList(cpus.into_iter().collect())
    }

    /// CPUs of `0..n` not in this list.
    pub fn complement(&self, n: u32) -> Self {
        CpuList((0..n).filter(|c| !self.0.contains(c)).collect())
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `cpu` is in the list.
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuList) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The CPUs, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// The highest CPU, if any.
    pub fn highest(&self) -> Option<u32> {
        self.0.last().copied()
    }

    /// Space-separated form, as systemd's `CPUAffinity=` takes it.
    pub fn to_spaced(&self) -> String {
        self.0
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for CpuList {
    /// Kernel form: runs of three or more become ranges (`0-3`), others stay commas (`2,3`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus: Vec<u32> = self.0.iter().copied().collect();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < cpus.len() {
            let mut j = i;
            while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
                j += 1;
            }
            if j - i >= 2 {
                parts.push(format!("{}-{}", cpus[i], cpus[j]));
            } else {
                parts.extend(cpus[i..=j].iter().map(|c| c.to_string()));
            }
            i = j + 1;
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let l = CpuList::parse("2,3").unwrap();
        assert_eq!(l.to_string(), "2,3");
        assert_eq!(CpuList::parse("0-3").unwrap().to_string(), "0-3");
        assert_eq!(CpuList::parse("3,1-2, 5").unwrap().to_string(), "1-3,5");
        assert_eq!(l.complement(4).to_string(), "0,1");
        assert_eq!(l.to_spaced(), "2 3");
    }

    #[test]
    fn rejects_bad_lists() {
        for bad in ["", "a", "3-1", "1,,2", "2048", "-1"] {
            let e = CpuList::parse(bad).unwrap_err();
            assert!(e.to_string().contains("allowed"), "{e}");
        }
    }

    #[test]
    fn isolcpus_flags_are_skipped() {
        assert_eq!(
            CpuList::parse_isolcpus("managed_irq,domain,2-3")
                .unwrap()
                .to_string(),
            "2,3"
        );
        assert_eq!(CpuList::parse_isolcpus("nohz"), None);
    }
}
