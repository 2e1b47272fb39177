//! All-or-nothing changes to several files.
//!
//! [`Transaction::commit`] works in three phases:
//! 1. **Stage**: create missing parent directories; write every new file to a temporary
//!    file in its target directory (`.NAME.vr-setup-new`, owner and mode of the file it
//!    replaces, fsync); copy every file that will be replaced or removed to
//!    `.NAME.vr-setup-old` (fsync). A failure here (read-only file system, full disk) removes
//!    what was staged: no target was touched.
//! 2. **Commit**: `rename(2)` each temporary file over its target (atomic per file), or
//!    rename a removed file to its `-old` name, then fsync the directory. A failure here
//!    renames the `-old` copies back over the targets already committed and unlinks the
//!    ones that were created: every file is as it was before the run.
//! 3. **Clean up**: unlink the `-old` copies, fsync the directories.
//!
//! The error names the file and the reason. For tests, the environment variable
//! `VR_SETUP_FAULT_AT=N` makes the commit of the N-th operation (0-based) fail, to exercise
//! the roll-back path. No unsafe code: std's `fchown`/`set_permissions`/`sync_all`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a path should hold after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A symlink to this target (written as given).
    Symlink(String),
    /// Nothing: the file or symlink is removed.
    Absent,
}

/// Owner and permission bits for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
}

/// One change.
#[derive(Debug, Clone)]
pub struct Op {
    /// Host path of the target.
    pub path: PathBuf,
    /// What it should hold.
    pub content: Content,
    /// Owner and mode for a new file. `None`: keep those of the file being replaced, or
    /// mode 0644 owned by the caller for a new file.
    pub meta: Option<Meta>,
}

/// A failed transaction: which file, what was being done, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}{}", path.display(), if *rolled_back { "; every file was left as it was" } else { "" })]
pub struct TxnError {
    /// The file.
    pub path: PathBuf,
    /// `write`, `replace`, `remove`, `create directory for`, ...
    pub action: &'static str,
    /// The cause.
    pub source: io::Error,
    /// Whether every change was undone (false only if undoing failed too).
    pub rolled_back: bool,
}

/// A set of changes applied all-or-nothing.
#[derive(Debug, Default)]
pub struct Transaction {
    ops: Vec<Op>,
}

fn side(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.vr-setup-{tag}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_file(path: &Path, bytes: &[u8], meta: Option<Meta>) -> io::Result<()> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    let (mode, owner) = match meta {
        Some(m) => (m.mode, Some((m.uid, m.gid))),
        None => (0o644, None),
    };
    let cur = f.metadata()?;
    if let Some((uid, gid)) = owner
        && (cur.uid() != uid || cur.gid() != gid)
    {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    }
    if cur.permissions().mode() & 0o7777 != mode & 0o7777 {
        f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    }
    f.sync_all()
}

/// Owner and mode of an existing regular file.
pub fn meta_of(path: &Path) -> io::Result<Meta> {
    let m = fs::symlink_metadata(path)?;
    Ok(Meta {
        mode: m.permissions().mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    })
}

/// Missing ancestors of `path` (outermost first) that creating it would create.
pub fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = path.parent();
    while let Some(d) = cur {
        if fs::symlink_metadata(d).is_ok() {
            break;
        }
        out.push(d.to_path_buf());
        cur = d.parent();
    }
    out.reverse();
    out
}

struct Staged {
    new: Option<PathBuf>,
    old: Option<PathBuf>,
    existed: bool,
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a change; changes commit in the order added.
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Applies every change or none (see the module docs). Returns the directories it
    /// created, outermost first.
    ///
    /// Errors: [`TxnError`] naming the file; all changes are undone before it returns.
    pub fn commit(self) -> Result<Vec<PathBuf>, TxnError> {
        let fault_at: Option<usize> = std::env::var("VR_SETUP_FAULT_AT")
            .ok()
            .and_then(|v| v.parse().ok());
        let mut created_dirs: Vec<PathBuf> = Vec::new();
        let mut staged: Vec<Staged> = Vec::new();
        let fail = |path: &Path, action: &'static str, source: io::Error| TxnError {
            path: path.to_path_buf(),
            action,
            source,
            rolled_back: true,
        };

        // Phase 1: stage.
        for op in &self.ops {
            let r = (|| -> Result<Staged, TxnError> {
                for d in missing_dirs(&op.path) {
                    fs::create_dir(&d)
                        .map_err(|e| fail(&op.path, "create the directory for", e))?;
                    created_dirs.push(d);
                }
                let before = fs::symlink_metadata(&op.path);
                let existed = before.is_ok();
                if let Ok(m) = &before
                    && m.is_dir()
                {
                    return Err(fail(
                        &op.path,
                        "replace",
                        io::Error::other("it is a directory"),
                    ));
                }
                let mut st = Staged {
                    new: None,
                    old: None,
                    existed,
                };
                if existed {
                    let old = side(&op.path, "old");
                    let m = before.as_ref().unwrap();
                    if m.file_type().is_symlink() {
                        let _ = fs::remove_file(&old);
                        let t = fs::read_link(&op.path).map_err(|e| fail(&op.path, "read", e))?;
                        std::os::unix::fs::symlink(t, &old)
                            .map_err(|e| fail(&op.path, "back up", e))?;
                    } else {
                        let bytes = fs::read(&op.path).map_err(|e| fail(&op.path, "read", e))?;
                        let meta = meta_of(&op.path).map_err(|e| fail(&op.path, "read", e))?;
                        st.old = Some(old.clone());
                        write_file(&old, &bytes, Some(meta)).map_err(|e| {
                            let _ = fs::remove_file(&old);
                            fail(&op.path, "back up", e)
                        })?;
                    }
                    st.old = Some(old);
                }
                match &op.content {
                    Content::File(bytes) => {
                        let new = side(&op.path, "new");
                        let meta = match (op.meta, &before) {
                            (Some(m), _) => Some(m),
                            (None, Ok(m)) if m.is_file() => {
                                Some(meta_of(&op.path).map_err(|e| fail(&op.path, "read", e))?)
                            }
                            _ => None,
                        };
                        st.new = Some(new.clone());
                        if let Err(e) = write_file(&new, bytes, meta) {
                            let _ = fs::remove_file(&new);
                            if let Some(o) = &st.old {
                                let _ = fs::remove_file(o);
                            }
                            return Err(fail(&op.path, "write", e));
                        }
                    }
                    Content::Symlink(target) => {
                        let new = side(&op.path, "new");
                        let _ = fs::remove_file(&new);
                        if let Err(e) = std::os::unix::fs::symlink(target, &new) {
                            if let Some(o) = &st.old {
                                let _ = fs::remove_file(o);
                            }
                            return Err(fail(&op.path, "create the symlink", e));
                        }
                        st.new = Some(new);
                    }
                    Content::Absent => {}
                }
                Ok(st)
            })();
            match r {
                Ok(st) => staged.push(st),
                Err(e) => {
                    cleanup(&staged);
                    remove_dirs(&created_dirs);
                    return Err(e);
                }
            }
        }

        // Phase 2: commit.
        for (i, (op, st)) in self.ops.iter().zip(&staged).enumerate() {
            let r = if fault_at == Some(i) {
                Err(io::Error::other("injected fault (VR_SETUP_FAULT_AT)"))
            } else {
                match (&st.new, st.existed) {
                    (Some(new), _) => fs::rename(new, &op.path),
                    // Absent: move the file aside (its -old copy is a second copy).
                    (None, true) => fs::remove_file(&op.path),
                    (None, false) => Ok(()),
                }
            }
            .and_then(|_| sync_dir(op.path.parent().unwrap_or(Path::new("/"))));
            if let Err(e) = r {
                let action = if matches!(op.content, Content::Absent) {
                    "remove"
                } else {
                    "replace"
                };
                let mut rolled_back = true;
                for (op, st) in self.ops.iter().zip(&staged).take(i).rev() {
                    let undo = match (&st.old, st.existed) {
                        (Some(old), true) => fs::rename(old, &op.path),
                        _ => fs::remove_file(&op.path).or_else(|e| {
                            if e.kind() == io::ErrorKind::NotFound {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        }),
                    };
                    rolled_back &= undo.is_ok();
                    let _ = sync_dir(op.path.parent().unwrap_or(Path::new("/")));
                }
                cleanup(&staged);
                remove_dirs(&created_dirs);
                return Err(TxnError {
                    path: op.path.clone(),
                    action,
                    source: e,
                    rolled_back,
                });
            }
        }

        // Phase 3: clean up.
        cleanup(&staged);
        for op in &self.ops {
            let _ = sync_dir(op.path.parent().unwrap_or(Path::new("/")));
        }
        Ok(created_dirs)
    }
}

fn cleanup(staged: &[Staged]) {
    for st in staged {
        for p in [&st.new, &st.old].into_iter().flatten() {
            if fs::symlink_metadata(p).is_ok() {
                let _ = fs::remove_file(p);
            }
        }
    }
}

fn remove_dirs(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let _ = fs::remove_dir(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_and_keeps_mode() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::write(&a, "old").unwrap();
        fs::set_permissions(&a, fs::Permissions::from_mode(0o640)).unwrap();
        let b = d.path().join("x/y/b");
        let mut t = Transaction::new();
        t.push(Op {
            path: a.clone(),
            content: Content::File(b"new".to_vec()),
            meta: None,
        });
        t.push(Op {
            path: b.clone(),
            content: Content::Symlink("/dev/null".into()),
            meta: None,
        });
        let dirs = t.commit().unwrap();
        assert_eq!(dirs, vec![d.path().join("x"), d.path().join("x/y")]);
        assert_eq!(fs::read(&a).unwrap(), b"new");
        assert_eq!(meta_of(&a).unwrap().mode, 0o640);
        assert_eq!(fs::read_link(&b).unwrap(), Path::new("/dev/null"));
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    #[test]
    fn removal_and_a_directory_in_the_way() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::write(&a, "old").unwrap();
        fs::create_dir(d.path().join("dir")).unwrap();
        let mut t = Transaction::new();
        t.push(Op {
            path: a.clone(),
            content: Content::Absent,
            meta: None,
        });
        t.push(Op {
            path: d.path().join("dir"),
            content: Content::File(b"x".to_vec()),
            meta: None,
        });
        let e = t.commit().unwrap_err();
        assert!(e.to_string().contains("it is a directory"), "{e}");
        assert_eq!(fs::read(&a).unwrap(), b"old");
        let mut t = Transaction::new();
        t.push(Op {
            path: a.clone(),
            content: Content::Absent,
            meta: None,
        });
        t.commit().unwrap();
        assert!(!a.exists());
    }
}
