//! Inputs shared by the benches.

use vr_stream::encode::{EncoderParams, VideoEncoder, X264Encoder};
use vr_stream::source::{SourceFormat, pattern};

/// Two real x264 access units of the 1280x720 pattern with the built-in default
/// `[encoder]` section (8000 kbit/s, keyint 60, ultrafast): ("idr", bytes), ("p", bytes).
pub fn access_units() -> Vec<(&'static str, Vec<u8>)> {
    let fmt = SourceFormat {
        width: 1280,
        height: 720,
        fps_num: 60,
        fps_den: 1,
    };
    let mut e = X264Encoder::new(&EncoderParams {
        format: fmt,
        // The built-in default [encoder] section: 8000 kbit/s, keyint 60, ultrafast.
        enc: vr_stream::config::load(&[]).unwrap().encoder,
    })
    .unwrap();
    let mut buf = vec![0u8; fmt.frame_bytes()];
    let mut out = vec![];
    for i in 0..2 {
        pattern::draw(&mut buf, 1280, 720, i);
        let au = e.encode(&buf, false).unwrap();
        out.push((if au.keyframe { "idr" } else { "p" }, au.data.to_vec()));
    }
    out
}
