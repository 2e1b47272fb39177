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
//! `VR_SETUP_FAULT_AT=N` makes the commit of the N-th operation (0-based) fail before it
//! changes anything, and `VR_SETUP_FAULT_AFTER=N` makes it fail once its target is in place
//! (as a failed directory fsync would), to exercise the roll-back path. No unsafe code:
//! std's `fchown`/`set_permissions`/`sync_all`.

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

/// Phase 1's result for one [`Op`].
struct Staged {
    /// The `-new` file or symlink to rename over the target (`None` for [`Content::Absent`]).
    new: Option<PathBuf>,
    /// The `-old` copy of what the target held (`None` if nothing was there).
    old: Option<PathBuf>,
}

impl Staged {
    /// Phase 1 for `op`: creates its missing directories (added to `created_dirs`), copies
    /// what the target holds to `-old` and writes the new content to `-new`. On error, what
    /// this call staged is removed again (the directories are the caller's to remove).
    fn stage(op: &Op, created_dirs: &mut Vec<PathBuf>) -> Result<Staged, TxnError> {
        let fail = |action, e| fail(&op.path, action, e);
        for d in missing_dirs(&op.path) {
            fs::create_dir(&d).map_err(|e| fail("create the directory for", e))?;
            created_dirs.push(d);
        }
        let before = fs::symlink_metadata(&op.path).ok();
        let mut st = Staged {
            new: None,
            old: None,
        };
        if let Some(m) = &before {
            st.old = Some(back_up(&op.path, m).map_err(|(action, e)| fail(action, e))?);
        }
        let new = side(&op.path, "new");
        let written = match &op.content {
            Content::File(bytes) => {
                let meta = match (op.meta, &before) {
                    (Some(m), _) => Ok(Some(m)),
                    (None, Some(m)) if m.is_file() => {
                        meta_of(&op.path).map(Some).map_err(|e| ("read", e))
                    }
                    _ => Ok(None),
                };
                meta.and_then(|meta| write_file(&new, bytes, meta).map_err(|e| ("write", e)))
            }
            Content::Symlink(target) => {
                let _ = fs::remove_file(&new);
                std::os::unix::fs::symlink(target, &new).map_err(|e| ("create the symlink", e))
            }
            Content::Absent => return Ok(st),
        };
        st.new = Some(new);
        match written {
            Ok(()) => Ok(st),
            Err((action, e)) => {
                st.remove();
                Err(fail(action, e))
            }
        }
    }

    /// Phase 2 for `path`: the staged content takes its place (a removal moves nothing:
    /// the `-old` copy is a second copy).
    fn put_in_place(&self, path: &Path) -> io::Result<()> {
        match (&self.new, &self.old) {
            (Some(new), _) => fs::rename(new, path),
            (None, Some(_)) => fs::remove_file(path),
            (None, None) => Ok(()),
        }
    }

    /// Undoes [`Staged::put_in_place`] on `path`: the `-old` copy goes back, or what was
    /// created is removed.
    fn undo(&self, path: &Path) -> io::Result<()> {
        match &self.old {
            Some(old) => fs::rename(old, path),
            None => match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Removes the `-new` and `-old` files that are still there.
    fn remove(&self) {
        for p in [&self.new, &self.old].into_iter().flatten() {
            if fs::symlink_metadata(p).is_ok() {
                let _ = fs::remove_file(p);
            }
        }
    }
}

fn fail(path: &Path, action: &'static str, source: io::Error) -> TxnError {
    TxnError {
        path: path.to_path_buf(),
        action,
        source,
        rolled_back: true,
    }
}

/// Copies what `path` holds (`m`: its metadata, a file or a symlink) to its `-old` name and
/// returns that name. Errors: what was being done and the OS error.
fn back_up(path: &Path, m: &fs::Metadata) -> Result<PathBuf, (&'static str, io::Error)> {
    if m.is_dir() {
        return Err(("replace", io::Error::other("it is a directory")));
    }
    let old = side(path, "old");
    if m.file_type().is_symlink() {
        let _ = fs::remove_file(&old);
        let t = fs::read_link(path).map_err(|e| ("read", e))?;
        std::os::unix::fs::symlink(t, &old).map_err(|e| ("back up", e))?;
    } else {
        let bytes = fs::read(path).map_err(|e| ("read", e))?;
        let meta = meta_of(path).map_err(|e| ("read", e))?;
        write_file(&old, &bytes, Some(meta)).map_err(|e| {
            let _ = fs::remove_file(&old);
            ("back up", e)
        })?;
    }
    Ok(old)
}

/// Where a test asks the commit to fail (the environment, see the module docs).
#[derive(Clone, Copy)]
enum Fault {
    /// `VR_SETUP_FAULT_AT=N`: operation N fails before it changes anything.
    At(usize),
    /// `VR_SETUP_FAULT_AFTER=N`: operation N is in place, then syncing its directory fails.
    After(usize),
}

impl Fault {
    fn from_env() -> Option<Fault> {
        let n = |var| std::env::var(var).ok()?.parse().ok();
        n("VR_SETUP_FAULT_AT")
            .map(Fault::At)
            .or_else(|| n("VR_SETUP_FAULT_AFTER").map(Fault::After))
    }

    fn injected() -> io::Error {
        io::Error::other("injected fault (VR_SETUP_FAULT_AT/AFTER)")
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(path.parent().unwrap_or(Path::new("/")))
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
        let fault = Fault::from_env();
        let mut created_dirs: Vec<PathBuf> = Vec::new();
        let mut staged: Vec<Staged> = Vec::new();

        // Phase 1: stage.
        for op in &self.ops {
            match Staged::stage(op, &mut created_dirs) {
                Ok(st) => staged.push(st),
                Err(e) => {
                    cleanup(&staged);
                    remove_dirs(&created_dirs);
                    return Err(e);
                }
            }
        }

        // Phase 2: commit. An error says whether the target had changed already.
        let step = |i: usize, op: &Op, st: &Staged| -> Result<(), (bool, io::Error)> {
            if matches!(fault, Some(Fault::At(n)) if n == i) {
                return Err((false, Fault::injected()));
            }
            st.put_in_place(&op.path).map_err(|e| (false, e))?;
            if matches!(fault, Some(Fault::After(n)) if n == i) {
                return Err((true, Fault::injected()));
            }
            sync_parent(&op.path).map_err(|e| (true, e))
        };
        for (i, (op, st)) in self.ops.iter().zip(&staged).enumerate() {
            let Err((changed, e)) = step(i, op, st) else {
                continue;
            };
            let undo = if changed { i + 1 } else { i };
            let mut rolled_back = true;
            for (op, st) in self.ops.iter().zip(&staged).take(undo).rev() {
                rolled_back &= st.undo(&op.path).is_ok();
                let _ = sync_parent(&op.path);
            }
            cleanup(&staged);
            remove_dirs(&created_dirs);
            let action = if matches!(op.content, Content::Absent) {
                "remove"
            } else {
                "replace"
            };
            return Err(TxnError {
                path: op.path.clone(),
                action,
                source: e,
                rolled_back,
            });
        }

        // Phase 3: clean up.
        cleanup(&staged);
        for op in &self.ops {
            let _ = sync_parent(&op.path);
        }
        Ok(created_dirs)
    }
}

fn cleanup(staged: &[Staged]) {
    for st in staged {
        st.remove();
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
