//! `--apply` and `--revert`: turn a [`Plan`](crate::plan::Plan) into one all-or-nothing
//! [`Transaction`] with backups and a manifest, then change the running system (only when
//! the root is `/`); and undo both.

use crate::fsx::{self, Content, Meta, Op, Transaction};
use crate::live;
use crate::plan::{self, Target};
use crate::rootfs::Node;
use crate::state::{self, Before, Entry, LiveBefore, State};
use std::path::Path;

/// What a run did or, with `dry_run`, would do.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Paths written, removed or restored (on the target system).
    pub files: Vec<String>,
    /// Live changes made (or that would be made).
    pub live: Vec<String>,
    /// Unified diff of every file change (`--dry-run`).
    pub diff: String,
    /// Things left alone and why.
    pub notes: Vec<String>,
    /// Live changes or restorations that failed (the files are in place regardless).
    pub warnings: Vec<String>,
    /// Whether a reboot is needed for a change to take effect (kernel command line).
    pub reboot: bool,
}

impl Outcome {
    /// Whether nothing was (or would be) changed.
    pub fn nothing(&self) -> bool {
        self.files.is_empty() && self.live.is_empty()
    }
}

/// Why `--apply` or `--revert` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Bad `--cpus`.
    #[error("{0}")]
    Cpus(String),
    /// The plan cannot be made (cmdline.txt refused, no user, ...).
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// Writing failed; everything was rolled back.
    #[error(transparent)]
    Txn(#[from] fsx::TxnError),
    /// The manifest of an earlier run is unreadable.
    #[error(
        "{path}: {reason}; move it away to start over (the backups next to it are the originals)"
    )]
    State {
        /// The manifest.
        path: String,
        /// Why.
        reason: String,
    },
}

fn load_state(t: &Target) -> Result<Option<State>, ApplyError> {
    let err = |reason: String| ApplyError::State {
        path: t.root.path(state::STATE_FILE).display().to_string(),
        reason,
    };
    match t
        .root
        .node(state::STATE_FILE)
        .map_err(|e| err(e.to_string()))?
    {
        Node::Missing => Ok(None),
        Node::File(b) => State::parse(&String::from_utf8_lossy(&b))
            .map(Some)
            .map_err(err),
        _ => Err(err("not a regular file".into())),
    }
}

fn diff_of(path: &str, before: &Node, after: &Content) -> String {
    let text = |n: &Node| match n {
        Node::File(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let describe = |n: &Node| match n {
        Node::Missing => "missing".to_string(),
        Node::Symlink(t) => format!("symlink -> {t}"),
        Node::File(_) => "file".to_string(),
        Node::Other => "special file".to_string(),
    };
    match after {
        Content::Symlink(t) => format!("{path}: {} => symlink -> {t}\n", describe(before)),
        Content::Absent => match before {
            Node::File(_) => similar::TextDiff::from_lines(text(before), "")
                .unified_diff()
                .header(&format!("a{path}"), "/dev/null")
                .to_string(),
            _ => format!("{path}: {} => removed\n", describe(before)),
        },
        Content::File(b) => {
            let new = String::from_utf8_lossy(b);
            let old = text(before);
            let from = if matches!(before, Node::Missing) {
                "/dev/null".to_string()
            } else {
                format!("a{path}")
            };
            let mut d = similar::TextDiff::from_lines(&old, &new)
                .unified_diff()
                .header(&from, &format!("b{path}"))
                .to_string();
            if let Node::Symlink(t) = before {
                d = format!("{path}: was a symlink -> {t}\n{d}");
            }
            d
        }
    }
}

/// The logical (target system) form of a host path under the root.
fn logical(t: &Target, host: &Path) -> String {
    format!(
        "/{}",
        host.strip_prefix(t.root.base()).unwrap_or(host).display()
    )
}

/// A live change: what to do and how to record the value before.
enum LiveAction {
    Sysctl {
        key: &'static str,
        before: String,
        value: String,
    },
    Governor {
        path: String,
        before: String,
    },
    SwapOff {
        active: Vec<String>,
        dphys: bool,
    },
    WifiPowerSave {
        iface: String,
    },
    WifiQdisc {
        iface: String,
        before: String,
    },
    Irq {
        irq: u32,
        before: String,
        to: String,
    },
}

impl LiveAction {
    fn describe(&self) -> String {
        match self {
            LiveAction::Sysctl { key, before, value } => {
                format!("sysctl {key}: {before} -> {value}")
            }
            LiveAction::Governor { path, before } => format!("{path}: {before} -> performance"),
            LiveAction::SwapOff { active, .. } => format!("swapoff {}", active.join(" ")),
            LiveAction::WifiPowerSave { iface } => format!("iw dev {iface} set power_save off"),
            LiveAction::WifiQdisc { iface, before } => {
                format!("tc qdisc replace dev {iface} root fq_codel (was {before})")
            }
            LiveAction::Irq { irq, before, to } => format!("IRQ {irq} affinity {before} -> {to}"),
        }
    }
}

fn live_actions(t: &Target) -> Vec<LiveAction> {
    let mut v = Vec::new();
    if !t.root.is_live() {
        return v;
    }
    for w in plan::sysctl_wanted(t.kernel) {
        let Some(have) = live::sysctl(w.key) else {
            continue;
        };
        let ok = if w.at_least {
            matches!((have.parse::<u64>(), w.value.parse::<u64>()), (Ok(h), Ok(x)) if h >= x)
        } else {
            crate::sysctl::same_value(&have, &w.value)
        };
        if !ok {
            v.push(LiveAction::Sysctl {
                key: w.key,
                before: have,
                value: w.value,
            });
        }
    }
    for (path, g) in live::governors() {
        if g != "performance" {
            v.push(LiveAction::Governor { path, before: g });
        }
    }
    let active = live::swaps();
    if !active.is_empty() {
        v.push(LiveAction::SwapOff {
            active,
            dphys: plan::swap_mechanisms(&t.root).0,
        });
    }
    for iface in live::wifi_interfaces() {
        if live::wifi_power_save(&iface) == Some(true) {
            v.push(LiveAction::WifiPowerSave {
                iface: iface.clone(),
            });
        }
        match live::root_qdisc(&iface) {
            Some(q) if q == "fq_codel" => {}
            q => v.push(LiveAction::WifiQdisc {
                iface,
                before: q.unwrap_or_else(|| "unknown".into()),
            }),
        }
    }
    let to = t.housekeeping().to_string();
    for irq in live::net_usb_irqs() {
        if irq.affinity.iter().any(|c| t.isolated.contains(c)) {
            v.push(LiveAction::Irq {
                irq: irq.irq,
                before: irq.affinity.to_string(),
                to: to.clone(),
            });
        }
    }
    v
}

fn record_before(s: &mut State, a: &LiveAction) {
    let l = &mut s.live;
    match a {
        LiveAction::Sysctl { key, before, .. } => {
            l.sysctl
                .entry(key.to_string())
                .or_insert_with(|| before.clone());
        }
        LiveAction::Governor { path, before } => {
            l.governors
                .entry(path.clone())
                .or_insert_with(|| before.clone());
        }
        LiveAction::SwapOff { active, .. } => {
            if l.swaps.is_empty() {
                l.swaps = active.clone();
            }
        }
        LiveAction::WifiPowerSave { iface } => {
            l.wifi_power_save.entry(iface.clone()).or_insert(true);
        }
        LiveAction::WifiQdisc { iface, .. } => {
            if !l.wifi_qdisc.contains(iface) {
                l.wifi_qdisc.push(iface.clone());
            }
        }
        LiveAction::Irq { irq, before, .. } => {
            l.irq_affinity
                .entry(irq.to_string())
                .or_insert_with(|| before.clone());
        }
    }
}

fn perform(a: &LiveAction) -> std::io::Result<()> {
    match a {
        LiveAction::Sysctl { key, value, .. } => live::set_sysctl(key, value),
        LiveAction::Governor { path, .. } => std::fs::write(path, "performance"),
        LiveAction::SwapOff { dphys, .. } => {
            if *dphys {
                let _ = live::run("systemctl", &["stop", "dphys-swapfile.service"]);
            }
            live::run("swapoff", &["-a"]).map(|_| ())
        }
        LiveAction::WifiPowerSave { iface } => {
            live::run("iw", &["dev", iface, "set", "power_save", "off"]).map(|_| ())
        }
        LiveAction::WifiQdisc { iface, .. } => live::run(
            "tc",
            &["qdisc", "replace", "dev", iface, "root", "fq_codel"],
        )
        .map(|_| ()),
        LiveAction::Irq { irq, to, .. } => live::set_irq_affinity(*irq, to),
    }
}

/// Adds the missing ancestors of `host` (as logical paths) to `dirs`, outermost first.
fn note_dirs(t: &Target, dirs: &mut Vec<String>, host: &Path) {
    for d in fsx::missing_dirs(host) {
        let l = logical(t, &d);
        if !dirs.contains(&l) {
            dirs.push(l);
        }
    }
}

/// `--apply`: writes every planned file (with backups and the manifest) in one
/// transaction, then changes the running system when the root is `/`. With `dry_run`,
/// only says what it would do.
///
/// Errors: [`ApplyError`]; on error no file was changed.
pub fn apply(t: &Target, dry_run: bool) -> Result<Outcome, ApplyError> {
    t.validate_cpus().map_err(ApplyError::Cpus)?;
    let p = plan::plan(t)?;
    let old_state = load_state(t)?;
    let actions = live_actions(t);
    let mut out = Outcome {
        notes: p.notes.clone(),
        ..Default::default()
    };
    out.reboot = p.changes.iter().any(|c| c.item == plan::Item::Cmdline);
    for c in &p.changes {
        out.files.push(c.path.clone());
        if dry_run {
            out.diff.push_str(&diff_of(&c.path, &c.before, &c.after));
        }
    }
    out.live = actions.iter().map(LiveAction::describe).collect();
    if dry_run || out.nothing() {
        return Ok(out);
    }

    let mut st = old_state.unwrap_or_default();
    let mut txn = Transaction::new();
    let mut dirs = st.dirs.clone();
    let mut backups: Vec<Op> = Vec::new();
    for c in &p.changes {
        let written = state::fingerprint(&match &c.after {
            Content::File(b) => Node::File(b.clone()),
            Content::Symlink(s) => Node::Symlink(s.clone()),
            Content::Absent => Node::Missing,
        });
        if let Some(e) = st.files.iter_mut().find(|e| e.path == c.path) {
            e.written = written;
            continue;
        }
        let before = match &c.before {
            Node::Missing => Before::Missing,
            Node::Symlink(link) => Before::Symlink { link: link.clone() },
            Node::File(b) => {
                let host = t.root.path(&c.path);
                let meta = fsx::meta_of(&host).map_err(|source| fsx::TxnError {
                    path: host.clone(),
                    action: "read",
                    source,
                    rolled_back: true,
                })?;
                let backup = state::backup_path(&c.path);
                let bhost = t.root.path(&backup);
                note_dirs(t, &mut dirs, &bhost);
                backups.push(Op {
                    path: bhost,
                    content: Content::File(b.clone()),
                    meta: Some(Meta {
                        mode: 0o600,
                        ..meta
                    }),
                });
                Before::File { backup, meta }
            }
            Node::Other => unreachable!("plan refuses special files"),
        };
        st.files.push(Entry {
            path: c.path.clone(),
            before,
            written,
        });
    }
    for a in &actions {
        record_before(&mut st, a);
    }
    let state_host = t.root.path(state::STATE_FILE);
    note_dirs(t, &mut dirs, &state_host);
    for c in &p.changes {
        note_dirs(t, &mut dirs, &t.root.path(&c.path));
    }
    st.dirs = dirs;
    for b in backups {
        txn.push(b);
    }
    txn.push(Op {
        path: state_host,
        content: Content::File(st.to_toml().into_bytes()),
        meta: None,
    });
    for c in &p.changes {
        txn.push(Op {
            path: t.root.path(&c.path),
            content: c.after.clone(),
            meta: None,
        });
    }
    txn.commit()?;

    for a in &actions {
        if let Err(e) = perform(a) {
            out.warnings.push(format!("{}: {e}", a.describe()));
        }
    }
    if t.root.is_live() && p.changes.iter().any(|c| c.path.starts_with(plan::UNIT_DIR)) {
        if !live::systemd_booted() {
            out.notes
                .push("systemd is not running here: the units take effect at the next boot".into());
        } else if let Err(e) = live::run("systemctl", &["daemon-reload"]) {
            out.warnings.push(format!("systemctl daemon-reload: {e}"));
        }
    }
    Ok(out)
}

/// `--revert`: restores every file the manifest lists byte for byte (owner and mode too),
/// removes the files `--apply` created, the backups, the manifest and the directories it
/// created, then restores the recorded live values when the root is `/`. A file changed by
/// somebody since `--apply` is left as it is (with its backup and manifest entry) and
/// reported. Without a manifest there is nothing to do.
///
/// Errors: [`ApplyError`]; on error no file was changed.
pub fn revert(t: &Target, dry_run: bool) -> Result<Outcome, ApplyError> {
    let mut out = Outcome::default();
    let Some(st) = load_state(t)? else {
        out.notes.push(format!(
            "nothing to revert: no {} under {}",
            state::STATE_FILE,
            t.root.base().display()
        ));
        return Ok(out);
    };
    let files = FileRestores::new(t, &st, &mut out);
    let restores = if t.root.is_live() {
        live_restores(&st.live, plan::swap_mechanisms(&t.root).0)
    } else {
        Vec::new()
    };
    out.live = restores.iter().map(Restore::describe).collect();
    if dry_run {
        for (op, (path, now)) in files.ops.iter().zip(&files.now) {
            out.diff.push_str(&diff_of(path, now, &op.content));
        }
        return Ok(out);
    }

    let mut txn = Transaction::new();
    for op in files.ops.into_iter().chain(files.backups) {
        txn.push(op);
    }
    let state_host = t.root.path(state::STATE_FILE);
    let manifest = if files.kept.is_empty() {
        Content::Absent
    } else {
        let rest = State {
            files: files.kept,
            live: LiveBefore::default(),
            ..st.clone()
        };
        Content::File(rest.to_toml().into_bytes())
    };
    txn.push(Op {
        path: state_host,
        content: manifest,
        meta: None,
    });
    txn.commit()?;
    if out.warnings.is_empty() {
        // Innermost first; a directory somebody put files in stays.
        let mut dirs = st.dirs.clone();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        for d in dirs {
            let _ = std::fs::remove_dir(t.root.path(&d));
        }
    }

    if t.root.is_live() && live::systemd_booted() {
        // Before the live restores: starting dphys-swapfile needs its mask (a file) gone.
        let _ = live::run("systemctl", &["daemon-reload"]);
    }
    for r in &restores {
        if let Err(e) = r.perform() {
            out.warnings.push(format!("{}: {e}", r.subject()));
        }
    }
    Ok(out)
}

/// The file half of `--revert`, decided before anything is written.
struct FileRestores {
    /// Each path to restore and what stands there now (for `--dry-run`'s diff), with its
    /// operation in `ops` (same index).
    now: Vec<(String, Node)>,
    /// What each path gets back.
    ops: Vec<Op>,
    /// The backups, removed once restored.
    backups: Vec<Op>,
    /// Entries left as they are (changed since `--apply`, or the backup is gone), in
    /// manifest order: what the manifest keeps.
    kept: Vec<Entry>,
}

impl FileRestores {
    /// Goes through the manifest last change first; a path that cannot be restored is kept
    /// with a warning in `out`; every restored path is added to `out.files`.
    fn new(t: &Target, st: &State, out: &mut Outcome) -> FileRestores {
        let mut r = FileRestores {
            now: Vec::new(),
            ops: Vec::new(),
            backups: Vec::new(),
            kept: Vec::new(),
        };
        for e in st.files.iter().rev() {
            let now = t.root.node(&e.path).unwrap_or(Node::Other);
            if state::fingerprint(&now) != e.written {
                let original = match &e.before {
                    Before::File { backup, .. } => format!("; the original is in {backup}"),
                    _ => String::new(),
                };
                out.warnings.push(format!(
                    "{} was changed since --apply: left as it is{original}",
                    e.path
                ));
                r.kept.push(e.clone());
                continue;
            }
            let (content, meta) = match &e.before {
                Before::Missing => (Content::Absent, None),
                Before::Symlink { link } => (Content::Symlink(link.clone()), None),
                Before::File { backup, meta } => match t.root.node(backup) {
                    Ok(Node::File(bytes)) => {
                        r.backups.push(Op {
                            path: t.root.path(backup),
                            content: Content::Absent,
                            meta: None,
                        });
                        (Content::File(bytes), Some(*meta))
                    }
                    _ => {
                        out.warnings.push(format!(
                            "{}: its backup {backup} is missing: left as it is",
                            e.path
                        ));
                        r.kept.push(e.clone());
                        continue;
                    }
                },
            };
            out.reboot |= e.path.ends_with("cmdline.txt");
            out.files.push(e.path.clone());
            r.ops.push(Op {
                path: t.root.path(&e.path),
                content,
                meta,
            });
            r.now.push((e.path.clone(), now));
        }
        r.kept.reverse();
        r
    }
}

/// A live value `--revert` puts back (the live half of [`LiveBefore`]).
#[derive(Debug, PartialEq)]
enum Restore {
    Sysctl {
        key: String,
        value: String,
    },
    Governor {
        path: String,
        governor: String,
    },
    Irq {
        irq: String,
        affinity: String,
    },
    WifiPowerSave {
        iface: String,
    },
    WifiQdisc {
        iface: String,
    },
    /// `swapon -a`, and dphys-swapfile started again where it is installed.
    Swap {
        areas: Vec<String>,
        dphys: bool,
    },
}

/// What to put back, in the order `--revert` does it (swap last).
fn live_restores(live: &LiveBefore, dphys: bool) -> Vec<Restore> {
    let mut v = Vec::new();
    for (key, value) in &live.sysctl {
        v.push(Restore::Sysctl {
            key: key.clone(),
            value: value.clone(),
        });
    }
    for (path, governor) in &live.governors {
        v.push(Restore::Governor {
            path: path.clone(),
            governor: governor.clone(),
        });
    }
    for (irq, affinity) in &live.irq_affinity {
        v.push(Restore::Irq {
            irq: irq.clone(),
            affinity: affinity.clone(),
        });
    }
    for iface in live.wifi_power_save.keys() {
        v.push(Restore::WifiPowerSave {
            iface: iface.clone(),
        });
    }
    for iface in &live.wifi_qdisc {
        v.push(Restore::WifiQdisc {
            iface: iface.clone(),
        });
    }
    if !live.swaps.is_empty() {
        v.push(Restore::Swap {
            areas: live.swaps.clone(),
            dphys,
        });
    }
    v
}

impl Restore {
    /// The line `--revert` prints for it.
    fn describe(&self) -> String {
        match self {
            Restore::Sysctl { key, value } => format!("sysctl {key} -> {value}"),
            Restore::Governor { path, governor } => format!("{path} -> {governor}"),
            Restore::Irq { irq, affinity } => format!("IRQ {irq} affinity -> {affinity}"),
            Restore::WifiPowerSave { iface } => format!("iw dev {iface} set power_save on"),
            Restore::WifiQdisc { iface } => format!("tc qdisc del dev {iface} root"),
            Restore::Swap { areas, .. } => format!("swapon {}", areas.join(" ")),
        }
    }

    /// What a failure names.
    fn subject(&self) -> String {
        match self {
            Restore::Sysctl { key, .. } => format!("sysctl {key}"),
            Restore::Governor { path, .. } => path.clone(),
            Restore::Irq { irq, .. } => format!("IRQ {irq}"),
            Restore::WifiPowerSave { iface } => format!("{iface} power save"),
            Restore::WifiQdisc { iface } => format!("{iface} qdisc"),
            Restore::Swap { .. } => "swapon -a".into(),
        }
    }

    fn perform(&self) -> std::io::Result<()> {
        match self {
            Restore::Sysctl { key, value } => live::set_sysctl(key, value),
            Restore::Governor { path, governor } => std::fs::write(path, governor),
            Restore::Irq { irq, affinity } => irq
                .parse()
                .map_err(std::io::Error::other)
                .and_then(|n| live::set_irq_affinity(n, affinity)),
            Restore::WifiPowerSave { iface } => {
                live::run("iw", &["dev", iface, "set", "power_save", "on"]).map(|_| ())
            }
            Restore::WifiQdisc { iface } => {
                live::run("tc", &["qdisc", "del", "dev", iface, "root"]).map(|_| ())
            }
            Restore::Swap { dphys, .. } => {
                let r = live::run("swapon", &["-a"]).map(|_| ());
                if *dphys {
                    let _ = live::run("systemctl", &["start", "dphys-swapfile.service"]);
                }
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--revert` puts back every recorded live value, says each as it does it, and leaves
    /// swap for last (dphys-swapfile can start only once its unit is unmasked).
    #[test]
    fn live_restores_cover_every_recorded_value_swap_last() {
        let mut live = LiveBefore {
            swaps: vec!["/var/swap".into()],
            ..Default::default()
        };
        live.sysctl.insert("vm.swappiness".into(), "60".into());
        live.governors.insert(
            "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor".into(),
            "ondemand".into(),
        );
        live.irq_affinity.insert("17".into(), "0-3".into());
        live.wifi_power_save.insert("wlan0".into(), true);
        live.wifi_qdisc.push("wlan0".into());
        let r = live_restores(&live, true);
        let said: Vec<String> = r.iter().map(Restore::describe).collect();
        assert_eq!(
            said,
            [
                "sysctl vm.swappiness -> 60",
                "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor -> ondemand",
                "IRQ 17 affinity -> 0-3",
                "iw dev wlan0 set power_save on",
                "tc qdisc del dev wlan0 root",
                "swapon /var/swap",
            ]
        );
        assert_eq!(
            r.last(),
            Some(&Restore::Swap {
                areas: vec!["/var/swap".into()],
                dphys: true
            })
        );
        assert_eq!(r[2].subject(), "IRQ 17");
        assert!(live_restores(&LiveBefore::default(), true).is_empty());
    }
}
