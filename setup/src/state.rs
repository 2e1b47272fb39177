//! What `--apply` changed, so that `--revert` can undo it: a TOML manifest and byte-for-byte
//! backups under `/var/lib/vr-stream/setup/` of the root acted on.
//!
//! Layout: `state.toml` (this [`State`]), `backup/<path on the target system>` (the file as
//! it was before the first `--apply` that changed it, mode 0600). A file keeps the backup of
//! its first change: a second `--apply` never overwrites it.

use crate::fsx::Meta;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Directory of the state on the target system.
pub const STATE_DIR: &str = "/var/lib/vr-stream/setup";
/// The manifest.
pub const STATE_FILE: &str = "/var/lib/vr-stream/setup/state.toml";
/// Manifest format version.
pub const VERSION: u32 = 1;

/// One path `--apply` changed: a `[[files]]` table of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Path on the target system.
    pub path: String,
    /// What was there before (the keys `before`, `backup`, `meta`, `link`).
    #[serde(flatten)]
    pub before: Before,
    /// Fingerprint of what `--apply` wrote last ([`fingerprint`]); `--revert` leaves a file
    /// alone if it no longer matches (somebody changed it since).
    pub written: String,
}

/// What stood at a path before the first `--apply` changed it. In the manifest: the key
/// `before` (`"missing"`, `"file"` or `"symlink"`) and the keys that variant needs, so a
/// manifest without them is refused by [`State::parse`] instead of reverting to nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "before", rename_all = "lowercase")]
pub enum Before {
    /// Nothing: `--revert` removes the path.
    Missing,
    /// A regular file: `--revert` puts its backup back with this owner and mode.
    File {
        /// The byte-for-byte copy, a path on the target system under [`STATE_DIR`]
        /// ([`backup_path`]).
        backup: String,
        /// Owner and mode before.
        meta: Meta,
    },
    /// A symbolic link: `--revert` makes it again.
    Symlink {
        /// Its target before.
        link: String,
    },
}

/// Live values before the first `--apply` changed them, restored by `--revert`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveBefore {
    /// sysctl key -> value.
    #[serde(default)]
    pub sysctl: BTreeMap<String, String>,
    /// `/sys/.../scaling_governor` path -> governor.
    #[serde(default)]
    pub governors: BTreeMap<String, String>,
    /// IRQ number (as text, TOML keys are strings) -> smp_affinity_list.
    #[serde(default)]
    pub irq_affinity: BTreeMap<String, String>,
    /// Wi-Fi interface -> power save was on.
    #[serde(default)]
    pub wifi_power_save: BTreeMap<String, bool>,
    /// Wi-Fi interfaces whose root qdisc was replaced.
    #[serde(default)]
    pub wifi_qdisc: Vec<String>,
    /// Swap areas that were active (`/proc/swaps`).
    #[serde(default)]
    pub swaps: Vec<String>,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`VERSION`].
    pub version: u32,
    /// Changed paths, in the order first changed.
    #[serde(default)]
    pub files: Vec<Entry>,
    /// Directories `--apply` created (outermost first); removed by `--revert` when empty.
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Live values before.
    #[serde(default)]
    pub live: LiveBefore,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: VERSION,
            files: Vec::new(),
            dirs: Vec::new(),
            live: LiveBefore::default(),
        }
    }
}

impl State {
    /// Parses a manifest. Errors: not TOML, or another version.
    pub fn parse(text: &str) -> Result<State, String> {
        let s: State = toml::from_str(text).map_err(|e| e.to_string())?;
        if s.version != VERSION {
            return Err(format!(
                "manifest version {} (this setup reads version {VERSION})",
                s.version
            ));
        }
        Ok(s)
    }

    /// The manifest as TOML.
    pub fn to_toml(&self) -> String {
        format!(
            "# Written by vr-stream setup --apply; read by setup --revert. Do not edit.\n{}",
            toml::to_string(self).expect("state serializes")
        )
    }

    /// The entry of a path.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.files.iter().find(|e| e.path == path)
    }
}

/// Backup location (on the target system) of a path.
pub fn backup_path(path: &str) -> String {
    format!("{STATE_DIR}/backup{path}")
}

/// Fingerprint of a path's content: `missing`, `symlink:TARGET` or `sha256:HEX`.
pub fn fingerprint(node: &crate::rootfs::Node) -> String {
    use crate::rootfs::Node;
    match node {
        Node::Missing => "missing".into(),
        Node::Symlink(t) => format!("symlink:{t}"),
        Node::File(b) => {
            let d = Sha256::digest(b);
            let hex: String = d.iter().map(|x| format!("{x:02x}")).collect();
            format!("sha256:{hex}")
        }
        Node::Other => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Node;

    #[test]
    fn round_trips() {
        let mut s = State::default();
        s.files.push(Entry {
            path: "/etc/x".into(),
            before: Before::File {
                backup: backup_path("/etc/x"),
                meta: Meta {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
            },
            written: fingerprint(&Node::File(b"abc".to_vec())),
        });
        s.live.sysctl.insert("vm.swappiness".into(), "60".into());
        s.live.irq_affinity.insert("17".into(), "0-3".into());
        assert_eq!(State::parse(&s.to_toml()).unwrap(), s);
        assert!(s.files[0].written.starts_with("sha256:ba7816bf"));
        assert!(State::parse("version = 9\n").is_err());
    }

    /// A manifest as the first version of `--apply` wrote it (the three kinds of entry)
    /// still reads, so `--revert` works after an upgrade.
    #[test]
    fn reads_the_version_1_manifest() {
        let text = r#"# Written by vr-stream setup --apply; read by setup --revert. Do not edit.
version = 1
dirs = ["/var/lib/vr-stream"]

[[files]]
path = "/boot/firmware/cmdline.txt"
before = "file"
backup = "/var/lib/vr-stream/setup/backup/boot/firmware/cmdline.txt"
written = "sha256:bac2"

[files.meta]
mode = 420
uid = 0
gid = 0

[[files]]
path = "/etc/sysctl.d/99-vr-stream.conf"
before = "symlink"
link = "../sysctl.conf"
written = "sha256:c8ca"

[[files]]
path = "/etc/systemd/system/dphys-swapfile.service"
before = "missing"
written = "symlink:/dev/null"

[live]
wifi_qdisc = []
swaps = []

[live.sysctl]
"#;
        let s = State::parse(text).unwrap();
        let before: Vec<&Before> = s.files.iter().map(|e| &e.before).collect();
        assert_eq!(
            before,
            [
                &Before::File {
                    backup: backup_path("/boot/firmware/cmdline.txt"),
                    meta: Meta {
                        mode: 0o644,
                        uid: 0,
                        gid: 0
                    }
                },
                &Before::Symlink {
                    link: "../sysctl.conf".into()
                },
                &Before::Missing,
            ]
        );
        assert_eq!(s.files[2].written, "symlink:/dev/null");
        // Written again, it reads the same.
        assert_eq!(State::parse(&s.to_toml()).unwrap(), s);
    }

    /// An entry that lacks what its kind needs, or names an unknown kind, is an error, not
    /// a revert to an empty path.
    #[test]
    fn refuses_an_entry_without_its_keys() {
        let entry = |body: &str| {
            format!("version = 1\n[[files]]\npath = \"/etc/x\"\n{body}written = \"missing\"\n")
        };
        assert!(State::parse(&entry("before = \"missing\"\n")).is_ok());
        for bad in [
            "before = \"file\"\n",
            "before = \"symlink\"\n",
            "before = \"fifo\"\n",
            "",
        ] {
            assert!(State::parse(&entry(bad)).is_err(), "{bad:?}");
        }
    }
}
