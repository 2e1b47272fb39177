//! Readers of /proc and /sys for the dashboard (per-CPU times, interfaces, temperature,
//! Raspberry Pi throttling). Everything returns "nothing" rather than failing where a file
//! does not exist (a VM has no thermal zone, a PC no get_throttled).

use crate::model::IfaceView;

/// Whether process `pid` exists (kill(pid, 0)).
pub fn pid_alive(pid: u32) -> bool {
    pid != 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// (cpu, total jiffies, idle + iowait jiffies) per CPU from /proc/stat (procfs).
pub fn cpu_times() -> Vec<(u32, u64, u64)> {
    use procfs::CurrentSI;
    let Ok(ks) = procfs::KernelStats::current() else {
        return Vec::new();
    };
    ks.cpu_time
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let idle = c.idle + c.iowait.unwrap_or(0);
            let total = c.user
                + c.nice
                + c.system
                + idle
                + c.irq.unwrap_or(0)
                + c.softirq.unwrap_or(0)
                + c.steal.unwrap_or(0);
            (i as u32, total, idle)
        })
        .collect()
}

/// CPUs isolated by the running kernel.
pub fn isolated() -> Vec<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/isolated")
        .ok()
        .and_then(|s| vr_setup::cpus::CpuList::parse(s.trim()).ok())
        .map(|l| l.iter().collect())
        .unwrap_or_default()
}

fn stat(iface: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/{name}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Every network interface with its totals (/sys/class/net/IF/statistics), sorted by name.
pub fn interfaces() -> Vec<IfaceView> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|n| IfaceView {
            rx_bytes: stat(&n, "rx_bytes"),
            tx_bytes: stat(&n, "tx_bytes"),
            rx_packets: stat(&n, "rx_packets"),
            tx_packets: stat(&n, "tx_packets"),
            errors: stat(&n, "rx_errors") + stat(&n, "tx_errors"),
            dropped: stat(&n, "rx_dropped") + stat(&n, "tx_dropped"),
            name: n,
            ..Default::default()
        })
        .collect()
}

/// The interface of the route to `destination` (`ADDR:PORT` or `[V6]:PORT`).
pub fn route_interface(destination: &str) -> Option<String> {
    let dest: std::net::SocketAddr = destination.parse().ok()?;
    let src = vr_sys::net::route_source(dest)?;
    vr_sys::net::interface_of(src)
}

/// SoC temperature, °C: the thermal zone whose type mentions "cpu" or "soc" (the Pi's is
/// `cpu-thermal`), else the first one.
pub fn temperature_c() -> Option<f64> {
    let mut zones: Vec<(String, f64)> = std::fs::read_dir("/sys/class/thermal")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .filter_map(|e| {
            let t = std::fs::read_to_string(e.path().join("temp"))
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()?;
            let kind = std::fs::read_to_string(e.path().join("type")).unwrap_or_default();
            Some((kind.trim().to_string(), t / 1000.0))
        })
        .collect();
    zones.sort_by(|a, b| a.0.cmp(&b.0));
    zones
        .iter()
        .find(|(k, _)| k.contains("cpu") || k.contains("soc"))
        .or(zones.first())
        .map(|z| z.1)
}

/// Where the Raspberry Pi firmware's throttling flags come from.
#[derive(Debug, Clone)]
pub enum ThrottledSource {
    /// The firmware driver's sysfs file.
    Sysfs(&'static str),
    /// `vcgencmd get_throttled`.
    Vcgencmd,
    /// Not a Pi.
    None,
}

const THROTTLED_SYSFS: &str = "/sys/devices/platform/soc/soc:firmware/get_throttled";

impl ThrottledSource {
    /// Finds the source once, at start.
    pub fn detect() -> ThrottledSource {
        if std::path::Path::new(THROTTLED_SYSFS).exists() {
            ThrottledSource::Sysfs(THROTTLED_SYSFS)
        } else if std::process::Command::new("vcgencmd")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            ThrottledSource::Vcgencmd
        } else {
            ThrottledSource::None
        }
    }

    /// The decoded flags now; None when not a Pi.
    pub fn read(&self) -> Option<String> {
        let raw = match self {
            ThrottledSource::Sysfs(p) => std::fs::read_to_string(p).ok()?,
            ThrottledSource::Vcgencmd => {
                let o = std::process::Command::new("vcgencmd")
                    .arg("get_throttled")
                    .output()
                    .ok()?;
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .trim_start_matches("throttled=")
                    .to_string()
            }
            ThrottledSource::None => return None,
        };
        let v = u32::from_str_radix(raw.trim().trim_start_matches("0x"), 16).ok()?;
        Some(decode_throttled(v))
    }
}

/// Decodes get_throttled bits (Raspberry Pi documentation, "vcgencmd get_throttled"):
/// 0 under-voltage, 1 ARM frequency capped, 2 throttled, 3 soft temperature limit; bits
/// 16-19 the same "has occurred since boot". Pure.
pub fn decode_throttled(v: u32) -> String {
    const NAMES: [&str; 4] = [
        "under-voltage",
        "frequency capped",
        "throttled",
        "soft temperature limit",
    ];
    let now: Vec<&str> = (0..4)
        .filter(|b| v & (1 << b) != 0)
        .map(|b| NAMES[b])
        .collect();
    let past: Vec<&str> = (0..4)
        .filter(|b| v & (1 << (b + 16)) != 0)
        .map(|b| NAMES[b])
        .collect();
    match (now.is_empty(), past.is_empty()) {
        (true, true) => "ok".into(),
        (false, _) => format!("NOW: {}", now.join(", ")),
        (true, false) => format!("earlier: {}", past.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_bits() {
        assert_eq!(decode_throttled(0), "ok");
        assert_eq!(decode_throttled(0x50005), "NOW: under-voltage, throttled");
        assert_eq!(decode_throttled(0x80000), "earlier: soft temperature limit");
    }

    #[test]
    fn this_machine_reads_without_failing() {
        assert!(!cpu_times().is_empty());
        assert!(interfaces().iter().any(|i| i.name == "lo"));
        assert_eq!(route_interface("127.0.0.1:5004").as_deref(), Some("lo"));
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
    }
}
