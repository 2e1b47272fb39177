//! `--apply` and `--revert`: turn a [`Plan`](crate::plan::Plan) into one all-or-nothing
//! [`Transaction`](crate::fsx::Transaction) with backups and a manifest, then change the
//! running system (only when the root is `/`); and undo both.

use crate::fsx::{self, Content, Meta, Op, Transaction};
use crate::live;
use crate::plan::{self, Target};
use crate::rootfs::Node;
use crate::state::{self, Entry, State};
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
        let mut e = Entry {
            path: c.path.clone(),
            before: String::new(),
            backup: None,
            meta: None,
            link: None,
            written,
        };
        match &c.before {
            Node::Missing => e.before = "missing".into(),
            Node::Symlink(l) => {
                e.before = "symlink".into();
                e.link = Some(l.clone());
            }
            Node::File(b) => {
                let host = t.root.path(&c.path);
                let meta = fsx::meta_of(&host).map_err(|source| fsx::TxnError {
                    path: host.clone(),
                    action: "read",
                    source,
                    rolled_back: true,
                })?;
                let bpath = state::backup_path(&c.path);
                let bhost = t.root.path(&bpath);
                note_dirs(t, &mut dirs, &bhost);
                backups.push(Op {
                    path: bhost,
                    content: Content::File(b.clone()),
                    meta: Some(Meta {
                        mode: 0o600,
                        ..meta
                    }),
                });
                e.before = "file".into();
                e.backup = Some(bpath);
                e.meta = Some(meta);
            }
            Node::Other => unreachable!("plan refuses special files"),
        }
        st.files.push(e);
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
    let mut txn = Transaction::new();
    let mut kept: Vec<Entry> = Vec::new();
    let mut removals: Vec<Op> = Vec::new();
    for e in st.files.iter().rev() {
        let now = t.root.node(&e.path).unwrap_or(Node::Other);
        if state::fingerprint(&now) != e.written {
            out.warnings.push(format!(
                "{} was changed since --apply: left as it is{}",
                e.path,
                e.backup
                    .as_ref()
                    .map(|b| format!("; the original is in {b}"))
                    .unwrap_or_default()
            ));
            kept.push(e.clone());
            continue;
        }
        let content = match e.before.as_str() {
            "missing" => Content::Absent,
            "symlink" => Content::Symlink(e.link.clone().unwrap_or_default()),
            _ => {
                let b = e.backup.as_deref().unwrap_or_default();
                match t.root.node(b) {
                    Ok(Node::File(bytes)) => {
                        removals.push(Op {
                            path: t.root.path(b),
                            content: Content::Absent,
                            meta: None,
                        });
                        Content::File(bytes)
                    }
                    _ => {
                        out.warnings.push(format!(
                            "{}: its backup {b} is missing: left as it is",
                            e.path
                        ));
                        kept.push(e.clone());
                        continue;
                    }
                }
            }
        };
        if dry_run {
            out.diff.push_str(&diff_of(&e.path, &now, &content));
        }
        out.reboot |= e.path.ends_with("cmdline.txt");
        out.files.push(e.path.clone());
        txn.push(Op {
            path: t.root.path(&e.path),
            content,
            meta: e.meta,
        });
    }
    let live = &st.live;
    if t.root.is_live() {
        out.live.extend(
            live.sysctl
                .iter()
                .map(|(k, v)| format!("sysctl {k} -> {v}")),
        );
        out.live
            .extend(live.governors.iter().map(|(p, g)| format!("{p} -> {g}")));
        out.live.extend(
            live.irq_affinity
                .iter()
                .map(|(i, a)| format!("IRQ {i} affinity -> {a}")),
        );
        out.live.extend(
            live.wifi_power_save
                .keys()
                .map(|i| format!("iw dev {i} set power_save on")),
        );
        out.live.extend(
            live.wifi_qdisc
                .iter()
                .map(|i| format!("tc qdisc del dev {i} root")),
        );
        if !live.swaps.is_empty() {
            out.live.push(format!("swapon {}", live.swaps.join(" ")));
        }
    }
    if dry_run {
        return Ok(out);
    }
    for r in removals {
        txn.push(r);
    }
    let state_host = t.root.path(state::STATE_FILE);
    if kept.is_empty() {
        txn.push(Op {
            path: state_host,
            content: Content::Absent,
            meta: None,
        });
    } else {
        kept.reverse();
        let rest = State {
            files: kept,
            live: Default::default(),
            ..st.clone()
        };
        txn.push(Op {
            path: state_host,
            content: Content::File(rest.to_toml().into_bytes()),
            meta: None,
        });
    }
    txn.commit()?;
    if out.warnings.is_empty() {
        // Innermost first; a directory somebody put files in stays.
        let mut dirs = st.dirs.clone();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        for d in dirs {
            let _ = std::fs::remove_dir(t.root.path(&d));
        }
    }

    if t.root.is_live() {
        let mut warn = |what: String, r: std::io::Result<()>| {
            if let Err(e) = r {
                out.warnings.push(format!("{what}: {e}"));
            }
        };
        for (k, v) in &live.sysctl {
            warn(format!("sysctl {k}"), live::set_sysctl(k, v));
        }
        for (p, g) in &live.governors {
            warn(p.clone(), std::fs::write(p, g));
        }
        for (i, a) in &live.irq_affinity {
            warn(
                format!("IRQ {i}"),
                i.parse()
                    .map_err(std::io::Error::other)
                    .and_then(|n| live::set_irq_affinity(n, a)),
            );
        }
        for i in live.wifi_power_save.keys() {
            warn(
                format!("{i} power save"),
                live::run("iw", &["dev", i, "set", "power_save", "on"]).map(|_| ()),
            );
        }
        for i in &live.wifi_qdisc {
            warn(
                format!("{i} qdisc"),
                live::run("tc", &["qdisc", "del", "dev", i, "root"]).map(|_| ()),
            );
        }
        if live::systemd_booted() {
            let _ = live::run("systemctl", &["daemon-reload"]);
        }
        if !live.swaps.is_empty() {
            warn("swapon -a".into(), live::run("swapon", &["-a"]).map(|_| ()));
            if plan::swap_mechanisms(&t.root).0 {
                let _ = live::run("systemctl", &["start", "dphys-swapfile.service"]);
            }
        }
    }
    Ok(out)
}
