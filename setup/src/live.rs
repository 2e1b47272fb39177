//! The running system: read and change kernel and device state through /proc, /sys and
//! the standard tools (`iw`, `tc`, `swapoff`, `systemctl`). Used only when the root acted
//! on is `/`.

use crate::cpus::CpuList;
use std::io;
use std::process::Command;

/// Reads a sysctl (`net.core.rmem_max`) from /proc/sys; `None` when the kernel lacks it.
pub fn sysctl(key: &str) -> Option<String> {
    std::fs::read_to_string(crate::sysctl::proc_path(key))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Writes a sysctl. Errors: the key does not exist or the value is refused.
pub fn set_sysctl(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(crate::sysctl::proc_path(key), value)
        .map_err(|e| io::Error::new(e.kind(), format!("{key} = {value}: {e}")))
}

/// Whether the system was booted with systemd (`/run/systemd/system` exists, as
/// sd_booted(3) checks); `systemctl` can only talk to it then.
pub fn systemd_booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`), at least 1.
pub fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| CpuList::parse(s.trim()).ok())
        .and_then(|l| l.highest())
        .map(|m| m + 1)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        })
}

/// CPUs the running kernel isolated (`/sys/devices/system/cpu/isolated`).
pub fn isolated_cpus() -> CpuList {
    std::fs::read_to_string("/sys/devices/system/cpu/isolated")
        .ok()
        .and_then(|s| CpuList::parse(s.trim()).ok())
        .unwrap_or_default()
}

/// CPUs in nohz_full mode (`/sys/devices/system/cpu/nohz_full`).
pub fn nohz_full_cpus() -> CpuList {
    std::fs::read_to_string("/sys/devices/system/cpu/nohz_full")
        .ok()
        .and_then(|s| CpuList::parse(s.trim()).ok())
        .unwrap_or_default()
}

/// The running kernel's command line.
pub fn proc_cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Active swap areas (first column of /proc/swaps).
pub fn swaps() -> Vec<String> {
    std::fs::read_to_string("/proc/swaps")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// `(path, governor)` of every cpufreq policy; empty where the kernel has no cpufreq (VMs).
pub fn governors() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir("/sys/devices/system/cpu/cpufreq")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("policy"))
                .filter_map(|e| {
                    let p = e.path().join("scaling_governor");
                    let g = std::fs::read_to_string(&p).ok()?;
                    Some((p.to_string_lossy().into_owned(), g.trim().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Wireless network interfaces (those with `/sys/class/net/X/wireless` or `phy80211`).
pub fn wifi_interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.path().join("wireless").exists() || e.path().join("phy80211").exists()
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs a tool and returns its standard output. Errors: not installed, or non-zero exit
/// (with its standard error).
pub fn run(program: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{program}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Wi-Fi power save state from `iw dev IFACE get power_save` (`Some(true)` = on).
pub fn wifi_power_save(iface: &str) -> Option<bool> {
    let out = run("iw", &["dev", iface, "get", "power_save"]).ok()?;
    if out.contains(": on") {
        Some(true)
    } else if out.contains(": off") {
        Some(false)
    } else {
        None
    }
}

/// The root qdisc kind of an interface (`fq_codel`, `mq`, `noqueue`...), from `tc`.
pub fn root_qdisc(iface: &str) -> Option<String> {
    let out = run("tc", &["qdisc", "show", "dev", iface, "root"]).ok()?;
    out.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
}

/// An interrupt line of /proc/interrupts that serves a network or USB device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irq {
    /// IRQ number.
    pub irq: u32,
    /// Its action names (last columns of /proc/interrupts).
    pub name: String,
    /// `/proc/irq/N/smp_affinity_list`.
    pub affinity: CpuList,
}

/// Whether an interrupt's action names look like a network or USB device: Ethernet, Wi-Fi
/// (the Pi's brcmfmac sits on SDIO `mmc1`), USB host controllers. Pure.
pub fn is_net_or_usb(name: &str) -> bool {
    const PATTERNS: [&str; 10] = [
        "eth", "wlan", "brcmf", "mmc1", "xhci", "ehci", "ohci", "dwc", "usb", "macb",
    ];
    let n = name.to_ascii_lowercase();
    PATTERNS.iter().any(|p| n.contains(p))
}

/// Network and USB interrupts with their affinity.
pub fn net_usb_irqs() -> Vec<Irq> {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    let ncols = text
        .lines()
        .next()
        .map(|l| l.split_whitespace().count())
        .unwrap_or(0);
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let (num, rest) = l.trim_start().split_once(':')?;
            let irq: u32 = num.trim().parse().ok()?;
            // Per-CPU counts, then the chip, hw irq, trigger and the action names.
            let name = rest
                .split_whitespace()
                .skip(ncols)
                .collect::<Vec<_>>()
                .join(" ");
            if !is_net_or_usb(&name) {
                return None;
            }
            let aff = std::fs::read_to_string(format!("/proc/irq/{irq}/smp_affinity_list")).ok()?;
            Some(Irq {
                irq,
                name,
                affinity: CpuList::parse(aff.trim()).ok()?,
            })
        })
        .collect()
}

/// Sets an interrupt's affinity. Errors: the kernel refuses (per-CPU or managed IRQs).
pub fn set_irq_affinity(irq: u32, cpus: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/irq/{irq}/smp_affinity_list"), cpus)
        .map_err(|e| io::Error::new(e.kind(), format!("IRQ {irq} -> CPUs {cpus}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irq_names() {
        assert!(is_net_or_usb("eth0"));
        assert!(is_net_or_usb("xhci-hcd:usb1"));
        assert!(is_net_or_usb("mmc1"));
        assert!(!is_net_or_usb("arch_timer"));
        assert!(!is_net_or_usb("virtio0-input.0"));
    }
}
