//! Raspberry Pi OS root trees for tests (of `setup` and of `quick-bench`, which report the
//! same checks): the files `setup` looks at, as a stock Raspberry Pi OS Bookworm image has
//! them. Writes under a directory the caller owns.

use std::io;
use std::path::Path;

/// The stock Raspberry Pi OS Bookworm kernel command line (cmdline.txt, with its newline).
pub const STOCK_CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet splash plymouth.ignore-udev\n";

/// Writes `content` to `p` (a path on the target system) under `root`, creating directories.
pub fn write(root: &Path, p: &str, content: &[u8]) -> io::Result<()> {
    let f = root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(f.parent().expect("a file path"))?;
    std::fs::write(f, content)
}

/// Creates the symlink `p` -> `target` under `root`, creating directories.
pub fn symlink(root: &Path, p: &str, target: &str) -> io::Result<()> {
    let f = root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(f.parent().expect("a file path"))?;
    std::os::unix::fs::symlink(target, f)
}

/// Populates `root` as a Raspberry Pi OS Bookworm image: `cmdline` as
/// `/boot/firmware/cmdline.txt` (none: no boot partition), user `pi` in group `audio`,
/// Debian's sysctl.conf symlink, limits.conf, dphys-swapfile, NetworkManager, an enabled
/// ssh unit, an fstab without swap, a kernel with `tcp_bbr` and `sch_fq` modules.
pub fn pi_root(root: &Path, cmdline: Option<&[u8]>) -> io::Result<()> {
    let r = root;
    if let Some(c) = cmdline {
        write(r, "/boot/firmware/cmdline.txt", c)?;
        write(
            r,
            "/boot/firmware/config.txt",
            b"[all]\ndtoverlay=vc4-kms-v3d\n",
        )?;
    }
    write(
        r,
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
    )?;
    write(r, "/etc/group", b"root:x:0:\naudio:x:29:pi\npi:x:1000:\n")?;
    write(r, "/etc/sysctl.conf", b"# /etc/sysctl.conf - Configuration file for setting system variables\n#net.ipv4.ip_forward=1\n")?;
    symlink(r, "/etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")?;
    write(
        r,
        "/etc/sysctl.d/98-rpi.conf",
        b"kernel.printk = 3 4 1 3\nvm.min_free_kbytes = 16384\n",
    )?;
    write(
        r,
        "/etc/security/limits.conf",
        b"# /etc/security/limits.conf\n#*               soft    core            0\n",
    )?;
    std::fs::create_dir_all(r.join("etc/security/limits.d"))?;
    write(r, "/etc/dphys-swapfile", b"CONF_SWAPSIZE=512\n")?;
    write(
        r,
        "/lib/systemd/system/dphys-swapfile.service",
        b"[Unit]\nDescription=dphys-swapfile\n",
    )?;
    write(
        r,
        "/etc/NetworkManager/NetworkManager.conf",
        b"[main]\nplugins=ifupdown,keyfile\n",
    )?;
    symlink(
        r,
        "/etc/systemd/system/multi-user.target.wants/ssh.service",
        "/lib/systemd/system/ssh.service",
    )?;
    write(r, "/etc/fstab", b"proc            /proc           proc    defaults          0       0\nPARTUUID=4e639091-01  /boot/firmware  vfat    defaults          0       2\nPARTUUID=4e639091-02  /               ext4    defaults,noatime  0       1\n")?;
    write(
        r,
        "/lib/modules/6.6.51+rpt-rpi-2712/kernel/net/ipv4/tcp_bbr.ko.xz",
        b"\xfd7zXZ",
    )?;
    write(
        r,
        "/lib/modules/6.6.51+rpt-rpi-2712/kernel/net/sched/sch_fq.ko.xz",
        b"\xfd7zXZ",
    )?;
    std::fs::create_dir_all(r.join("var/lib"))?;
    Ok(())
}
