//! `setup`: check, apply or revert the system tuning vr-stream needs on a Raspberry Pi 5.
//!
//! Exit status: `--check` 0 when everything is tuned, 1 when not, 2 on error;
//! `--apply`/`--revert` 0 when done, 1 when files are in place but a live change failed
//! (printed), 2 on error (then no file was changed).
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use vr_setup::apply::{self, Outcome};
use vr_setup::checks;
use vr_setup::cpus::CpuList;
use vr_setup::plan::{self, Target};
use vr_setup::rootfs::Root;

/// Tune this box (or a mounted Raspberry Pi OS image) for vr-stream: isolated CPUs,
/// sysctl, realtime limits, swap, CPU governor, Wi-Fi, IRQ affinity and systemd units.
#[derive(Parser, Debug)]
#[command(name = "setup", version, about)]
struct Cli {
    /// Report what is tuned and what is not (the default; changes nothing).
    #[arg(long, group = "mode")]
    check: bool,
    /// Make every change (keeps backups of the files it replaces; idempotent).
    #[arg(long, group = "mode")]
    apply: bool,
    /// Undo what --apply did: restore the backups byte for byte, remove the files it created.
    #[arg(long, group = "mode")]
    revert: bool,
    /// With --apply (the default) or --revert: print the diff of every file it would change
    /// and the live changes, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Act on another root file system (a test tree, a mounted SD card image); live
    /// changes and live checks happen only when this is /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// CPUs to isolate for the stages (kernel CPU list). Default: those of vr-stream's
    /// realtime stages (stages.camera.cpu, stages.network.cpu, stages.encode.cpus, and
    /// stages.detect.cpu when its priority is above 0) in its built-in configuration (1-3)
    /// with --config over it.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
    /// vr-stream's configuration file (as given to `vr-stream --config`): the isolated CPUs,
    /// nohz_full, rcu_nocbs and irqaffinity follow its stages section.
    #[arg(long, value_name = "FILE", conflicts_with = "cpus")]
    config: Option<PathBuf>,
    /// Account that runs vr-stream (gets rtprio 99 / memlock unlimited, User= of
    /// vr-stream.service); @group for a group. Default: $SUDO_USER, else the caller.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

fn valid_user(u: &str) -> bool {
    let name = u.strip_prefix('@').unwrap_or(u);
    let name = name.strip_suffix('$').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}

fn target(cli: &Cli) -> Result<Target, String> {
    let root = Root::new(&cli.root).map_err(|e| format!("--root {}: {e}", cli.root.display()))?;
    let isolated = match &cli.cpus {
        Some(s) => CpuList::parse(s).map_err(|e| format!("--cpus: {e}"))?,
        None => {
            let text = match &cli.config {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .map_err(|e| format!("--config {}: {e}", p.display()))?,
                ),
                None => None,
            };
            plan::isolated_from_config(text.as_deref()).map_err(|e| match &cli.config {
                Some(p) => format!("--config {}: {e}", p.display()),
                None => e,
            })?
        }
    };
    let user = match &cli.user {
        Some(u) if !valid_user(u) => {
            return Err(format!(
                "--user '{u}': not a user name (allowed: lower-case letters, digits, _ . -, starting with a letter or _; @name for a group)"
            ));
        }
        Some(u) => Some(u.clone()),
        // As root without sudo: no default (root needs no limits; say who runs vr-stream).
        None => plan::default_user().filter(|u| u != "root"),
    };
    Ok(Target::for_root(root, isolated, user))
}

fn print_outcome(cli: &Cli, verb: &str, t: &Target, o: &Outcome) {
    if cli.json {
        let v = serde_json::json!({
            "mode": verb,
            "root": t.root.base(),
            "dry_run": cli.dry_run,
            "changed": o.files,
            "live": o.live,
            "notes": o.notes,
            "warnings": o.warnings,
            "reboot_needed": o.reboot,
            "diff": o.diff,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    let would = match (cli.dry_run, verb) {
        (true, "revert") => "would revert",
        (true, _) => "would change",
        (false, "revert") => "reverted",
        (false, _) => "changed",
    };
    println!(
        "setup --{verb}{} on {} (isolated CPUs {}, user {})",
        if cli.dry_run { " --dry-run" } else { "" },
        t.root.base().display(),
        t.isolated,
        t.user.as_deref().unwrap_or("-")
    );
    if cli.dry_run {
        print!("{}", o.diff);
    }
    if o.nothing() {
        println!(
            "nothing to change: {}",
            if verb == "apply" {
                "everything is already applied"
            } else {
                "nothing left to revert"
            }
        );
    }
    for f in &o.files {
        println!("{would}: {f}");
    }
    for l in &o.live {
        println!(
            "{} live: {l}",
            if cli.dry_run { "would set" } else { "set" }
        );
    }
    for n in &o.notes {
        println!("note: {n}");
    }
    for w in &o.warnings {
        eprintln!("warning: {w}");
    }
    if o.reboot && !cli.dry_run {
        println!("reboot to make the kernel command line take effect (sudo reboot)");
    }
}

fn fail(cli: &Cli, msg: &str) -> ExitCode {
    if cli.json {
        println!("{}", serde_json::json!({ "error": msg }));
    }
    eprintln!("setup: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let t = match target(&cli) {
        Ok(t) => t,
        Err(e) => return fail(&cli, &e),
    };
    let apply_mode = cli.apply || (cli.dry_run && !cli.revert);
    if cli.check && cli.dry_run {
        return fail(&cli, "--dry-run goes with --apply or --revert, not --check");
    }
    if (apply_mode || cli.revert)
        && !cli.dry_run
        && t.root.is_live()
        && !nix::unistd::geteuid().is_root()
    {
        let verb = if cli.revert { "--revert" } else { "--apply" };
        return fail(
            &cli,
            &format!(
                "setup {verb} changes system files under /: run it as root (sudo setup {verb}), or use --dry-run to see the changes"
            ),
        );
    }
    if apply_mode || cli.revert {
        let verb = if cli.revert { "revert" } else { "apply" };
        let r = if cli.revert {
            apply::revert(&t, cli.dry_run)
        } else {
            apply::apply(&t, cli.dry_run)
        };
        return match r {
            Ok(o) => {
                print_outcome(&cli, verb, &t, &o);
                if o.warnings.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => fail(&cli, &e.to_string()),
        };
    }
    let rows = checks::check(&t);
    let tuned = checks::all_tuned(&rows);
    if cli.json {
        let v = serde_json::json!({ "root": t.root.base(), "tuned": tuned, "isolated": t.isolated.to_string(), "user": t.user, "rows": rows });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        print!("{}", checks::table(&rows));
        println!(
            "{}",
            if tuned {
                "tuned: everything applies"
            } else {
                "not tuned: run sudo setup --apply (--dry-run shows the changes)"
            }
        );
    }
    if tuned {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
