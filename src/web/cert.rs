//! The viewer page's TLS certificate: the one given (`--cert`/`--key`, PEM), or a
//! self-signed one generated on first run and kept (`web.cert_dir`, default
//! `$XDG_CONFIG_HOME/vr-stream` or `~/.config/vr-stream`: `web-cert.pem`, and
//! `web-key.pem` with mode 0600). WebXR and WebCodecs need a secure context; the Quest
//! Browser lets the user accept a self-signed certificate once, and keeping it means once
//! per Pi, not once per run.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A certificate chain and its private key, DER.
pub struct Identity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 (or whatever the PEM held).
    pub key: PrivateKeyDer<'static>,
    /// Where they came from (for the start banner).
    pub cert_path: PathBuf,
    /// Whether this run generated them.
    pub generated: bool,
}

/// Errors: the file named and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        err: std::io::Error,
    },
    /// A file is not the PEM expected.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: String,
    },
    /// Generating the certificate failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

/// The default directory: `$XDG_CONFIG_HOME/vr-stream`, else `$HOME/.config/vr-stream`,
/// else `./.vr-stream`.
pub fn default_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("vr-stream");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".config").join("vr-stream"),
        None => PathBuf::from(".vr-stream"),
    }
}

/// The identity in the PEM files `cert` (a certificate chain) and `key`; `generated`: we
/// made the pair. Errors: [`CertError::Io`] for a file that cannot be read,
/// [`CertError::Pem`] for one without a certificate or a private key.
fn read_identity(cert: &Path, key: &Path, generated: bool) -> Result<Identity, CertError> {
    let pem = |path: &Path, what: &str| CertError::Pem {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let io = |path: &Path, err| CertError::Io {
        path: path.to_path_buf(),
        err,
    };
    let cert_text = std::fs::read(cert).map_err(|e| io(cert, e))?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&cert_text)
        .collect::<Result<_, _>>()
        .map_err(|e| pem(cert, &format!("not a PEM certificate ({e})")))?;
    if chain.is_empty() {
        return Err(pem(cert, "no CERTIFICATE block (expected PEM)"));
    }
    let key_text = std::fs::read(key).map_err(|e| io(key, e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_text)
        .map_err(|e| pem(key, &format!("no PEM private key ({e})")))?;
    Ok(Identity {
        chain,
        key: key_der,
        cert_path: cert.to_path_buf(),
        generated,
    })
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename,
/// with `mode`: a crash leaves the old file or the new one, never half of one.
fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<(), CertError> {
    let io = |err| CertError::Io {
        path: path.to_path_buf(),
        err,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The identity to serve: `cert` and `key` when given (both PEM); else the kept
/// self-signed pair in `dir`, generated (for `names`: host names and IP addresses) when
/// absent.
pub fn load_or_create(
    cert: Option<&Path>,
    key: Option<&Path>,
    dir: &Path,
    names: &[String],
) -> Result<Identity, CertError> {
    if let (Some(c), Some(k)) = (cert, key) {
        return read_identity(c, k, false);
    }
    let (c, k) = (dir.join("web-cert.pem"), dir.join("web-key.pem"));
    if c.exists() && k.exists() {
        return read_identity(&c, &k, false);
    }
    std::fs::create_dir_all(dir).map_err(|err| CertError::Io {
        path: dir.to_path_buf(),
        err,
    })?;
    // Two vr-streams starting at once must not each write half a pair (one's key beside the
    // other's certificate): generation is serialized by an exclusive lock on a file in
    // `dir` (flock(2), released when the handle drops), and whoever waited finds the pair.
    let lock_path = dir.join(".web-cert.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|err| CertError::Io {
            path: lock_path.clone(),
            err,
        })?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive).map_err(
        |(_, e)| CertError::Io {
            path: lock_path.clone(),
            err: e.into(),
        },
    )?;
    if c.exists() && k.exists() {
        return read_identity(&c, &k, false);
    }
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| CertError::Generate(e.to_string()))?;
    // The key first: a certificate without its key is never left behind.
    write_atomic(&k, &ck.signing_key.serialize_pem(), 0o600)?;
    write_atomic(&c, &ck.cert.pem(), 0o644)?;
    read_identity(&c, &k, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_kept_key_0600_and_bad_files_named() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("sub");
        let a =
            load_or_create(None, None, &dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(a.generated);
        let mode = std::fs::metadata(dir.join("web-key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create(None, None, &dir, &["localhost".into()]).unwrap();
        assert!(!b.generated);
        assert_eq!(a.chain, b.chain, "the kept certificate is reused");
        // Given files that are not PEM: an error naming the file.
        let junk = d.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let e = load_or_create(Some(&junk), Some(&dir.join("web-key.pem")), &dir, &[])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("junk.pem") && e.contains("PEM"), "{e}");
        let e = load_or_create(Some(&dir.join("web-cert.pem")), Some(&junk), &dir, &[])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("junk.pem") && e.contains("private key"), "{e}");
        let e = load_or_create(Some(&d.path().join("none.pem")), Some(&junk), &dir, &[])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("none.pem"), "{e}");
    }
}
