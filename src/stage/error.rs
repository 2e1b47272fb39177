//! Why a stage process stopped: one enum over every stage's failures, kept typed up to the
//! stage boundary. There it becomes the text in the stage's slot of the stats segment
//! ([`crate::shm::stats::StageSlot::fail`]), which the supervisor prints and `dashboard`
//! shows; [`StageError::is_permanent`] tells the supervisor's restart policy whether
//! retrying can help.

use crate::config::ConfigError;
use crate::detect::onnx::DetectError;
use crate::encode::EncodeError;
use crate::shm::ShmError;
use crate::source::SourceError;
use crate::web::error::WebError;
use std::net::SocketAddr;

/// A stage's failure. `Display` is the one line the supervisor prints after "stage NAME".
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Started other than by vr-stream: the configuration or geometry it passes is missing
    /// or malformed.
    #[error("{0} (stages are started by vr-stream)")]
    Invocation(String),
    /// The configuration passed by the supervisor does not parse or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A shared-memory segment cannot be opened or a role claimed.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The camera (source) failed. `permanent`: its backend says retrying cannot help.
    #[error("{error}")]
    Source {
        /// What failed.
        error: SourceError,
        /// Retrying cannot help (a device that does not exist, a bad setting).
        permanent: bool,
    },
    /// The source's frame size is not the stream's (after a restart or a reconnect).
    #[error("source {uri} is {got_w}x{got_h}, the stream is {w}x{h}")]
    SizeChanged {
        /// The source.
        uri: String,
        /// Its frame size now.
        got_w: u32,
        /// See `got_w`.
        got_h: u32,
        /// The stream's.
        w: u32,
        /// See `w`.
        h: u32,
    },
    /// The encoder failed to open or to encode.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The detector failed (its assets, its input, ONNX Runtime).
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// `stream.ip` is not an address.
    #[error("stream.ip {0:?} is not an IP address")]
    Address(String),
    /// A socket of the network stage cannot be made.
    #[error("{what} to {dest}: {error}")]
    Socket {
        /// Which one ("UDP socket", "FEC socket", "RTCP socket (local port 5005)").
        what: String,
        /// Where it sends.
        dest: SocketAddr,
        /// The OS's error.
        error: std::io::Error,
    },
    /// `rt.strict` and the realtime settings could not all be had.
    #[error("--strict-rt: {0}")]
    Realtime(String),
    /// The web stage could not start.
    #[error(transparent)]
    Web(#[from] WebError),
}

impl StageError {
    /// Whether the supervisor should give up at once instead of restarting the stage: only
    /// a source whose backend says so (the other failures may be transient — a socket, a
    /// device that comes back — and get the restart policy's retries).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            StageError::Source {
                permanent: true,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed_and_permanence_follows_the_kind() {
        let e = StageError::Socket {
            what: "FEC socket".into(),
            dest: "10.0.0.2:5006".parse().unwrap(),
            error: std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
        };
        assert!(
            e.to_string()
                .starts_with("FEC socket to 10.0.0.2:5006: Cannot assign requested address"),
            "{e}"
        );
        assert!(!e.is_permanent(), "a socket may work on the next try");
        let e = StageError::SizeChanged {
            uri: "v4l2:/dev/video0".into(),
            got_w: 640,
            got_h: 480,
            w: 1280,
            h: 720,
        };
        assert_eq!(
            e.to_string(),
            "source v4l2:/dev/video0 is 640x480, the stream is 1280x720"
        );
        assert!(!e.is_permanent());
        let e = StageError::from(WebError::BindAddress("nowhere".into()));
        assert_eq!(e.to_string(), "web.bind \"nowhere\" is not an IP address");
        assert!(!e.is_permanent(), "the port may be free on the next try");
    }
}
