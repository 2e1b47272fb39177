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

/// One path `--apply` changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Path on the target system.
    pub path: String,
    /// What was there before: `missing`, `file` or `symlink`.
    pub before: String,
    /// For `file`: the backup under [`STATE_DIR`] and the owner/mode it had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// For `file`: owner and mode before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// For `symlink`: its target before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Fingerprint of what `--apply` wrote last ([`fingerprint`]); `--revert` leaves a file
    /// alone if it no longer matches (somebody changed it since).
    pub written: String,
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
            before: "file".into(),
            backup: Some(backup_path("/etc/x")),
            meta: Some(Meta {
                mode: 0o644,
                uid: 0,
                gid: 0,
            }),
            link: None,
            written: fingerprint(&Node::File(b"abc".to_vec())),
        });
        s.live.sysctl.insert("vm.swappiness".into(), "60".into());
        s.live.irq_affinity.insert("17".into(), "0-3".into());
        assert_eq!(State::parse(&s.to_toml()).unwrap(), s);
        assert!(s.files[0].written.starts_with("sha256:ba7816bf"));
        assert!(State::parse("version = 9\n").is_err());
    }
}
