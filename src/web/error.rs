//! Why the web stage could not start: one enum, carried typed to the stage boundary in
//! [`crate::stage::StageError::Web`], whose text the supervisor prints.

use super::cert::CertError;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A failure of the web stage's start (not of one viewer: those are answered and logged).
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The certificate or key cannot be read, parsed or generated.
    #[error("web certificate: {0}")]
    Cert(#[from] CertError),
    /// rustls refuses the certificate and key: they do not match, or the key type is not
    /// supported.
    #[error("{}: {error}", cert.display())]
    Tls {
        /// The certificate file.
        cert: PathBuf,
        /// rustls's reason.
        error: rustls::Error,
    },
    /// The crypto provider offers none of the TLS versions asked for (1.2, 1.3).
    #[error("{0}")]
    TlsVersions(rustls::Error),
    /// The OS random source (getrandom(2)) failed: there is no fallback, so no PIN or
    /// session token can be made.
    #[error("the OS random source failed ({0}): no PIN or session token can be made without it")]
    Random(getrandom::Error),
    /// The session key the supervisor passes in [`super::stage::KEY_ENV`] is missing or not
    /// [`super::auth::KEY_LEN`] bytes of hex.
    #[error(
        "{} is not {} hex bytes (the web stage is started by vr-stream)",
        super::stage::KEY_ENV,
        super::auth::KEY_LEN
    )]
    SessionKey,
    /// `web.bind` is not an IP address.
    #[error("web.bind {0:?} is not an IP address")]
    BindAddress(String),
    /// The server's address cannot be bound (in use, no permission).
    #[error("web server on {addr}: {error}")]
    Bind {
        /// `web.bind`:`web.port`.
        addr: SocketAddr,
        /// The OS's error.
        error: io::Error,
    },
    /// The server's runtime or thread cannot be made.
    #[error("web server {what}: {error}")]
    Server {
        /// `runtime` or `thread`.
        what: &'static str,
        /// The OS's error.
        error: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_setting_or_file() {
        let e = WebError::Bind {
            addr: "0.0.0.0:8443".parse().unwrap(),
            error: io::Error::from_raw_os_error(libc::EADDRINUSE),
        };
        assert!(
            e.to_string()
                .starts_with("web server on 0.0.0.0:8443: Address already in use"),
            "{e}"
        );
        assert_eq!(
            WebError::SessionKey.to_string(),
            format!(
                "VR_STREAM_WEB_KEY is not {} hex bytes (the web stage is started by vr-stream)",
                super::super::auth::KEY_LEN
            )
        );
        let e = WebError::from(CertError::Generate("no entropy".into()));
        assert_eq!(
            e.to_string(),
            "web certificate: generating a self-signed certificate: no entropy"
        );
    }
}
