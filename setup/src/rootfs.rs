//! The root file system `setup` acts on: `/` (the running system) or a directory given
//! with `--root` (a test tree, a mounted SD card image). Paths inside it are written as on
//! the target system (`/etc/sysctl.d/99-vr-stream.conf`); absolute symlinks are resolved
//! inside the root, never on the host.

use std::io;
use std::path::{Path, PathBuf};

/// A root file system.
#[derive(Debug, Clone)]
pub struct Root {
    base: PathBuf,
    live: bool,
}

/// How a path looks on disk (without following a final symlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Nothing there.
    Missing,
    /// A regular file and its bytes (symlinks to regular files are followed inside the root).
    File(Vec<u8>),
    /// A symlink and its target as written.
    Symlink(String),
    /// Something else (directory, device, dangling link target type).
    Other,
}

impl Root {
    /// Opens `base`. Errors: it does not exist or is not a directory.
    pub fn new(base: &Path) -> io::Result<Root> {
        let canon = base
            .canonicalize()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", base.display())))?;
        if !canon.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", base.display()),
            ));
        }
        let live = canon == Path::new("/");
        Ok(Root { base: canon, live })
    }

    /// Whether this is the running system's `/` (live changes and live checks apply).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The root directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The host path of a path on the target system.
    pub fn path(&self, logical: &str) -> PathBuf {
        self.base.join(logical.trim_start_matches('/'))
    }

    /// What is at `logical`, without following a final symlink.
    pub fn node(&self, logical: &str) -> io::Result<Node> {
        let p = self.path(logical);
        match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Node::Missing),
            Err(e) => Err(e),
            Ok(m) if m.file_type().is_symlink() => Ok(Node::Symlink(
                std::fs::read_link(&p)?.to_string_lossy().into_owned(),
            )),
            Ok(m) if m.is_file() => Ok(Node::File(std::fs::read(&p)?)),
            Ok(_) => Ok(Node::Other),
        }
    }

    /// The bytes of a regular file, following symlinks inside the root; `None` when missing.
    pub fn read(&self, logical: &str) -> io::Result<Option<Vec<u8>>> {
        let mut cur = logical.to_string();
        for _ in 0..16 {
            match self.node(&cur)? {
                Node::Missing => return Ok(None),
                Node::File(b) => return Ok(Some(b)),
                Node::Other => return Ok(None),
                Node::Symlink(t) => {
                    cur = if t.starts_with('/') {
                        t
                    } else {
                        let parent = Path::new(&cur).parent().unwrap_or(Path::new("/"));
                        normalize(&parent.join(t))
                    };
                }
            }
        }
        Err(io::Error::other(format!(
            "{logical}: too many levels of symbolic links"
        )))
    }

    /// The text of a file (lossy UTF-8); `None` when missing or unreadable.
    pub fn read_text(&self, logical: &str) -> Option<String> {
        self.read(logical)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Whether anything exists at `logical` (a dangling symlink counts).
    pub fn exists(&self, logical: &str) -> bool {
        std::fs::symlink_metadata(self.path(logical)).is_ok()
    }

    /// File names in a directory, sorted; empty when it does not exist.
    pub fn list(&self, logical_dir: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(logical_dir))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The sysctl.d files systemd-sysctl applies at boot, in order, as (path, text): every
    /// `*.conf` of /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d
    /// and /lib/sysctl.d, a name in an earlier directory hiding the same name in a later one,
    /// sorted by file name (sysctl.d(5)).
    pub fn sysctl_files(&self) -> Vec<(String, String)> {
        const DIRS: [&str; 5] = [
            "/etc/sysctl.d",
            "/run/sysctl.d",
            "/usr/local/lib/sysctl.d",
            "/usr/lib/sysctl.d",
            "/lib/sysctl.d",
        ];
        let mut by_name: std::collections::BTreeMap<String, String> = Default::default();
        for d in DIRS {
            for n in self.list(d) {
                if n.ends_with(".conf") && !by_name.contains_key(&n) {
                    by_name.insert(n.clone(), format!("{d}/{n}"));
                }
            }
        }
        by_name
            .into_values()
            .filter_map(|p| self.read_text(&p).map(|t| (p, t)))
            .collect()
    }

    /// limits.conf then limits.d/*.conf in name order, as (path, text) (pam_limits(8)).
    pub fn limits_files(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(t) = self.read_text("/etc/security/limits.conf") {
            out.push(("/etc/security/limits.conf".to_string(), t));
        }
        for n in self.list("/etc/security/limits.d") {
            if n.ends_with(".conf") {
                let p = format!("/etc/security/limits.d/{n}");
                if let Some(t) = self.read_text(&p) {
                    out.push((p, t));
                }
            }
        }
        out
    }

    /// Whether `user` has an entry in the root's /etc/passwd (`@group`: /etc/group).
    pub fn has_account(&self, user: &str) -> bool {
        let (file, name) = match user.strip_prefix('@') {
            Some(g) => ("/etc/group", g),
            None => ("/etc/passwd", user),
        };
        self.read_text(file)
            .is_some_and(|t| t.lines().any(|l| l.split(':').next() == Some(name)))
    }

    /// Groups `user` belongs to per the root's /etc/passwd and /etc/group.
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        let group = self.read_text("/etc/group").unwrap_or_default();
        let primary_gid = self.read_text("/etc/passwd").and_then(|t| {
            t.lines()
                .find(|l| l.split(':').next() == Some(user))
                .and_then(|l| l.split(':').nth(3).map(str::to_string))
        });
        group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                if f.len() < 4 {
                    return None;
                }
                let member =
                    f[3].split(',').any(|m| m == user) || primary_gid.as_deref() == Some(f[2]);
                member.then(|| f[0].to_string())
            })
            .collect()
    }
}

/// Removes `.` and `..` from an absolute path without touching the disk.
fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = Root::new(d.path()).unwrap();
        std::fs::create_dir_all(r.path("/etc/sysctl.d")).unwrap();
        std::fs::write(r.path("/etc/sysctl.conf"), "vm.swappiness=1\n").unwrap();
        std::os::unix::fs::symlink("../sysctl.conf", r.path("/etc/sysctl.d/99-sysctl.conf"))
            .unwrap();
        std::os::unix::fs::symlink("/etc/sysctl.conf", r.path("/etc/sysctl.d/98-abs.conf"))
            .unwrap();
        assert!(!r.is_live());
        let files = r.sysctl_files();
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|(_, t)| t == "vm.swappiness=1\n"));
        assert_eq!(
            r.node("/etc/sysctl.d/98-abs.conf").unwrap(),
            Node::Symlink("/etc/sysctl.conf".into())
        );
        assert_eq!(r.read("/nope").unwrap(), None);
    }
}
