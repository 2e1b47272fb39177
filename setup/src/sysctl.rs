//! sysctl.d(5) files: parsing and the effective value of each key across all files.
//!
//! Format (sysctl.d(5)): one `key = value` per line, `#` or `;` starts a comment line, a
//! leading `-` on the key means "ignore failure"; `/` in a key is the same as `.`.
//! Files are applied in the order of their file names; a later assignment wins. A
//! hand-rolled parser because the format is two lines of grammar and no crate implements
//! the override order. Pure code: the caller reads the files.

use std::collections::BTreeMap;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Key with dots (`net.core.rmem_max`).
    pub key: String,
    /// Value with surrounding whitespace removed.
    pub value: String,
}

/// Parses one sysctl.d file. Lines that are not assignments are skipped (systemd-sysctl
/// logs and ignores them too).
pub fn parse(text: &str) -> Vec<Assignment> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let k = k.trim().trim_start_matches('-').replace('/', ".");
            if k.is_empty() {
                return None;
            }
            Some(Assignment {
                key: k,
                value: v.trim().to_string(),
            })
        })
        .collect()
}

/// Where an effective value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The value.
    pub value: String,
    /// The file (as given by the caller) that sets it last.
    pub source: String,
}

/// Effective values after applying `files` (name, text) in the given order.
pub fn effective(files: &[(String, String)]) -> BTreeMap<String, Effective> {
    let mut out = BTreeMap::new();
    for (name, text) in files {
        for a in parse(text) {
            out.insert(
                a.key,
                Effective {
                    value: a.value,
                    source: name.clone(),
                },
            );
        }
    }
    out
}

/// Whether two values are the same after normalising whitespace (`4096 87380  6291456`).
pub fn same_value(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// The path under `/proc/sys` of a key (`net.core.rmem_max` -> `net/core/rmem_max`).
pub fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_file_wins_and_formats_are_understood() {
        let files = vec![
            (
                "/etc/sysctl.d/10-a.conf".to_string(),
                "# c\n; c\nnet/core/rmem_max=100\n-vm.swappiness = 60\n".to_string(),
            ),
            (
                "/etc/sysctl.d/99-b.conf".to_string(),
                "net.core.rmem_max = 200\nbogus line\n".to_string(),
            ),
        ];
        let e = effective(&files);
        assert_eq!(e["net.core.rmem_max"].value, "200");
        assert_eq!(e["net.core.rmem_max"].source, "/etc/sysctl.d/99-b.conf");
        assert_eq!(e["vm.swappiness"].value, "60");
        assert_eq!(e.len(), 2);
        assert!(same_value("1  2 3", "1 2\t3"));
        assert_eq!(
            proc_path("kernel.sched_rt_runtime_us"),
            "/proc/sys/kernel/sched_rt_runtime_us"
        );
    }
}
