//! SDP (RFC 8866) description of the stream, for ffmpeg/ffplay, GStreamer and VLC.
//!
//! Pure code. One video media section: `m=video PORT RTP/AVP PT`, `a=rtpmap:PT
//! H264/90000`, `a=fmtp` with packetization-mode=1, profile-level-id (from the SPS) and
//! sprop-parameter-sets (RFC 6184 §8.1: base64 SPS and PPS, without start codes), the
//! abs-capture-time `a=extmap` (RFC 8285), and `a=framerate`. RTCP is on PORT + 1
//! (RFC 3550 §11), the default, so no `a=rtcp` line is needed.

use crate::rtp::{ABS_CAPTURE_TIME_URI, nal_units};
use base64::Engine as _;
use std::fmt::Write as _;
use std::net::IpAddr;

/// What the SDP describes.
#[derive(Debug, Clone)]
pub struct SdpParams<'a> {
    /// Sender address (o= line).
    pub origin: IpAddr,
    /// Receiver address the stream is sent to (c= line).
    pub dest: IpAddr,
    /// RTP port.
    pub port: u16,
    /// Payload type.
    pub payload_type: u8,
    /// SPS and PPS as Annex-B (start codes allowed), from the encoder.
    pub parameter_sets: &'a [u8],
    /// abs-capture-time extension id, if sent.
    pub capture_time_ext_id: Option<u8>,
    /// Frame rate numerator/denominator.
    pub fps: (u32, u32),
    /// Session id (o= line), e.g. the start time.
    pub session_id: u64,
}

/// Errors from [`write_sdp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// No SPS (NAL type 7) of at least 4 bytes in the parameter sets.
    #[error("no SPS in the encoder's parameter sets")]
    NoSps,
    /// No PPS (NAL type 8).
    #[error("no PPS in the encoder's parameter sets")]
    NoPps,
}

fn ip_kind(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IP4" } else { "IP6" }
}

/// Renders the SDP text (CRLF line ends, as RFC 8866 §5 requires).
///
/// Errors: [`SdpError`] if the parameter sets lack an SPS or PPS.
pub fn write_sdp(p: &SdpParams<'_>) -> Result<String, SdpError> {
    let sps = nal_units(p.parameter_sets)
        .find(|n| n[0] & 0x1f == 7 && n.len() >= 4)
        .ok_or(SdpError::NoSps)?;
    let pps = nal_units(p.parameter_sets)
        .find(|n| n[0] & 0x1f == 8)
        .ok_or(SdpError::NoPps)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push_str("\r\n");
    };
    line("v=0".into());
    line(format!(
        "o=- {} 1 IN {} {}",
        p.session_id,
        ip_kind(&p.origin),
        p.origin
    ));
    line("s=vr-stream".into());
    line(format!("c=IN {} {}", ip_kind(&p.dest), p.dest));
    line("t=0 0".into());
    line(format!("m=video {} RTP/AVP {}", p.port, p.payload_type));
    line(format!("a=rtpmap:{} H264/90000", p.payload_type));
    let fmtp = format!(
        "a=fmtp:{} packetization-mode=1;profile-level-id={:02x}{:02x}{:02x};sprop-parameter-sets={},{}",
        p.payload_type,
        sps[1],
        sps[2],
        sps[3],
        b64.encode(sps),
        b64.encode(pps)
    );
    line(fmtp);
    if let Some(id) = p.capture_time_ext_id {
        line(format!("a=extmap:{id} {ABS_CAPTURE_TIME_URI}"));
    }
    let (n, d) = p.fps;
    let mut fr = String::new();
    if d <= 1 {
        let _ = write!(fr, "{n}");
    } else {
        let _ = write!(fr, "{:.3}", n as f64 / d as f64);
    }
    line(format!("a=framerate:{fr}"));
    Ok(s)
}

/// What a receiver needs from an SDP description of an H.264 stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpInfo {
    /// RTP port of the first video section (RTCP: port + 1).
    pub port: u16,
    /// Payload type mapped to `H264/90000`.
    pub payload_type: u8,
    /// abs-capture-time extension id (`a=extmap:ID ...abs-capture-time`), if declared.
    pub capture_time_ext_id: Option<u8>,
}

/// Errors from [`read_sdp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpReadError {
    /// The text is not SDP (the parser's message).
    #[error("not a valid SDP description: {0}")]
    Syntax(String),
    /// No `m=video` section.
    #[error("no m=video section")]
    NoVideo,
    /// The video section maps no payload type to H264/90000.
    #[error("no a=rtpmap:PT H264/90000 in the video section")]
    NoH264,
    /// Port outside 1..=65535.
    #[error("video port {0}: allowed 1..=65535")]
    BadPort(u32),
}

/// Reads the receive parameters from SDP text such as [`write_sdp`]'s (parsed by Mozilla's
/// `webrtc-sdp`, lenient: unknown attributes are skipped).
///
/// Errors: [`SdpReadError`] naming what is missing.
pub fn read_sdp(text: &str) -> Result<SdpInfo, SdpReadError> {
    use webrtc_sdp::attribute_type::SdpAttribute;
    use webrtc_sdp::media_type::SdpMediaValue;
    let session = webrtc_sdp::parse_sdp(text, false).map_err(|e| {
        SdpReadError::Syntax(e.to_string().lines().next().unwrap_or_default().to_string())
    })?;
    let video = session
        .media
        .iter()
        .find(|m| *m.get_type() == SdpMediaValue::Video)
        .ok_or(SdpReadError::NoVideo)?;
    let port = video.get_port();
    if port == 0 || port > 65535 {
        return Err(SdpReadError::BadPort(port));
    }
    let mut payload_type = None;
    let mut capture_time_ext_id = None;
    for a in video.get_attributes() {
        match a {
            SdpAttribute::Rtpmap(r)
                if r.codec_name.eq_ignore_ascii_case("H264") && r.frequency == 90_000 =>
            {
                payload_type.get_or_insert(r.payload_type);
            }
            SdpAttribute::Extmap(x)
                if x.url == ABS_CAPTURE_TIME_URI && (1..=14).contains(&x.id) =>
            {
                capture_time_ext_id = Some(x.id as u8)
            }
            _ => {}
        }
    }
    Ok(SdpInfo {
        port: port as u16,
        payload_type: payload_type.ok_or(SdpReadError::NoH264)?,
        capture_time_ext_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_write_reads_back() {
        let ps = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        for (ip, ext) in [("127.0.0.1", Some(3)), ("::1", None)] {
            let s = write_sdp(&SdpParams {
                origin: ip.parse().unwrap(),
                dest: ip.parse().unwrap(),
                port: 6000,
                payload_type: 102,
                parameter_sets: &ps,
                capture_time_ext_id: ext,
                fps: (30000, 1001),
                session_id: 7,
            })
            .unwrap();
            assert_eq!(
                read_sdp(&s),
                Ok(SdpInfo {
                    port: 6000,
                    payload_type: 102,
                    capture_time_ext_id: ext
                }),
                "{s}"
            );
        }
    }

    #[test]
    fn bad_sdp_is_named_never_a_panic() {
        assert!(matches!(read_sdp("hello"), Err(SdpReadError::Syntax(_))));
        let audio = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=x\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
        assert_eq!(read_sdp(audio), Err(SdpReadError::NoVideo));
        let vp8 = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=x\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5000 RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\n";
        assert_eq!(read_sdp(vp8), Err(SdpReadError::NoH264));
        assert_eq!(
            SdpReadError::NoH264.to_string(),
            "no a=rtpmap:PT H264/90000 in the video section"
        );
    }

    #[test]
    fn sdp_has_every_line_a_player_needs() {
        let ps = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        let s = write_sdp(&SdpParams {
            origin: "10.0.0.1".parse().unwrap(),
            dest: "127.0.0.1".parse().unwrap(),
            port: 5004,
            payload_type: 96,
            parameter_sets: &ps,
            capture_time_ext_id: Some(1),
            fps: (60, 1),
            session_id: 42,
        })
        .unwrap();
        assert!(s.contains("m=video 5004 RTP/AVP 96\r\n"));
        assert!(s.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(
            s.contains("profile-level-id=42c01f;sprop-parameter-sets=Z0LAH9o=,aM48gA==\r\n"),
            "{s}"
        );
        assert!(
            s.contains("a=extmap:1 http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time")
        );
        assert!(s.contains("a=framerate:60\r\n"));
        let e = write_sdp(&SdpParams {
            origin: "::1".parse().unwrap(),
            dest: "::1".parse().unwrap(),
            port: 1,
            payload_type: 96,
            parameter_sets: &ps[..9],
            capture_time_ext_id: None,
            fps: (30000, 1001),
            session_id: 1,
        });
        assert_eq!(e, Err(SdpError::NoPps));
    }
}
