//! Detections on the wire: one RTCP APP packet (RFC 3550 §6.7, PT 204, subtype 0, name
//! `VRDT`) per detection result, sent on the RTCP port by the network stage, from the
//! stream's SSRC. Pure (no I/O).
//!
//! Application data, big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | RTP timestamp (90 kHz) of the video frame the detections were made on |
//! | 2, 2 | frame width, height (pixels: the box coordinates' space) |
//! | 2 | detection count n (≤ 32) |
//! | 2 | reserved, 0 |
//! | 12 × n | per detection: class (u16, COCO index), score (u16, × 65535), x0, y0, x1, y1 (u16, frame pixels, clamped) |
//!
//! The receiver matches the RTP timestamp with the frame it received (its
//! abs-capture-time then gives the detection's age).

use super::Detection;

/// The APP packet name.
pub const APP_NAME: [u8; 4] = *b"VRDT";
/// The APP subtype.
pub const APP_SUBTYPE: u8 = 0;

/// A decoded detection message.
#[derive(Debug, Clone, PartialEq)]
pub struct WireDetections {
    /// RTP timestamp of the frame.
    pub rtp_ts: u32,
    /// Frame size, pixels.
    pub frame: (u16, u16),
    /// The detections (scores and boxes quantized to 1/65535 and whole pixels).
    pub detections: Vec<Detection>,
}

/// Errors of [`decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the header or than its count says.
    #[error("detection message of {len} bytes: too short for {count} detections")]
    Short {
        /// Bytes present.
        len: usize,
        /// Count claimed.
        count: usize,
    },
}

/// The APP data for `dets` made on the frame with RTP timestamp `rtp_ts`, of `w × h`.
pub fn encode(rtp_ts: u32, w: u32, h: u32, dets: &[Detection]) -> Vec<u8> {
    let dets = &dets[..dets.len().min(super::MAX_DETECTIONS)];
    let mut out = Vec::with_capacity(12 + 12 * dets.len());
    out.extend_from_slice(&rtp_ts.to_be_bytes());
    let (w16, h16) = (w.min(65535) as u16, h.min(65535) as u16);
    out.extend_from_slice(&w16.to_be_bytes());
    out.extend_from_slice(&h16.to_be_bytes());
    out.extend_from_slice(&(dets.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    for d in dets {
        let px = |v: f32, max: u16| (v.round().clamp(0.0, max as f32)) as u16;
        out.extend_from_slice(&d.class.to_be_bytes());
        out.extend_from_slice(&((d.score.clamp(0.0, 1.0) * 65535.0).round() as u16).to_be_bytes());
        for (v, m) in [
            (d.bbox[0], w16),
            (d.bbox[1], h16),
            (d.bbox[2], w16),
            (d.bbox[3], h16),
        ] {
            out.extend_from_slice(&px(v, m).to_be_bytes());
        }
    }
    out
}

/// Decodes APP data made by [`encode`] (trailing padding allowed).
///
/// Errors: [`WireError::Short`].
pub fn decode(b: &[u8]) -> Result<WireDetections, WireError> {
    let u16at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    if b.len() < 12 {
        return Err(WireError::Short {
            len: b.len(),
            count: 0,
        });
    }
    let n = u16at(8) as usize;
    if b.len() < 12 + 12 * n {
        return Err(WireError::Short {
            len: b.len(),
            count: n,
        });
    }
    let detections = (0..n)
        .map(|i| {
            let o = 12 + 12 * i;
            Detection {
                class: u16at(o),
                score: u16at(o + 2) as f32 / 65535.0,
                bbox: [
                    u16at(o + 4) as f32,
                    u16at(o + 6) as f32,
                    u16at(o + 8) as f32,
                    u16at(o + 10) as f32,
                ],
            }
        })
        .collect();
    Ok(WireDetections {
        rtp_ts: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        frame: (u16at(4), u16at(6)),
        detections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_an_rtcp_app_packet() {
        let dets = vec![
            Detection {
                class: 16,
                score: 0.38444,
                bbox: [71.4, 220.7, 344.1, 544.3],
            },
            Detection {
                class: 2,
                score: 1.2,
                bbox: [-5.0, 10.0, 900.0, 20.0],
            },
        ];
        let data = encode(0xdead_beef, 768, 576, &dets);
        assert_eq!(data.len(), 12 + 24);
        let mut pkt = vec![];
        crate::rtcp::write_app(&mut pkt, 0x1234, APP_SUBTYPE, APP_NAME, &data);
        let parsed = crate::rtcp::parse_compound(&pkt).unwrap();
        let crate::rtcp::Rtcp::App {
            ssrc,
            subtype,
            name,
            data,
        } = &parsed[0]
        else {
            panic!("{parsed:?}")
        };
        assert_eq!((*ssrc, *subtype, *name), (0x1234, 0, *b"VRDT"));
        let w = decode(data).unwrap();
        assert_eq!(w.rtp_ts, 0xdead_beef);
        assert_eq!(w.frame, (768, 576));
        assert_eq!(w.detections[0].class, 16);
        assert!((w.detections[0].score - 0.38444).abs() < 1e-4);
        assert_eq!(w.detections[0].bbox, [71.0, 221.0, 344.0, 544.0]);
        // Clamped to the score range and the frame.
        assert_eq!(w.detections[1].score, 1.0);
        assert_eq!(w.detections[1].bbox, [0.0, 10.0, 768.0, 20.0]);
        assert!(matches!(
            decode(&data[..20]),
            Err(WireError::Short { count: 2, .. })
        ));
        assert!(decode(&encode(1, 2, 2, &[])).unwrap().detections.is_empty());
    }
}
