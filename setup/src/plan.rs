//! What the tuned system looks like: the target of `setup` ([`Target`]) and the files
//! `--apply` writes for each item ([`plan`]). Reads the root, writes nothing.

use crate::cmdline;
use crate::cpus::CpuList;
use crate::fsx::Content;
use crate::rootfs::{Node, Root};
use crate::sysctl;
use serde::Serialize;

/// The items `setup` tunes, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Item {
    /// `isolcpus= nohz_full= rcu_nocbs= irqaffinity=` in cmdline.txt.
    Cmdline,
    /// sysctl drop-in.
    Sysctl,
    /// rtprio/memlock limits drop-in.
    Limits,
    /// Swap off.
    Swap,
    /// CPU frequency governor `performance`.
    Governor,
    /// Wi-Fi power save off, fq_codel.
    Wifi,
    /// Network/USB interrupts on the housekeeping CPUs.
    Irq,
    /// vr-stream.service installed (by the .deb or here) with its user and CPUs.
    Service,
}

impl Item {
    /// Every item.
    pub const ALL: [Item; 8] = [
        Item::Cmdline,
        Item::Sysctl,
        Item::Limits,
        Item::Swap,
        Item::Governor,
        Item::Wifi,
        Item::Irq,
        Item::Service,
    ];

    /// Short name as on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Item::Cmdline => "cmdline",
            Item::Sysctl => "sysctl",
            Item::Limits => "limits",
            Item::Swap => "swap",
            Item::Governor => "governor",
            Item::Wifi => "wifi",
            Item::Irq => "irq",
            Item::Service => "service",
        }
    }
}

/// The sysctl drop-in `--apply` writes.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/99-vr-stream.conf";
/// The limits drop-in.
pub const LIMITS_FILE: &str = "/etc/security/limits.d/99-vr-stream.conf";
/// NetworkManager drop-in (Wi-Fi power save off).
pub const NM_FILE: &str = "/etc/NetworkManager/conf.d/90-vr-stream-wifi.conf";
/// rpi-swap drop-in (newer Raspberry Pi OS images).
pub const RPI_SWAP_FILE: &str = "/etc/rpi/swap.conf.d/90-vr-stream.conf";
/// zram-generator configuration that defines no zram device.
pub const ZRAM_FILE: &str = "/etc/systemd/zram-generator.conf";
/// dphys-swapfile mask (Raspberry Pi OS Bookworm).
pub const DPHYS_MASK: &str = "/etc/systemd/system/dphys-swapfile.service";
/// Where units go.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where the .deb puts its units (Debian 12 / Raspberry Pi OS Bookworm; later releases
/// read both).
pub const PACKAGE_UNIT_DIRS: [&str; 2] = ["/lib/systemd/system", "/usr/lib/systemd/system"];
/// The drop-in that gives vr-stream.service its user and the housekeeping CPUs.
pub const SERVICE_DROPIN: &str = "/etc/systemd/system/vr-stream.service.d/50-setup.conf";
/// Marker put in front of fstab swap lines that `--apply` comments out.
pub const FSTAB_MARK: &str = "#vr-stream-setup# ";

/// The units under `systemd/`, as (file name, text, enabled by `--apply`).
pub const UNITS: [(&str, &str, bool); 3] = [
    (
        "vr-stream-governor.service",
        include_str!("../../systemd/vr-stream-governor.service"),
        true,
    ),
    (
        "vr-stream-wifi.service",
        include_str!("../../systemd/vr-stream-wifi.service"),
        true,
    ),
    (
        "vr-stream.service",
        include_str!("../../systemd/vr-stream.service"),
        false,
    ),
];

/// Isolated CPUs when none are given: those of vr-stream's realtime stages in its built-in
/// configuration (`config/default.toml`) with `config` (a vr-stream configuration file's
/// text, as given to `vr-stream --config`) over it: `stages.camera.cpu`,
/// `stages.network.cpu`, the list `stages.encode.cpus`, and `stages.detect.cpu` when the
/// detector is SCHED_FIFO (`priority` > 0). With the defaults: 1-3.
///
/// Errors: `config` is not TOML, or a stage key has the wrong type or an unparsable list.
pub fn isolated_from_config(config: Option<&str>) -> Result<CpuList, String> {
    let mut v: toml::Table =
        toml::from_str(include_str!("../../config/default.toml")).expect("default config parses");
    if let Some(text) = config {
        let over: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(toml::Value::Table(st)) = over.get("stages") {
            let base = v
                .entry("stages")
                .or_insert_with(|| toml::Value::Table(Default::default()));
            if let toml::Value::Table(base) = base {
                for (k, o) in st {
                    match (base.get_mut(k), o) {
                        (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                            b.extend(o.clone());
                        }
                        _ => {
                            base.insert(k.clone(), o.clone());
                        }
                    }
                }
            }
        }
    }
    let stage = |name: &str| v.get("stages").and_then(|s| s.get(name));
    let int = |name: &str, key: &str| -> Result<Option<i64>, String> {
        match stage(name).and_then(|s| s.get(key)) {
            None => Ok(None),
            Some(x) => x
                .as_integer()
                .map(Some)
                .ok_or_else(|| format!("stages.{name}.{key} is not an integer")),
        }
    };
    let mut cpus: Vec<u32> = vec![];
    for name in ["camera", "network"] {
        if let Some(c) = int(name, "cpu")? {
            cpus.push(u32::try_from(c).map_err(|_| format!("stages.{name}.cpu = {c}"))?);
        }
    }
    if let Some(list) = stage("encode").and_then(|s| s.get("cpus")) {
        let list = list
            .as_str()
            .ok_or("stages.encode.cpus is not a string (a kernel CPU list)")?;
        let l = CpuList::parse(list).map_err(|e| format!("stages.encode.cpus {list:?}: {e}"))?;
        cpus.extend(l.iter());
    }
    if int("detect", "priority")?.unwrap_or(0) > 0
        && let Some(c) = int("detect", "cpu")?
    {
        cpus.push(u32::try_from(c).map_err(|_| format!("stages.detect.cpu = {c}"))?);
    }
    Ok(CpuList::from_cpus(cpus))
}

/// [`isolated_from_config`] of the built-in configuration.
pub fn default_isolated() -> CpuList {
    isolated_from_config(None).expect("the built-in configuration names its CPUs")
}

/// What `setup` acts on and with which choices.
#[derive(Debug, Clone)]
pub struct Target {
    /// The root file system.
    pub root: Root,
    /// CPUs to isolate for the stages (`--cpus`).
    pub isolated: CpuList,
    /// CPUs of the target machine: the running system's on `/`, else 4 (Raspberry Pi 4/5).
    pub ncpus: u32,
    /// Who gets the realtime limits and runs vr-stream.service (`--user`; `@group` for a
    /// group in the limits file).
    pub user: Option<String>,
    /// What the target kernel offers ([`kernel_features`]).
    pub kernel: KernelFeatures,
}

/// Why nothing can be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// cmdline.txt cannot be edited safely.
    #[error("{path}: {reason}; it was not changed, and nothing else was either")]
    Cmdline {
        /// The file.
        path: String,
        /// Why.
        reason: cmdline::CmdlineError,
    },
    /// A path holds something setup must not replace.
    #[error("{path}: {reason}; nothing was changed")]
    Conflict {
        /// The path.
        path: String,
        /// What is there.
        reason: String,
    },
    /// No user for the limits and the service.
    #[error(
        "no user for the realtime limits: pass --user NAME (the account that runs vr-stream) or run through sudo"
    )]
    NoUser,
    /// Reading the root failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// One file change.
#[derive(Debug, Clone)]
pub struct Change {
    /// The item it belongs to.
    pub item: Item,
    /// Path on the target system.
    pub path: String,
    /// What is there now.
    pub before: Node,
    /// What `--apply` puts there.
    pub after: Content,
}

/// The changes `--apply` would make, and notes on what it leaves alone.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Paths whose content differs from the wanted one.
    pub changes: Vec<Change>,
    /// Things not done and why (no cmdline.txt, no NetworkManager, ...).
    pub notes: Vec<String>,
}

/// A wanted sysctl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlWant {
    /// Key.
    pub key: &'static str,
    /// Value.
    pub value: String,
    /// A larger number also satisfies it (buffer sizes).
    pub at_least: bool,
    /// Why, one line (written as a comment in the drop-in).
    pub why: &'static str,
}

/// Kernel features some sysctls need: setting an algorithm the kernel lacks fails (ENOENT)
/// at boot and live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelFeatures {
    /// BBR congestion control (`tcp_bbr`).
    pub bbr: bool,
    /// The fq qdisc (`sch_fq`).
    pub fq: bool,
}

/// What the root's kernel offers: a module file under `/lib/modules/RELEASE/kernel/` or an
/// entry in `modules.builtin` (the running kernel's release on `/`, any release in another
/// root); on `/` also what is loaded (`tcp_available_congestion_control`, `/sys/module`).
pub fn kernel_features(root: &Root) -> KernelFeatures {
    let releases: Vec<String> = if root.is_live() {
        root.read_text("/proc/sys/kernel/osrelease")
            .map(|r| vec![r.trim().to_string()])
            .unwrap_or_default()
    } else {
        root.list("/lib/modules")
    };
    let has = |dir: &str, module: &str| {
        releases.iter().any(|k| {
            root.list(&format!("/lib/modules/{k}/kernel/{dir}"))
                .iter()
                .any(|m| m.starts_with(&format!("{module}.ko")))
                || root
                    .read_text(&format!("/lib/modules/{k}/modules.builtin"))
                    .is_some_and(|t| t.contains(&format!("/{module}.ko")))
        })
    };
    let mut f = KernelFeatures {
        bbr: has("net/ipv4", "tcp_bbr"),
        fq: has("net/sched", "sch_fq"),
    };
    if root.is_live() {
        f.bbr |= crate::live::sysctl("net.ipv4.tcp_available_congestion_control")
            .is_some_and(|a| a.split_whitespace().any(|x| x == "bbr"));
        f.fq |= root.exists("/sys/module/sch_fq")
            || crate::live::sysctl("net.core.default_qdisc").as_deref() == Some("fq");
    }
    f
}

/// The wanted sysctls; `tcp_congestion_control` and `default_qdisc` only when the kernel
/// has BBR and fq.
pub fn sysctl_wanted(k: KernelFeatures) -> Vec<SysctlWant> {
    let w = |key, value: &str, at_least, why| SysctlWant {
        key,
        value: value.to_string(),
        at_least,
        why,
    };
    let mut v = vec![
        w(
            "net.core.rmem_max",
            "8388608",
            true,
            "receive buffer limit, 8 MiB: RTCP and test receivers take bursts without drops",
        ),
        w(
            "net.core.wmem_max",
            "8388608",
            true,
            "send buffer limit, 8 MiB: an IDR access unit (hundreds of kB) is queued whole",
        ),
        w(
            "net.core.rmem_default",
            "1048576",
            true,
            "default receive buffer, 1 MiB",
        ),
        w(
            "net.core.wmem_default",
            "1048576",
            true,
            "default send buffer, 1 MiB: sendmmsg bursts do not hit EAGAIN",
        ),
    ];
    if k.fq {
        v.push(w("net.core.default_qdisc", "fq", false, "fair queueing with pacing for new interfaces (Wi-Fi gets fq_codel from vr-stream-wifi.service)"));
    }
    if k.bbr {
        v.push(w(
            "net.ipv4.tcp_congestion_control",
            "bbr",
            false,
            "TCP (signalling, --tcp) keeps queues short",
        ));
    }
    v.extend([
        w("kernel.sched_rt_runtime_us", "-1", false, "no RT throttling: an isolated SCHED_FIFO stage is never paused for 50 ms of each second"),
        w("vm.swappiness", "10", false, "keep anonymous memory in RAM"),
        w("vm.stat_interval", "10", false, "vmstat updates every 10 s instead of 1 s: fewer interruptions of the isolated CPUs"),
        w("kernel.timer_migration", "0", false, "timers stay on the CPU that armed them: none migrate onto the isolated CPUs"),
    ]);
    v
}

/// The kernel command line parameters wanted.
pub fn cmdline_wanted(t: &Target) -> Vec<(&'static str, String)> {
    let iso = t.isolated.to_string();
    vec![
        ("isolcpus", iso.clone()),
        ("nohz_full", iso.clone()),
        ("rcu_nocbs", iso),
        ("irqaffinity", t.housekeeping().to_string()),
    ]
}

/// Where the kernel command line file is: `/boot/firmware/cmdline.txt` (Raspberry Pi OS
/// Bookworm and later), else `/boot/cmdline.txt` (older images); `None` when neither exists.
pub fn cmdline_path(root: &Root) -> Option<&'static str> {
    ["/boot/firmware/cmdline.txt", "/boot/cmdline.txt"]
        .into_iter()
        .find(|p| matches!(root.node(p), Ok(Node::File(_))))
}

/// Which swap mechanisms the root has: (dphys-swapfile, rpi-swap, zram-generator).
pub fn swap_mechanisms(root: &Root) -> (bool, bool, bool) {
    let any = |paths: &[&str]| paths.iter().any(|p| root.exists(p));
    let dphys = any(&[
        "/etc/dphys-swapfile",
        "/etc/init.d/dphys-swapfile",
        "/lib/systemd/system/dphys-swapfile.service",
        "/usr/lib/systemd/system/dphys-swapfile.service",
        "/usr/sbin/dphys-swapfile",
        "/sbin/dphys-swapfile",
    ]);
    let rpi_swap = any(&[
        "/etc/rpi/swap.conf",
        "/usr/lib/systemd/system-generators/rpi-swap-generator",
        "/lib/systemd/system-generators/rpi-swap-generator",
    ]);
    let zram = !rpi_swap
        && any(&[
            "/usr/lib/systemd/zram-generator.conf",
            "/usr/lib/systemd/system-generators/zram-generator",
            "/lib/systemd/system-generators/zram-generator",
        ]);
    (dphys, rpi_swap, zram)
}

/// `/etc/fstab` with active swap lines commented out (`None` when it has none).
pub fn fstab_without_swap(text: &str) -> Option<String> {
    let mut changed = false;
    let out: String = text
        .split_inclusive('\n')
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if !l.trim_start().starts_with('#') && f.len() >= 3 && f[2] == "swap" {
                changed = true;
                format!("{FSTAB_MARK}{l}")
            } else {
                l.to_string()
            }
        })
        .collect();
    changed.then_some(out)
}

/// Who runs vr-stream when `--user` is not given: `$SUDO_USER` (not root), else the
/// caller's account name (`root` included).
pub fn default_user() -> Option<String> {
    if let Ok(u) = std::env::var("SUDO_USER")
        && !u.is_empty()
        && u != "root"
    {
        return Some(u);
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

impl Target {
    /// A target for `root`: the running machine's CPU count and kernel features on `/`,
    /// else a 4-core Pi and the root's kernel modules.
    pub fn for_root(root: Root, isolated: CpuList, user: Option<String>) -> Target {
        let live = root.is_live();
        Target {
            ncpus: if live {
                crate::live::possible_cpus()
            } else {
                4
            },
            kernel: kernel_features(&root),
            root,
            isolated,
            user,
        }
    }

    /// CPUs left for the OS, interrupts and the supervisor.
    pub fn housekeeping(&self) -> CpuList {
        self.isolated.complement(self.ncpus)
    }

    /// Checks the isolated set against the machine. Errors name the CPUs and what exists.
    pub fn validate_cpus(&self) -> Result<(), String> {
        if self.isolated.is_empty() {
            return Err("--cpus: the isolated set is empty".into());
        }
        let all = CpuList::first(self.ncpus);
        if !self.isolated.is_subset(&all) {
            return Err(format!(
                "--cpus {}: {} has CPUs {} only",
                self.isolated,
                if self.root.is_live() {
                    "this machine"
                } else {
                    "the target (a Raspberry Pi 4/5)"
                },
                all
            ));
        }
        if self.housekeeping().is_empty() {
            return Err(format!(
                "--cpus {}: at least one CPU must stay for the OS and interrupts",
                self.isolated
            ));
        }
        Ok(())
    }

    /// The user for `User=` (None for a group or no user).
    fn service_user(&self) -> Option<&str> {
        self.user.as_deref().filter(|u| !u.starts_with('@'))
    }

    /// The limits drop-in text.
    pub fn limits_text(&self, user: &str) -> String {
        format!(
            "# Written by vr-stream setup --apply (setup --revert removes it).\n\
             # SCHED_FIFO priorities up to 99 and mlockall() without a limit for the streaming stages.\n\
             {user} - rtprio 99\n{user} - memlock unlimited\n"
        )
    }

    /// The sysctl drop-in text: wanted values, buffer sizes raised to what other files
    /// already set when that is larger.
    pub fn sysctl_text(&self) -> String {
        let others: Vec<(String, String)> = self
            .root
            .sysctl_files()
            .into_iter()
            .filter(|(p, _)| p != SYSCTL_FILE)
            .collect();
        let eff = sysctl::effective(&others);
        let mut s = String::from(
            "# Written by vr-stream setup --apply (setup --revert removes it).\n\
             # Applied at boot by systemd-sysctl; --apply also set these on the running kernel.\n",
        );
        for w in sysctl_wanted(self.kernel) {
            let mut value = w.value.clone();
            if w.at_least
                && let (Some(e), Ok(want)) = (eff.get(w.key), w.value.parse::<u64>())
                && let Ok(have) = e.value.parse::<u64>()
            {
                value = have.max(want).to_string();
            }
            s.push_str(&format!("# {}\n{} = {}\n", w.why, w.key, value));
        }
        s
    }

    /// The text of [`SERVICE_DROPIN`]: `User=` (the account given the realtime limits;
    /// commented out for a group or no user) and `CPUAffinity=` the housekeeping CPUs.
    pub fn service_dropin_text(&self) -> String {
        let user = match self.service_user() {
            Some(u) => format!("User={u}\n"),
            None => {
                "# Set User= to the account that runs vr-stream (else it runs as root).\n#User=pi\n"
                    .into()
            }
        };
        format!(
            "# Written by vr-stream setup --apply (setup --revert removes it).\n\
             # vr-stream.service runs as the account with the realtime limits, on the\n\
             # housekeeping CPUs (its stages pin themselves to the isolated ones).\n\
             [Service]\n{user}CPUAffinity={}\n",
            self.housekeeping().to_spaced()
        )
    }

    /// Whether the .deb installed vr-stream.service ([`PACKAGE_UNIT_DIRS`]).
    pub fn service_packaged(&self) -> bool {
        PACKAGE_UNIT_DIRS
            .iter()
            .any(|d| self.root.exists(&format!("{d}/vr-stream.service")))
    }
}

fn io_err(path: &str) -> impl FnOnce(std::io::Error) -> PlanError + '_ {
    move |source| PlanError::Io {
        path: path.to_string(),
        source,
    }
}

/// The changes `--apply` makes for every item (only the paths whose content differs).
///
/// Errors: [`PlanError`] when a file cannot be edited safely (cmdline.txt with two lines, a
/// directory where a file goes) or no user is known; then nothing may be changed.
pub fn plan(t: &Target) -> Result<Plan, PlanError> {
    let mut p = Plan::default();
    for item in Item::ALL {
        let ip = item_plan(t, item)?;
        p.changes.extend(ip.changes);
        p.notes.extend(ip.notes);
    }
    Ok(p)
}

/// The changes `--apply` makes for one item ([`plan`] for all). [`Item::Irq`] has no
/// files (interrupt affinity is live, plus `irqaffinity=` in [`Item::Cmdline`]).
pub fn item_plan(t: &Target, item: Item) -> Result<Plan, PlanError> {
    let root = &t.root;
    let mut p = Plan::default();
    let want = |path: &str, after: Content, p: &mut Plan| -> Result<(), PlanError> {
        let before = root.node(path).map_err(io_err(path))?;
        let same = match (&before, &after) {
            (Node::File(a), Content::File(b)) => a == b,
            (Node::Symlink(a), Content::Symlink(b)) => a == b,
            (Node::Missing, Content::Absent) => true,
            (Node::Other, _) => {
                return Err(PlanError::Conflict {
                    path: path.into(),
                    reason: "is a directory or special file".into(),
                });
            }
            _ => false,
        };
        if !same {
            p.changes.push(Change {
                item,
                path: path.to_string(),
                before,
                after,
            });
        }
        Ok(())
    };
    match item {
        Item::Cmdline => match cmdline_path(root) {
            Some(path) => {
                let bytes = root.read(path).map_err(io_err(path))?.unwrap_or_default();
                let new = cmdline::set(&bytes, &cmdline_wanted(t))
                    .map_err(|reason| PlanError::Cmdline { path: path.to_string(), reason })?;
                want(path, Content::File(new), &mut p)?;
            }
            None => p.notes.push(
                "no /boot/firmware/cmdline.txt or /boot/cmdline.txt: not a Raspberry Pi boot partition, the kernel command line was left alone (add isolcpus=, nohz_full=, rcu_nocbs=, irqaffinity= to your boot loader yourself)".into(),
            ),
        },
        Item::Sysctl => {
            want(SYSCTL_FILE, Content::File(t.sysctl_text().into_bytes()), &mut p)?;
            if !t.kernel.bbr {
                p.notes.push("the target kernel has no BBR congestion control: tcp_congestion_control left as it is".into());
            }
            if !t.kernel.fq {
                p.notes.push("the target kernel has no fq qdisc (sch_fq): default_qdisc left as it is".into());
            }
        }
        Item::Limits => {
            let user = t.user.as_deref().ok_or(PlanError::NoUser)?;
            want(LIMITS_FILE, Content::File(t.limits_text(user).into_bytes()), &mut p)?;
            if !root.has_account(user) {
                p.notes.push(format!(
                    "{user} has no account in {}/etc/passwd (or /etc/group) yet: the limits apply once it exists",
                    root.base().display()
                ));
            }
        }
        Item::Swap => {
            let (dphys, rpi_swap, zram) = swap_mechanisms(root);
            if dphys {
                want(DPHYS_MASK, Content::Symlink("/dev/null".into()), &mut p)?;
            }
            if rpi_swap {
                want(RPI_SWAP_FILE, Content::File(b"# Written by vr-stream setup --apply: no swap (swap.conf(5)).\n[Main]\nMechanism=none\n".to_vec()), &mut p)?;
            }
            if zram {
                want(ZRAM_FILE, Content::File(b"# Written by vr-stream setup --apply: no [zramN] section, so no zram swap (zram-generator.conf(5)).\n".to_vec()), &mut p)?;
            }
            if let Some(text) = root.read_text("/etc/fstab")
                && let Some(new) = fstab_without_swap(&text) {
                    want("/etc/fstab", Content::File(new.into_bytes()), &mut p)?;
                }
        }
        Item::Governor | Item::Wifi | Item::Service => {
            let (name, template, enable) = UNITS[match item {
                Item::Governor => 0,
                Item::Wifi => 1,
                _ => 2,
            }];
            let path = format!("{UNIT_DIR}/{name}");
            if item == Item::Service {
                // The .deb's unit is used as it is; an installed copy is never overwritten
                // (a user may have edited it).
                if !t.service_packaged() && !root.exists(&path) {
                    want(&path, Content::File(template.as_bytes().to_vec()), &mut p)?;
                }
                want(SERVICE_DROPIN, Content::File(t.service_dropin_text().into_bytes()), &mut p)?;
            } else {
                want(&path, Content::File(template.as_bytes().to_vec()), &mut p)?;
            }
            if enable {
                want(&format!("{UNIT_DIR}/multi-user.target.wants/{name}"), Content::Symlink(path.clone()), &mut p)?;
            }
            if item == Item::Wifi {
                if root.exists("/etc/NetworkManager") {
                    want(NM_FILE, Content::File(b"# Written by vr-stream setup --apply: Wi-Fi power save off (2 = disable).\n[connection]\nwifi.powersave = 2\n".to_vec()), &mut p)?;
                } else {
                    p.notes.push("no /etc/NetworkManager: Wi-Fi power save is turned off by vr-stream-wifi.service only".into());
                }
            }
        }
        Item::Irq => {}
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolated_cpus_follow_the_configuration() {
        assert_eq!(default_isolated().to_string(), "1-3");
        let c = "[stages.encode]\ncpus = \"2-3\"\n[stages.camera]\ncpu = 1\n[stages.network]\ncpu = 1\n";
        assert_eq!(isolated_from_config(Some(c)).unwrap().to_string(), "1-3");
        let c = "[stages.encode]\ncpus = \"3\"\n[stages.camera]\ncpu = 2\n[stages.network]\ncpu = 2\n[stages.detect]\ncpu = 1\npriority = 50\n";
        assert_eq!(isolated_from_config(Some(c)).unwrap().to_string(), "1-3");
        let c =
            "[stages.encode]\ncpus = \"2\"\n[stages.camera]\ncpu = 2\n[stages.network]\ncpu = 2\n";
        assert_eq!(isolated_from_config(Some(c)).unwrap().to_string(), "2");
        assert!(
            isolated_from_config(Some("[stages.encode]\ncpus = 3\n"))
                .unwrap_err()
                .contains("not a string")
        );
        assert!(
            isolated_from_config(Some("[stages.encode]\ncpus = \"x\"\n"))
                .unwrap_err()
                .contains("stages.encode.cpus")
        );
    }
}
