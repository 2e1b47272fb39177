//! `setup` against realistic Raspberry Pi OS root trees in temporary directories: check,
//! apply, check again, apply again, revert, compared as whole trees (content, type, mode,
//! owner). Failures half-way (injected, read-only file system, full disk) must leave every
//! file as it was. Runs the real binary.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const STOCK: &str = vr_setup::fixture::STOCK_CMDLINE;
const ADDED: &str = " isolcpus=1-3 nohz_full=1-3 rcu_nocbs=1-3 irqaffinity=0";

fn setup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_setup"))
        .args(args)
        .env_remove("SUDO_USER")
        .output()
        .expect("run setup")
}

fn run(root: &Path, args: &[&str]) -> Output {
    let mut a = vec!["--root", root.to_str().unwrap(), "--user", "pi"];
    a.extend_from_slice(args);
    setup(&a)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed by a signal")
}

fn write(root: &Path, p: &str, content: &[u8]) {
    vr_setup::fixture::write(root, p, content).unwrap();
}

fn read(root: &Path, p: &str) -> String {
    fs::read_to_string(root.join(p.trim_start_matches('/'))).unwrap()
}

/// A Raspberry Pi OS Bookworm root in a temporary directory (`vr_setup::fixture`).
fn pi_root(cmdline: Option<&[u8]>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    vr_setup::fixture::pi_root(d.path(), cmdline).unwrap();
    d
}

/// Every path under `root`: type, mode, owner and content (or link target).
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let head = format!("{:o} {}:{}", m.mode(), m.uid(), m.gid());
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link {head} -> {}", fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, format!("dir {head}"));
                walk(base, &p, out);
            } else {
                out.insert(
                    rel,
                    format!(
                        "file {head} {:?}",
                        String::from_utf8_lossy(&fs::read(&p).unwrap())
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn assert_same_tree(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &str,
) {
    if before != after {
        let mut diff = String::new();
        for (k, v) in before {
            match after.get(k) {
                None => diff.push_str(&format!("  missing now: {k}\n")),
                Some(w) if w != v => {
                    diff.push_str(&format!("  changed: {k}\n    was {v}\n    now {w}\n"))
                }
                _ => {}
            }
        }
        for k in after.keys().filter(|k| !before.contains_key(*k)) {
            diff.push_str(&format!("  new: {k} {}\n", after[k]));
        }
        panic!("{what}: trees differ:\n{diff}");
    }
}

/// check (not tuned) -> apply -> check (tuned) -> apply (no change) -> revert (identical
/// tree) -> revert (harmless). Returns the applied tree.
fn cycle(root: &Path) -> BTreeMap<String, String> {
    let original = tree(root);
    let o = run(root, &["--check"]);
    assert_eq!(code(&o), 1, "fresh root is not tuned:\n{}", text(&o));
    assert!(text(&o).contains("NOT TUNED"));

    let o = run(root, &["--apply"]);
    assert_eq!(code(&o), 0, "apply:\n{}", text(&o));
    let applied = tree(root);
    assert!(!text(&o).contains("nothing to change"));

    let o = run(root, &["--check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("check --json is JSON");
    assert_eq!(
        code(&o),
        0,
        "tuned after apply:\n{}",
        serde_json::to_string_pretty(&v).unwrap()
    );
    assert_eq!(v["tuned"], true);
    for r in v["rows"].as_array().unwrap() {
        assert_ne!(r["status"], "not-tuned", "{r}");
    }

    let o = run(root, &["--apply"]);
    assert_eq!(code(&o), 0);
    assert!(
        text(&o).contains("nothing to change"),
        "second apply:\n{}",
        text(&o)
    );
    assert_same_tree(&applied, &tree(root), "second --apply");

    let o = run(root, &["--revert"]);
    assert_eq!(code(&o), 0, "revert:\n{}", text(&o));
    assert_same_tree(&original, &tree(root), "--revert");

    let o = run(root, &["--revert"]);
    assert_eq!(code(&o), 0, "second revert:\n{}", text(&o));
    assert!(text(&o).contains("nothing to revert"), "{}", text(&o));
    assert_same_tree(&original, &tree(root), "second --revert");
    applied
}

#[test]
fn stock_bookworm_full_cycle() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    // vfat shows every file as 0755: the mode must survive; and so must an owner other
    // than the one running setup (the tree comparison includes uid:gid).
    fs::set_permissions(
        r.join("boot/firmware/cmdline.txt"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    if nix_is_root() {
        std::os::unix::fs::chown(r.join("boot/firmware/cmdline.txt"), Some(1000), Some(1000))
            .unwrap();
        std::os::unix::fs::chown(r.join("etc/fstab"), Some(0), Some(4)).unwrap();
    }
    let original = tree(r);
    let applied = cycle(r);
    // What the applied tree held.
    let c = &applied["boot/firmware/cmdline.txt"];
    assert!(c.starts_with("file 100755 "), "{c}");
    if nix_is_root() {
        assert!(c.starts_with("file 100755 1000:1000 "), "owner kept: {c}");
    }
    let want = format!("{}{ADDED}\n", STOCK.trim_end());
    assert!(c.ends_with(&format!("{want:?}")), "{c}\nwant {want:?}");
    for p in [
        "etc/sysctl.d/99-vr-stream.conf",
        "etc/security/limits.d/99-vr-stream.conf",
        "etc/systemd/system/vr-stream.service",
        "etc/systemd/system/vr-stream.service.d/50-setup.conf",
        "etc/systemd/system/vr-stream-governor.service",
        "etc/systemd/system/vr-stream-wifi.service",
        "etc/NetworkManager/conf.d/90-vr-stream-wifi.conf",
        "var/lib/vr-stream/setup/state.toml",
        "var/lib/vr-stream/setup/backup/boot/firmware/cmdline.txt",
    ] {
        assert!(applied.contains_key(p), "{p} written");
    }
    assert!(applied["etc/systemd/system/dphys-swapfile.service"].ends_with("-> /dev/null"));
    assert!(
        applied["etc/systemd/system/multi-user.target.wants/vr-stream-governor.service"]
            .ends_with("-> /etc/systemd/system/vr-stream-governor.service")
    );
    assert!(
        !applied.contains_key("etc/systemd/system/multi-user.target.wants/vr-stream.service"),
        "service is not enabled"
    );
    let unit = &applied["etc/systemd/system/vr-stream.service"];
    assert!(
        unit.contains("ExecStart=vr-stream --config /etc/vr-stream/vr-stream.toml")
            && unit.contains("LimitRTPRIO=99"),
        "{unit}"
    );
    let dropin = &applied["etc/systemd/system/vr-stream.service.d/50-setup.conf"];
    assert!(
        dropin.contains("[Service]\\nUser=pi\\nCPUAffinity=0\\n"),
        "{dropin}"
    );
    assert!(
        applied["etc/sysctl.d/99-vr-stream.conf"].contains("net.ipv4.tcp_congestion_control = bbr")
    );
    assert!(applied["etc/sysctl.d/99-vr-stream.conf"].contains("kernel.sched_rt_runtime_us = -1"));
    assert!(applied["etc/sysctl.d/99-vr-stream.conf"].contains("net.core.default_qdisc = fq"));
    assert!(
        applied["etc/security/limits.d/99-vr-stream.conf"]
            .contains("pi - rtprio 99\\npi - memlock unlimited")
    );
    assert_same_tree(&original, &tree(r), "after the cycle");
}

/// With the .deb installed (its unit in /lib/systemd/system), `--apply` adds only the
/// drop-in with the user and CPUs, never a second copy of the unit in /etc, and `--check`
/// says the package installed it; `--revert` removes the drop-in and its directory.
#[test]
fn a_packaged_unit_gets_only_the_drop_in() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    write(
        r,
        "/lib/systemd/system/vr-stream.service",
        include_bytes!("../../systemd/vr-stream.service"),
    );
    let o = run(r, &["--check"]);
    assert!(
        text(&o).contains(
            "installed (by the package), no /etc/systemd/system/vr-stream.service.d/50-setup.conf"
        ),
        "{}",
        text(&o)
    );
    let applied = cycle(r);
    assert!(
        !applied.contains_key("etc/systemd/system/vr-stream.service"),
        "no copy of the packaged unit"
    );
    let dropin = &applied["etc/systemd/system/vr-stream.service.d/50-setup.conf"];
    assert!(dropin.contains("User=pi\\nCPUAffinity=0\\n"), "{dropin}");
    assert!(!r.join("etc/systemd/system/vr-stream.service.d").exists());
}

#[test]
fn repository_cmdline_example_is_what_setup_writes() {
    let d = pi_root(Some(STOCK.as_bytes()));
    assert_eq!(code(&run(d.path(), &["--apply"])), 0);
    let example = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cmdline.txt.example"
    ))
    .unwrap();
    assert_eq!(read(d.path(), "/boot/firmware/cmdline.txt"), example);
}

#[test]
fn cmdline_variants_keep_every_other_byte() {
    let cases: [(&str, &[u8], &[u8]); 4] = [
        (
            "existing isolcpus",
            b"console=tty1 root=PARTUUID=x-02 isolcpus=1 rootwait\n",
            b"console=tty1 root=PARTUUID=x-02 isolcpus=1-3 rootwait nohz_full=1-3 rcu_nocbs=1-3 irqaffinity=0\n",
        ),
        (
            "no trailing newline",
            b"console=tty1 root=PARTUUID=x-02 rootwait",
            b"console=tty1 root=PARTUUID=x-02 rootwait isolcpus=1-3 nohz_full=1-3 rcu_nocbs=1-3 irqaffinity=0",
        ),
        (
            "CRLF",
            b"console=tty1 root=PARTUUID=x-02 rootwait\r\n",
            b"console=tty1 root=PARTUUID=x-02 rootwait isolcpus=1-3 nohz_full=1-3 rcu_nocbs=1-3 irqaffinity=0\r\n",
        ),
        (
            "duplicates and flags",
            b"isolcpus=domain,1 quiet nohz_full=1 isolcpus=3 irqaffinity=0-3\n",
            b"isolcpus=1-3 quiet nohz_full=1-3 irqaffinity=0 rcu_nocbs=1-3\n",
        ),
    ];
    for (name, input, want) in cases {
        let d = pi_root(Some(input));
        let r = d.path();
        let original = tree(r);
        let o = run(r, &["--apply"]);
        assert_eq!(code(&o), 0, "{name}: {}", text(&o));
        assert_eq!(
            fs::read(r.join("boot/firmware/cmdline.txt")).unwrap(),
            want,
            "{name}"
        );
        let o = run(r, &["--check"]);
        assert_eq!(code(&o), 0, "{name}: {}", text(&o));
        let o = run(r, &["--revert"]);
        assert_eq!(code(&o), 0, "{name}: {}", text(&o));
        assert_same_tree(&original, &tree(r), name);
    }
}

#[test]
fn unusable_cmdline_is_refused_and_nothing_changes() {
    for (name, input, reason) in [
        (
            "two lines",
            &b"console=tty1 root=/dev/x\nquiet\n"[..],
            "2 non-empty lines",
        ),
        ("empty", &b""[..], "empty"),
        ("blank lines only", &b"\n \n"[..], "empty"),
    ] {
        let d = pi_root(Some(input));
        let r = d.path();
        let original = tree(r);
        let o = run(r, &["--apply"]);
        assert_eq!(code(&o), 2, "{name}: {}", text(&o));
        let msg = text(&o);
        assert!(
            msg.contains("/boot/firmware/cmdline.txt")
                && msg.contains(reason)
                && msg.contains("nothing else"),
            "{name}: {msg}"
        );
        assert!(!msg.contains("panicked"), "{msg}");
        assert_same_tree(&original, &tree(r), name);
        // --check reports it without failing.
        let o = run(r, &["--check"]);
        assert_eq!(code(&o), 1, "{name}: {}", text(&o));
        assert!(text(&o).contains("repair the file by hand"), "{}", text(&o));
    }
}

#[test]
fn older_boot_layout_and_no_boot_partition() {
    // Older images: /boot/cmdline.txt.
    let d = pi_root(None);
    let r = d.path();
    write(r, "/boot/cmdline.txt", STOCK.as_bytes());
    cycle(r);
    let o = run(r, &["--apply"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        read(r, "/boot/cmdline.txt"),
        format!("{}{ADDED}\n", STOCK.trim_end())
    );
    assert_eq!(code(&run(r, &["--revert"])), 0);

    // No boot partition at all (not a Pi): everything else applies, the note says why.
    let d = pi_root(None);
    let r = d.path();
    let o = run(r, &["--apply"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        text(&o).contains("not a Raspberry Pi boot partition"),
        "{}",
        text(&o)
    );
    assert!(!r.join("boot").exists());
    let o = run(r, &["--check"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("n/a"));
    assert_eq!(code(&run(r, &["--revert"])), 0);
}

#[test]
fn user_drop_ins_are_respected() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    write(
        r,
        "/etc/sysctl.d/10-user.conf",
        b"net.core.rmem_max = 16777216\nvm.swappiness=60\n",
    );
    write(
        r,
        "/etc/security/limits.d/10-audio.conf",
        b"@audio - rtprio 95\n@audio - memlock 256000\n",
    );
    let applied = cycle(r);
    let ours = &applied["etc/sysctl.d/99-vr-stream.conf"];
    assert!(
        ours.contains("net.core.rmem_max = 16777216"),
        "a larger buffer set by the user is kept: {ours}"
    );
    assert!(ours.contains("vm.swappiness = 10"), "{ours}");

    // A user file sorting after ours wins at boot: check says so and names it.
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    assert_eq!(code(&run(r, &["--apply"])), 0);
    write(r, "/etc/sysctl.d/99-zz-local.conf", b"vm.swappiness = 60\n");
    let o = run(r, &["--check"]);
    assert_eq!(code(&o), 1);
    assert!(
        text(&o).contains("/etc/sysctl.d/99-zz-local.conf sets vm.swappiness"),
        "{}",
        text(&o)
    );
}

#[test]
fn swap_mechanisms_and_fstab() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    // Newer images: rpi-swap; plus a swap partition in fstab.
    write(r, "/etc/rpi/swap.conf", b"[Main]\nMechanism=auto\n");
    let fstab = read(r, "/etc/fstab") + "/dev/sda3 none swap sw 0 0\n";
    write(r, "/etc/fstab", fstab.as_bytes());
    let applied = cycle(r);
    assert!(applied["etc/rpi/swap.conf.d/90-vr-stream.conf"].contains("Mechanism=none"));
    assert!(
        applied["etc/fstab"].contains("#vr-stream-setup# /dev/sda3 none swap"),
        "{}",
        applied["etc/fstab"]
    );

    // Debian's zram-generator.
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    write(
        r,
        "/usr/lib/systemd/zram-generator.conf",
        b"[zram0]\nzram-size = ram / 2\n",
    );
    let applied = cycle(r);
    assert!(applied.contains_key("etc/systemd/zram-generator.conf"));
}

#[test]
fn dry_run_prints_diffs_and_changes_nothing() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    let original = tree(r);
    let o = run(r, &["--dry-run"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("--- a/boot/firmware/cmdline.txt")
            && out.contains("+++ b/boot/firmware/cmdline.txt"),
        "{out}"
    );
    assert!(
        out.contains(&format!("+{}{ADDED}", STOCK.trim_end())),
        "{out}"
    );
    assert!(
        out.contains("+++ b/etc/sysctl.d/99-vr-stream.conf"),
        "{out}"
    );
    assert!(
        out.contains("/etc/systemd/system/dphys-swapfile.service: missing => symlink -> /dev/null"),
        "{out}"
    );
    assert_same_tree(&original, &tree(r), "--dry-run");

    assert_eq!(code(&run(r, &["--apply"])), 0);
    let applied = tree(r);
    let o = run(r, &["--revert", "--dry-run"]);
    assert_eq!(code(&o), 0);
    assert!(
        text(&o).contains(&format!("-{}{ADDED}", STOCK.trim_end())),
        "{}",
        text(&o)
    );
    assert_same_tree(&applied, &tree(r), "--revert --dry-run");
}

#[test]
fn injected_failure_at_every_step_leaves_every_file() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    let original = tree(r);
    // The transaction of a first --apply has backups, the manifest, then the files; fail
    // each one in turn: before it changes its target (AT), and once its target is in place
    // (AFTER, as a failed fsync of the directory would).
    for var in ["VR_SETUP_FAULT_AT", "VR_SETUP_FAULT_AFTER"] {
        let mut failed = 0;
        for n in 0..40 {
            let o = Command::new(env!("CARGO_BIN_EXE_setup"))
                .args(["--root", r.to_str().unwrap(), "--user", "pi", "--apply"])
                .env(var, n.to_string())
                .output()
                .unwrap();
            if code(&o) == 0 {
                // n is past the last operation: the apply went through.
                assert!(
                    n > 5,
                    "at least the manifest and several files: failed only {n} times"
                );
                break;
            }
            failed += 1;
            assert_eq!(code(&o), 2, "{}", text(&o));
            let msg = text(&o);
            assert!(
                msg.contains("injected fault") && msg.contains("every file was left as it was"),
                "{msg}"
            );
            assert_same_tree(&original, &tree(r), &format!("{var}={n}"));
        }
        assert!(failed > 5, "{var}");
        assert_eq!(code(&run(r, &["--revert"])), 0);
        assert_same_tree(&original, &tree(r), &format!("revert after {var}"));
    }
}

#[test]
fn revert_keeps_files_changed_since_apply() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    let original = tree(r);
    assert_eq!(code(&run(r, &["--apply"])), 0);
    // The user edits two of the files afterwards.
    write(r, "/etc/sysctl.d/99-vr-stream.conf", b"vm.swappiness = 1\n");
    let edited_service = read(r, "/etc/systemd/system/vr-stream.service")
        .replace("RestartSec=2s", "RestartSec=2s\n# 10.0.0.7");
    write(
        r,
        "/etc/systemd/system/vr-stream.service",
        edited_service.as_bytes(),
    );
    let o = run(r, &["--revert"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o)
            .contains("/etc/sysctl.d/99-vr-stream.conf was changed since --apply: left as it is"),
        "{}",
        text(&o)
    );
    assert_eq!(
        read(r, "/etc/sysctl.d/99-vr-stream.conf"),
        "vm.swappiness = 1\n"
    );
    assert!(read(r, "/etc/systemd/system/vr-stream.service").contains("10.0.0.7"));
    assert_eq!(
        read(r, "/boot/firmware/cmdline.txt"),
        STOCK,
        "the rest is reverted"
    );
    // A second --apply does not overwrite the user's service either.
    let o = run(r, &["--apply"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(read(r, "/etc/systemd/system/vr-stream.service").contains("10.0.0.7"));
    // Once the user removes their files, revert finishes and the tree is the original.
    fs::remove_file(r.join("etc/sysctl.d/99-vr-stream.conf")).unwrap();
    fs::remove_file(r.join("etc/systemd/system/vr-stream.service")).unwrap();
    let o = run(r, &["--apply"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = run(r, &["--revert"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_same_tree(&original, &tree(r), "final revert");
}

#[test]
fn reapply_with_other_cpus_keeps_the_first_backup() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    let original = tree(r);
    assert_eq!(code(&run(r, &["--apply"])), 0);
    let o = run(r, &["--apply", "--cpus", "3"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        read(r, "/boot/firmware/cmdline.txt"),
        format!(
            "{} isolcpus=3 nohz_full=3 rcu_nocbs=3 irqaffinity=0-2\n",
            STOCK.trim_end()
        )
    );
    assert_eq!(
        read(
            r,
            "/var/lib/vr-stream/setup/backup/boot/firmware/cmdline.txt"
        ),
        STOCK
    );
    assert_eq!(code(&run(r, &["--check", "--cpus", "3"])), 0);
    assert_eq!(
        code(&run(r, &["--check"])),
        1,
        "1-3 is no longer what is applied"
    );
    assert_eq!(code(&run(r, &["--revert"])), 0);
    assert_same_tree(&original, &tree(r), "revert");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    let original = tree(r);
    for (args, expect) in [
        (
            vec!["--apply", "--cpus", "0-3"],
            "at least one CPU must stay",
        ),
        (vec!["--apply", "--cpus", "7"], "has CPUs 0-3 only"),
        (vec!["--apply", "--cpus", "two"], "--cpus: CPU list 'two'"),
        (
            vec!["--check", "--dry-run"],
            "--dry-run goes with --apply or --revert",
        ),
        (vec!["--apply", "--revert"], "cannot be used with"),
    ] {
        let o = run(r, &args);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o));
        assert!(text(&o).contains(expect), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"));
    }
    let o = setup(&[
        "--root",
        r.to_str().unwrap(),
        "--apply",
        "--user",
        "Bad User",
    ]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o).contains("--user 'Bad User': not a user name"),
        "{}",
        text(&o)
    );
    let o = setup(&["--root", "/nonexistent/root", "--check"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o).contains("--root /nonexistent/root"),
        "{}",
        text(&o)
    );
    // No user known (no --user, no SUDO_USER, running as root) for --apply on a tree.
    if nix_is_root() {
        let o = setup(&["--root", r.to_str().unwrap(), "--apply"]);
        assert_eq!(code(&o), 2, "{}", text(&o));
        assert!(text(&o).contains("pass --user NAME"), "{}", text(&o));
    }
    assert_same_tree(&original, &tree(r), "after bad arguments");
}

fn nix_is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn check_on_this_machine_reports_honestly() {
    // The live root: no Raspberry Pi here. It must report, not crash, and its exit status
    // must agree with its JSON.
    let o = setup(&["--check", "--user", "nobody"]);
    let c = code(&o);
    assert!(c == 0 || c == 1, "{}", text(&o));
    assert!(text(&o).contains("isolated CPUs (running)"), "{}", text(&o));
    let o = setup(&["--check", "--json", "--user", "nobody"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["tuned"] == true, code(&o) == 0);
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["what"] == "sysctl (running)"));
    for r in rows {
        for k in ["item", "status", "current", "wanted", "fix", "takes_effect"] {
            assert!(r.get(k).is_some(), "{k} in {r}");
        }
    }
}

#[test]
fn apply_on_the_live_root_needs_root() {
    // As an unprivileged user (setpriv from util-linux), --apply on / refuses before
    // touching anything.
    if !nix_is_root() {
        eprintln!("skipped: needs root to drop to another user");
        return;
    }
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_setup"),
            "--apply",
            "--user",
            "nobody",
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("run it as root (sudo setup --apply)"),
        "{}",
        text(&o)
    );
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, opts: &str) -> Option<Mount> {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs", at.to_str().unwrap()])
            .status()
            .ok()?
            .success();
        ok.then(|| Mount(at.to_path_buf()))
    }
    fn remount(&self, opts: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{opts}"), self.0.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(s.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn read_only_file_system_leaves_every_file() {
    let d = pi_root(Some(STOCK.as_bytes()));
    let r = d.path();
    // /etc/security/limits.d on its own file system, then made read-only: the staging of
    // the limits drop-in fails after other files were staged.
    let Some(m) = Mount::tmpfs(&r.join("etc/security/limits.d"), "mode=755,size=1m") else {
        eprintln!("skipped: cannot mount tmpfs (needs root)");
        return;
    };
    write(
        r,
        "/etc/security/limits.d/10-audio.conf",
        b"@audio - rtprio 95\n",
    );
    m.remount("ro");
    let original = tree(r);
    let o = run(r, &["--apply"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("/etc/security/limits.d/99-vr-stream.conf")
            && msg.contains("Read-only file system"),
        "{msg}"
    );
    assert_same_tree(&original, &tree(r), "read-only");
    drop(m);
}

#[test]
fn full_disk_leaves_every_file() {
    let base = tempfile::tempdir().unwrap();
    let r = base.path().join("root");
    let Some(m) = Mount::tmpfs(&r, "mode=755,size=256k") else {
        eprintln!("skipped: cannot mount tmpfs (needs root)");
        return;
    };
    let src = pi_root(Some(STOCK.as_bytes()));
    let s = Command::new("cp")
        .args([
            "-a",
            &format!("{}/.", src.path().display()),
            r.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(s.success());
    // Fill the file system.
    let mut f = fs::File::create(r.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        use std::io::Write;
        if f.write_all(&chunk).is_err() || f.sync_all().is_err() {
            break;
        }
    }
    drop(f);
    let original = tree(&r);
    let o = run(&r, &["--apply"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("No space left on device") && msg.contains("every file was left as it was"),
        "{msg}"
    );
    assert_same_tree(&original, &tree(&r), "full disk");
    drop(m);
}
