//! Is this box tuned? The one module that decides it, for `setup --check` and for
//! `quick-bench`'s system section.
//!
//! Each [`Row`] says what is there now, what is wanted, how to fix it and whether the fix
//! needs a reboot or a new login. Rows about files read the root acted on; rows about the
//! running kernel (`(running)`) exist only when the root is `/`. Nothing here writes.

use crate::cmdline;
use crate::cpus::CpuList;
use crate::limits::{self, Limit};
use crate::live;
use crate::plan::{self, Item, Target};
use crate::sysctl;
use serde::Serialize;

/// The state of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// As wanted.
    Ok,
    /// Not as wanted; `fix` says how.
    NotTuned,
    /// Does not apply here (no Wi-Fi interface, no cpufreq, not a Pi boot partition).
    NotApplicable,
}

/// When a fix takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// At once (`--apply` also changes the running system).
    Now,
    /// At the next login of the user (pam_limits).
    Login,
    /// After a reboot (kernel command line).
    Reboot,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The item it belongs to.
    pub item: Item,
    /// What is checked, e.g. `kernel command line` or `sysctl (running)`.
    pub what: String,
    /// Tuned or not.
    pub status: Status,
    /// What is there now.
    pub current: String,
    /// What is wanted.
    pub wanted: String,
    /// How to get there (empty when tuned).
    pub fix: String,
    /// When the fix takes effect.
    pub takes_effect: Effect,
}

/// Whether every row is tuned or does not apply.
pub fn all_tuned(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.status != Status::NotTuned)
}

/// A check's current state from what is off: `fine` when nothing is, else the list.
fn state(bad: &[String], fine: &str) -> String {
    if bad.is_empty() {
        fine.into()
    } else {
        bad.join(", ")
    }
}

fn row(
    item: Item,
    what: &str,
    ok: bool,
    current: String,
    wanted: String,
    fix: &str,
    eff: Effect,
) -> Row {
    Row {
        item,
        what: what.to_string(),
        status: if ok { Status::Ok } else { Status::NotTuned },
        current,
        wanted,
        fix: if ok { String::new() } else { fix.to_string() },
        takes_effect: eff,
    }
}

fn na(item: Item, what: &str, current: String, wanted: String, eff: Effect) -> Row {
    Row {
        item,
        what: what.into(),
        status: Status::NotApplicable,
        current,
        wanted,
        fix: String::new(),
        takes_effect: eff,
    }
}

const APPLY: &str = "sudo setup --apply";

/// Every row for the target, in report order: kernel command line, sysctl, limits, swap,
/// governor, Wi-Fi, IRQs (running system only), the service.
pub fn check(t: &Target) -> Vec<Row> {
    let mut rows = Vec::new();
    cmdline_rows(t, &mut rows);
    sysctl_rows(t, &mut rows);
    rows.push(limits_row(t));
    swap_rows(t, &mut rows);
    governor_rows(t, &mut rows);
    wifi_rows(t, &mut rows);
    if t.root.is_live() {
        rows.push(irq_row(t));
    }
    rows.push(service_row(t));
    rows
}

/// The fix of a row that `setup --apply` (with `extra` after it) makes, unless the CPU
/// sets are bad: then what to pick.
fn apply_fix(t: &Target, extra: &str) -> String {
    match t.validate_cpus() {
        Err(e) => format!("{e}: pick --cpus among them"),
        Ok(()) => format!("{APPLY}{extra}"),
    }
}

/// The kernel command line of the boot partition (isolcpus, nohz_full, ...) and, on the
/// running system, the CPUs the kernel isolated.
fn cmdline_rows(t: &Target, rows: &mut Vec<Row>) {
    let live = t.root.is_live();
    let cpus_err = t.validate_cpus().err();
    let wanted_params = plan::cmdline_wanted(t);
    let wanted_text = wanted_params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmdline_ok = false;
    match plan::cmdline_path(&t.root) {
        None => rows.push(na(
            Item::Cmdline,
            "kernel command line",
            "no /boot/firmware/cmdline.txt (not a Raspberry Pi boot partition)".into(),
            wanted_text.clone(),
            Effect::Reboot,
        )),
        Some(path) => {
            let bytes = t.root.read(path).ok().flatten().unwrap_or_default();
            match cmdline::line(&bytes) {
                Err(e) => rows.push(row(
                    Item::Cmdline,
                    "kernel command line",
                    false,
                    format!("{path}: {e}"),
                    wanted_text.clone(),
                    "repair the file by hand (one line of parameters), then run setup --apply",
                    Effect::Reboot,
                )),
                Ok(line) => {
                    let mut current = Vec::new();
                    let mut ok = cpus_err.is_none();
                    for (k, want) in &wanted_params {
                        let vals = cmdline::values(line, k);
                        let parse = |v: &str| {
                            if *k == "isolcpus" {
                                CpuList::parse_isolcpus(v)
                            } else {
                                CpuList::parse(v).ok()
                            }
                        };
                        let good = vals.len() == 1 && parse(&vals[0]) == CpuList::parse(want).ok();
                        ok &= good;
                        current.push(if vals.is_empty() {
                            format!("{k} unset")
                        } else {
                            format!("{k}={}", vals.join(","))
                        });
                    }
                    cmdline_ok = ok;
                    rows.push(row(
                        Item::Cmdline,
                        "kernel command line",
                        ok,
                        format!("{path}: {}", current.join(" ")),
                        wanted_text.clone(),
                        &apply_fix(t, ", then reboot"),
                        Effect::Reboot,
                    ));
                }
            }
        }
    }
    if live {
        let iso = live::isolated_cpus();
        let nohz = live::nohz_full_cpus();
        let ok = cpus_err.is_none() && iso == t.isolated && nohz == t.isolated;
        let show = |l: &CpuList| {
            if l.is_empty() {
                "none".to_string()
            } else {
                l.to_string()
            }
        };
        let fix = if cpus_err.is_some() {
            apply_fix(t, "")
        } else if cmdline_ok {
            "reboot (the command line already has it)".to_string()
        } else if plan::cmdline_path(&t.root).is_none() {
            format!("add {wanted_text} to the boot loader's kernel command line, then reboot")
        } else {
            format!("{APPLY}, then reboot")
        };
        rows.push(row(
            Item::Cmdline,
            "isolated CPUs (running)",
            ok,
            format!(
                "isolated {}, nohz_full {} of CPUs {}",
                show(&iso),
                show(&nohz),
                CpuList::first(t.ncpus)
            ),
            format!("isolated and nohz_full {}", t.isolated),
            &fix,
            Effect::Reboot,
        ));
    }
}

/// The sysctl settings, in `sysctl.d` (at boot) and on the running system.
fn sysctl_rows(t: &Target, rows: &mut Vec<Row>) {
    let live = t.root.is_live();
    let wanted = plan::sysctl_wanted(t.kernel);
    let wanted_text = wanted
        .iter()
        .map(|w| {
            format!(
                "{} {}{}",
                w.key,
                if w.at_least { ">= " } else { "" },
                w.value
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let satisfied = |w: &plan::SysctlWant, have: &str| {
        if w.at_least {
            matches!((have.parse::<u64>(), w.value.parse::<u64>()), (Ok(h), Ok(v)) if h >= v)
        } else {
            sysctl::same_value(have, &w.value)
        }
    };
    let eff = sysctl::effective(&t.root.sysctl_files());
    let mut bad = Vec::new();
    let mut overridden = Vec::new();
    for w in &wanted {
        match eff.get(w.key) {
            Some(e) if satisfied(w, &e.value) => {}
            Some(e) => {
                bad.push(format!("{} = {} ({})", w.key, e.value, e.source));
                if e.source != plan::SYSCTL_FILE && t.root.exists(plan::SYSCTL_FILE) {
                    overridden.push(format!(
                        "{} sets {} after {}",
                        e.source,
                        w.key,
                        plan::SYSCTL_FILE
                    ));
                }
            }
            None => bad.push(format!("{} unset", w.key)),
        }
    }
    let fix = if overridden.is_empty() {
        APPLY.to_string()
    } else {
        format!("{}: remove it there", overridden.join("; "))
    };
    rows.push(row(
        Item::Sysctl,
        "sysctl at boot (sysctl.d)",
        bad.is_empty(),
        state(&bad, "all set"),
        wanted_text.clone(),
        &fix,
        Effect::Now,
    ));
    if live {
        let bad: Vec<String> = wanted
            .iter()
            .filter_map(|w| {
                let have = live::sysctl(w.key)?;
                (!satisfied(w, &have)).then(|| format!("{} = {}", w.key, have))
            })
            .collect();
        rows.push(row(
            Item::Sysctl,
            "sysctl (running)",
            bad.is_empty(),
            state(&bad, "all set"),
            wanted_text,
            APPLY,
            Effect::Now,
        ));
    }
}

/// The rtprio and memlock limits (pam_limits) of `--user`.
fn limits_row(t: &Target) -> Row {
    match t.user.as_deref() {
        None => row(
            Item::Limits,
            "rtprio/memlock limits",
            false,
            "no user given".into(),
            "rtprio 99, memlock unlimited".into(),
            "pass --user NAME (the account that runs vr-stream)",
            Effect::Login,
        ),
        Some("root") => row(
            Item::Limits,
            "rtprio/memlock limits for root",
            true,
            "root is not limited (CAP_SYS_NICE, CAP_IPC_LOCK)".into(),
            "rtprio 99, memlock unlimited".into(),
            "",
            Effect::Login,
        ),
        Some(user) => {
            let entries: Vec<limits::Entry> = t
                .root
                .limits_files()
                .iter()
                .flat_map(|(p, text)| limits::parse(text, p))
                .collect();
            let (name, groups) = match user.strip_prefix('@') {
                Some(g) => (String::new(), vec![g.to_string()]),
                None => (user.to_string(), t.root.groups_of(user)),
            };
            let mut current = Vec::new();
            let mut sources: Vec<String> = Vec::new();
            let mut ok = true;
            for (item, want) in [("rtprio", Limit::Value(99)), ("memlock", Limit::Unlimited)] {
                let (soft, hard) = limits::effective(&entries, &name, &groups, item);
                let mut shown = Vec::new();
                for v in [soft, hard] {
                    match v {
                        Some((v, src)) => {
                            ok &= v >= want;
                            shown.push(v.to_string());
                            if !sources.contains(&src) {
                                sources.push(src);
                            }
                        }
                        None => {
                            ok = false;
                            shown.push("default".into());
                        }
                    }
                }
                current.push(format!("{item} {}", shown.join("/")));
            }
            let current = if sources.is_empty() {
                format!("{} (soft/hard)", current.join(", "))
            } else {
                format!(
                    "{} (soft/hard; from {})",
                    current.join(", "),
                    sources.join(", ")
                )
            };
            row(
                Item::Limits,
                &format!("rtprio/memlock limits for {user}"),
                ok,
                current,
                "rtprio 99, memlock unlimited (soft and hard)".into(),
                &format!("{APPLY} --user {user}, then log in again"),
                Effect::Login,
            )
        }
    }
}

/// A row about files `--apply` writes (swap, governor, Wi-Fi, service): tuned when it
/// would change nothing.
fn file_row(t: &Target, item: Item, what: &str, done: &str, wanted: &str) -> Row {
    match plan::item_plan(t, item) {
        Ok(p) if p.changes.is_empty() => row(
            item,
            what,
            true,
            done.into(),
            wanted.into(),
            "",
            Effect::Now,
        ),
        Ok(p) => row(
            item,
            what,
            false,
            p.changes
                .iter()
                .map(|c| describe(&c.before, &c.path))
                .collect::<Vec<_>>()
                .join(", "),
            wanted.into(),
            APPLY,
            Effect::Now,
        ),
        Err(e) => row(
            item,
            what,
            false,
            e.to_string(),
            wanted.into(),
            "see the message",
            Effect::Now,
        ),
    }
}

/// Swap: the mechanisms that would enable it at boot, and what is active.
fn swap_rows(t: &Target, rows: &mut Vec<Row>) {
    let live = t.root.is_live();
    let (dphys, rpi_swap, zram) = plan::swap_mechanisms(&t.root);
    let mech: Vec<&str> = [
        (dphys, "dphys-swapfile"),
        (rpi_swap, "rpi-swap"),
        (zram, "zram-generator"),
    ]
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect();
    rows.push(file_row(
        t,
        Item::Swap,
        "swap at boot",
        &if mech.is_empty() {
            "no swap configured".to_string()
        } else {
            format!("{} disabled", mech.join(", "))
        },
        "no swap: dphys-swapfile masked, rpi-swap Mechanism=none, no zram device, no fstab swap",
    ));
    if live {
        let s = live::swaps();
        rows.push(row(
            Item::Swap,
            "swap (running)",
            s.is_empty(),
            if s.is_empty() {
                "none active".into()
            } else {
                format!("active: {}", s.join(", "))
            },
            "none active".into(),
            APPLY,
            Effect::Now,
        ));
    }
}

/// The CPU frequency governor: the boot-time service, and the running governors.
fn governor_rows(t: &Target, rows: &mut Vec<Row>) {
    let live = t.root.is_live();
    rows.push(file_row(
        t,
        Item::Governor,
        "governor at boot",
        "vr-stream-governor.service installed and enabled",
        "vr-stream-governor.service installed and enabled",
    ));
    if live {
        let g = live::governors();
        if g.is_empty() {
            rows.push(na(
                Item::Governor,
                "governor (running)",
                "no cpufreq in /sys (VM or no driver)".into(),
                "performance".into(),
                Effect::Now,
            ));
        } else {
            let bad: Vec<String> = g
                .iter()
                .filter(|(_, v)| v != "performance")
                .map(|(p, v)| format!("{p}: {v}"))
                .collect();
            rows.push(row(
                Item::Governor,
                "governor (running)",
                bad.is_empty(),
                state(&bad, "performance"),
                "performance".into(),
                APPLY,
                Effect::Now,
            ));
        }
    }
}

/// Wi-Fi power save and qdisc: the boot-time service, and each running interface.
fn wifi_rows(t: &Target, rows: &mut Vec<Row>) {
    let live = t.root.is_live();
    let wifi_wanted = if t.root.exists("/etc/NetworkManager") {
        "vr-stream-wifi.service enabled, NetworkManager wifi.powersave = 2"
    } else {
        "vr-stream-wifi.service enabled (no NetworkManager here)"
    };
    rows.push(file_row(
        t,
        Item::Wifi,
        "Wi-Fi at boot",
        wifi_wanted,
        wifi_wanted,
    ));
    if live {
        let ifs = live::wifi_interfaces();
        if ifs.is_empty() {
            rows.push(na(
                Item::Wifi,
                "Wi-Fi (running)",
                "no wireless interface".into(),
                "power save off, fq_codel".into(),
                Effect::Now,
            ));
        } else {
            let mut cur = Vec::new();
            let mut ok = true;
            for i in &ifs {
                let ps = live::wifi_power_save(i);
                let q = live::root_qdisc(i);
                ok &= ps == Some(false) && q.as_deref() == Some("fq_codel");
                cur.push(format!(
                    "{i}: power save {}, qdisc {}",
                    match ps {
                        Some(true) => "on",
                        Some(false) => "off",
                        None => "unknown (no iw?)",
                    },
                    q.as_deref().unwrap_or("unknown")
                ));
            }
            rows.push(row(
                Item::Wifi,
                "Wi-Fi (running)",
                ok,
                cur.join("; "),
                "power save off, fq_codel".into(),
                APPLY,
                Effect::Now,
            ));
        }
    }
}

/// The network and USB IRQs of the running system: none may be on an isolated CPU.
fn irq_row(t: &Target) -> Row {
    let irqs = live::net_usb_irqs();
    let bad: Vec<String> = irqs
        .iter()
        .filter(|i| i.affinity.iter().any(|c| t.isolated.contains(c)))
        .map(|i| format!("{} ({}) on {}", i.irq, i.name, i.affinity))
        .collect();
    row(
        Item::Irq,
        "network/USB IRQs (running)",
        bad.is_empty(),
        state(
            &bad,
            &format!("none on CPUs {} ({} checked)", t.isolated, irqs.len()),
        ),
        format!("on CPUs {}", t.housekeeping()),
        APPLY,
        Effect::Now,
    )
}

/// vr-stream.service: installed (by the package or `--apply`), with its drop-in, enabled.
fn service_row(t: &Target) -> Row {
    let packaged = t.service_packaged();
    let installed = packaged
        || t.root
            .exists(&format!("{}/vr-stream.service", plan::UNIT_DIR));
    let dropin = t.root.read_text(plan::SERVICE_DROPIN);
    let dropin_ok = dropin.as_deref() == Some(t.service_dropin_text().as_str());
    let enabled = t.root.exists(&format!(
        "{}/multi-user.target.wants/vr-stream.service",
        plan::UNIT_DIR
    ));
    let by = if packaged { " (by the package)" } else { "" };
    row(
        Item::Service,
        "vr-stream.service",
        installed && dropin_ok,
        match (installed, dropin.is_some(), dropin_ok, enabled) {
            (false, ..) => "not installed".into(),
            (true, false, ..) => format!("installed{by}, no {} (user, CPUs)", plan::SERVICE_DROPIN),
            (true, true, false, _) => format!(
                "installed{by}, {} differs (user, CPUs)",
                plan::SERVICE_DROPIN
            ),
            (true, true, true, false) => format!(
                "installed{by}, not enabled (set stream.ip in /etc/vr-stream/vr-stream.toml, then systemctl enable --now vr-stream)"
            ),
            (true, true, true, true) => format!("installed{by} and enabled"),
        },
        format!("installed, with {}", plan::SERVICE_DROPIN),
        APPLY,
        Effect::Now,
    )
}

fn describe(before: &crate::rootfs::Node, path: &str) -> String {
    use crate::rootfs::Node;
    match before {
        Node::Missing => format!("{path} missing"),
        _ => format!("{path} differs"),
    }
}

/// The report as a text table: item, status, current, wanted, fix, when it takes effect.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let w = rows.iter().map(|r| r.what.len()).max().unwrap_or(0).max(4);
    out.push_str(&format!(
        "{:<w$}  {:<9}  {}\n",
        "item", "status", "current -> wanted   [fix; takes effect]"
    ));
    for r in rows {
        let status = match r.status {
            Status::Ok => "ok",
            Status::NotTuned => "NOT TUNED",
            Status::NotApplicable => "n/a",
        };
        out.push_str(&format!("{:<w$}  {:<9}  {}\n", r.what, status, r.current));
        if r.status == Status::NotTuned {
            let eff = match r.takes_effect {
                Effect::Now => "at once",
                Effect::Login => "at next login",
                Effect::Reboot => "after a reboot",
            };
            out.push_str(&format!("{:<w$}  {:<9}    wanted: {}\n", "", "", r.wanted));
            out.push_str(&format!(
                "{:<w$}  {:<9}    fix: {} ({eff})\n",
                "", "", r.fix
            ));
        }
    }
    out
}
