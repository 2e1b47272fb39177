//! limits.conf(5) files (`/etc/security/limits.conf`, `/etc/security/limits.d/*.conf`):
//! parsing and the limit a given user gets.
//!
//! Format: `<domain> <type> <item> <value>`; domain is a user name, `@group`, `%group` or
//! `*`; type is `soft`, `hard` or `-` (both). pam_limits reads limits.conf, then the
//! limits.d files in name order; an entry for the user beats a group entry, which beats `*`
//! (pam_limits(8)); within one kind the later entry wins. A hand-rolled parser because the
//! format is four fields per line and no crate implements pam_limits' precedence.
//! Pure code: the caller reads the files.

/// A limit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    /// A number (priority, or KiB for memlock).
    Value(u64),
    /// `unlimited`, `infinity` or `-1`.
    Unlimited,
}

impl Limit {
    fn parse(s: &str) -> Option<Limit> {
        match s {
            "unlimited" | "infinity" | "-1" => Some(Limit::Unlimited),
            _ => s.parse().ok().map(Limit::Value),
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Value(v) => write!(f, "{v}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `user`, `@group`, `%group` or `*`.
    pub domain: String,
    /// `soft`, `hard` or `-`.
    pub kind: String,
    /// `rtprio`, `memlock`, ...
    pub item: String,
    /// The value.
    pub value: Limit,
    /// The file it is in.
    pub source: String,
}

/// Parses one file; malformed lines are skipped (pam_limits logs and skips them).
pub fn parse(text: &str, source: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or("").trim();
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 4 || !matches!(f[1], "soft" | "hard" | "-") {
                return None;
            }
            Some(Entry {
                domain: f[0].to_string(),
                kind: f[1].to_string(),
                item: f[2].to_string(),
                value: Limit::parse(f[3])?,
                source: source.to_string(),
            })
        })
        .collect()
}

/// A limit and the file that sets it.
pub type Sourced = Option<(Limit, String)>;

/// The soft and hard value of `item` for `user` (member of `groups`), with the file each
/// comes from; `None` where no entry applies (the system default stays).
pub fn effective(
    entries: &[Entry],
    user: &str,
    groups: &[String],
    item: &str,
) -> (Sourced, Sourced) {
    let rank = |d: &str| -> Option<u8> {
        if d == user {
            Some(3)
        } else if let Some(g) = d.strip_prefix('@').or_else(|| d.strip_prefix('%')) {
            groups.iter().any(|x| x == g).then_some(2)
        } else if d == "*" {
            Some(1)
        } else {
            None
        }
    };
    let mut soft: Option<(u8, Limit, String)> = None;
    let mut hard: Option<(u8, Limit, String)> = None;
    for e in entries.iter().filter(|e| e.item == item) {
        let Some(r) = rank(&e.domain) else { continue };
        for (slot, applies) in [(&mut soft, e.kind != "hard"), (&mut hard, e.kind != "soft")] {
            if applies && slot.as_ref().is_none_or(|(sr, _, _)| r >= *sr) {
                *slot = Some((r, e.value, e.source.clone()));
            }
        }
    }
    (soft.map(|(_, v, s)| (v, s)), hard.map(|(_, v, s)| (v, s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_beats_group_beats_star() {
        let mut e = parse(
            "* - rtprio 10\n@audio - rtprio 95\n",
            "/etc/security/limits.conf",
        );
        e.extend(parse(
            "# x\npi hard rtprio 50\n",
            "/etc/security/limits.d/10-pi.conf",
        ));
        let g = vec!["audio".to_string()];
        let (soft, hard) = effective(&e, "pi", &g, "rtprio");
        assert_eq!(soft.unwrap().0, Limit::Value(95));
        assert_eq!(
            hard.unwrap(),
            (Limit::Value(50), "/etc/security/limits.d/10-pi.conf".into())
        );
        let (soft, _) = effective(&e, "bob", &[], "rtprio");
        assert_eq!(soft.unwrap().0, Limit::Value(10));
        let e = parse("pi - memlock unlimited\npi soft memlock 64 # later\n", "f");
        let (soft, hard) = effective(&e, "pi", &[], "memlock");
        assert_eq!(soft.unwrap().0, Limit::Value(64));
        assert_eq!(hard.unwrap().0, Limit::Unlimited);
    }
}
