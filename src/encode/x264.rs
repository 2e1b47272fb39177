//! The x264 backend: libx264 through `x264-sys` (FFI: the only `unsafe` of this module).
//!
//! Low-latency settings: preset from config (default ultrafast) + tune zerolatency, no
//! B-frames, no lookahead (rc_lookahead = sync_lookahead = 0), no frame threads (sliced
//! threads when `threads > 1`), VBV-capped ABR (CBR-like: `vbv_maxrate = bitrate`), keyint or
//! periodic intra refresh, SPS/PPS repeated before every IDR (`b_repeat_headers`), Annex-B
//! start codes. x264 writes the VUI bitstream restriction with `max_num_reorder_frames = 0`
//! when there are no B-frames; the integration test checks it with ffmpeg's trace_headers.
//!
//! One frame in → its whole access unit out of the same `x264_encoder_encode` call: checked
//! on every frame (no delayed frames, output pts = input pts), an error otherwise.

use super::{EncodeError, Encoded, EncoderParams, VideoEncoder};
use crate::source::SourceFormat;
use std::ffi::CString;
use x264_sys as x;

/// A libx264 encoder instance.
pub struct X264Encoder {
    enc: *mut x::x264_t,
    param: x::x264_param_t,
    format: SourceFormat,
    pts: i64,
    bitrate_kbps: u32,
    vbv_buffer_ms: u32,
    scratch: Vec<u8>,
}

// SAFETY: an x264_t may be used from any one thread at a time; X264Encoder is not Sync and
// every method takes &mut self.
unsafe impl Send for X264Encoder {}

fn vbv_kbit(kbps: u32, ms: u32) -> i32 {
    ((kbps as u64 * ms as u64) / 1000).max(1) as i32
}

impl X264Encoder {
    /// Opens an encoder with `p`.
    ///
    /// Errors: [`EncodeError::Open`] when x264 rejects the preset, profile or parameters.
    pub fn new(params: &EncoderParams) -> Result<X264Encoder, EncodeError> {
        let p = &params.enc;
        let preset =
            CString::new(p.preset.as_str()).map_err(|_| EncodeError::Open("bad preset".into()))?;
        let tune = c"zerolatency";
        let profile = CString::new(p.profile.as_str())
            .map_err(|_| EncodeError::Open("bad profile".into()))?;
        let mut param = std::mem::MaybeUninit::<x::x264_param_t>::uninit();
        // SAFETY: x264_param_default_preset fully initializes `param` when it returns 0.
        let r = unsafe {
            x::x264_param_default_preset(param.as_mut_ptr(), preset.as_ptr(), tune.as_ptr())
        };
        if r != 0 {
            return Err(EncodeError::Open(format!("unknown preset {:?}", p.preset)));
        }
        // SAFETY: initialized by the successful call above.
        let mut param = unsafe { param.assume_init() };
        let f = params.format;
        param.i_log_level = x::X264_LOG_WARNING as i32;
        param.i_width = f.width as i32;
        param.i_height = f.height as i32;
        param.i_csp = x::X264_CSP_I420 as i32;
        param.i_fps_num = f.fps_num;
        param.i_fps_den = f.fps_den;
        param.i_timebase_num = f.fps_den;
        param.i_timebase_den = f.fps_num;
        param.b_vfr_input = 0;
        // 0 (one per CPU of the encode stage's set) is resolved by the caller
        // (crate::stage::encoder_config); here it means 1.
        let threads = p.threads.max(1);
        param.i_threads = threads as i32;
        param.b_sliced_threads = (threads > 1) as i32;
        param.i_lookahead_threads = 1;
        param.i_sync_lookahead = 0;
        param.i_bframe = 0;
        param.rc.i_lookahead = 0;
        param.rc.b_mb_tree = 0;
        param.rc.i_rc_method = x::X264_RC_ABR as i32;
        param.rc.i_bitrate = p.bitrate_kbps as i32;
        param.rc.i_vbv_max_bitrate = p.bitrate_kbps as i32;
        param.rc.i_vbv_buffer_size = vbv_kbit(p.bitrate_kbps, p.vbv_buffer_ms);
        param.rc.f_vbv_buffer_init = 0.9;
        param.i_keyint_max = if p.keyint == 0 {
            x::X264_KEYINT_MAX_INFINITE as i32
        } else {
            p.keyint as i32
        };
        param.i_scenecut_threshold = 0;
        param.b_intra_refresh = p.intra_refresh as i32;
        param.b_repeat_headers = 1;
        param.b_annexb = 1;
        param.b_aud = 0;
        // SAFETY: `param` is initialized; `profile` is a valid C string.
        if unsafe { x::x264_param_apply_profile(&mut param, profile.as_ptr()) } != 0 {
            return Err(EncodeError::Open(format!(
                "profile {:?} cannot be applied",
                p.profile
            )));
        }
        // SAFETY: `param` is a fully initialized parameter set; x264 copies it.
        let enc = unsafe { x::x264_encoder_open(&mut param) };
        if enc.is_null() {
            return Err(EncodeError::Open(format!(
                "x264_encoder_open rejected {}x{} @ {}/{} fps",
                f.width, f.height, f.fps_num, f.fps_den
            )));
        }
        Ok(X264Encoder {
            enc,
            param,
            format: f,
            pts: 0,
            bitrate_kbps: p.bitrate_kbps,
            vbv_buffer_ms: p.vbv_buffer_ms,
            scratch: Vec::new(),
        })
    }
}

impl VideoEncoder for X264Encoder {
    fn describe(&self) -> String {
        "x264".into()
    }

    /// The SPS and PPS NAL units (Annex-B) the stream will use, for the SDP's
    /// sprop-parameter-sets.
    fn headers(&mut self) -> Result<Vec<u8>, EncodeError> {
        let mut nals: *mut x::x264_nal_t = std::ptr::null_mut();
        let mut n: i32 = 0;
        // SAFETY: enc is open; x264 sets nals/n to an array it owns until the next call.
        let r = unsafe { x::x264_encoder_headers(self.enc, &mut nals, &mut n) };
        if r < 0 || nals.is_null() {
            return Err(EncodeError::Encode(r));
        }
        let mut out = Vec::new();
        for i in 0..n as usize {
            // SAFETY: i < n entries of the array x264 returned.
            let nal = unsafe { &*nals.add(i) };
            if nal.i_type == x::nal_unit_type_e_NAL_SPS as i32
                || nal.i_type == x::nal_unit_type_e_NAL_PPS as i32
            {
                // SAFETY: p_payload points to i_payload bytes owned by x264.
                out.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(nal.p_payload, nal.i_payload as usize)
                });
            }
        }
        Ok(out)
    }

    /// Encodes one I420 frame (`format().frame_bytes()` bytes, read in place: x264 does
    /// not write its input), forcing an IDR if `force_idr`.
    ///
    /// Errors: [`EncodeError::BadFrame`], [`EncodeError::Encode`], and
    /// [`EncodeError::Delayed`] if x264 did not return this frame's access unit.
    fn encode(&mut self, i420: &[u8], force_idr: bool) -> Result<Encoded<'_>, EncodeError> {
        let f = self.format;
        let (w, h) = (f.width as usize, f.height as usize);
        EncodeError::check_frame(i420, f)?;
        let mut pic = std::mem::MaybeUninit::<x::x264_picture_t>::uninit();
        // SAFETY: x264_picture_init fully initializes the picture struct.
        unsafe { x::x264_picture_init(pic.as_mut_ptr()) };
        // SAFETY: initialized just above.
        let mut pic = unsafe { pic.assume_init() };
        pic.img.i_csp = x::X264_CSP_I420 as i32;
        pic.img.i_plane = 3;
        pic.img.i_stride = [w as i32, (w / 2) as i32, (w / 2) as i32, 0];
        let base = i420.as_ptr() as *mut u8;
        // SAFETY: the three planes lie inside `i420` (length checked above); x264 only reads
        // input planes, so the *mut cast never leads to a write.
        pic.img.plane = unsafe {
            [
                base,
                base.add(w * h),
                base.add(w * h + (w / 2) * (h / 2)),
                std::ptr::null_mut(),
            ]
        };
        pic.i_pts = self.pts;
        pic.i_type = if force_idr {
            x::X264_TYPE_IDR as i32
        } else {
            x::X264_TYPE_AUTO as i32
        };
        let mut out = std::mem::MaybeUninit::<x::x264_picture_t>::uninit();
        let mut nals: *mut x::x264_nal_t = std::ptr::null_mut();
        let mut n: i32 = 0;
        // SAFETY: enc is open, `pic` describes a valid frame for the call's duration; x264
        // fills `out`, `nals`, `n` (valid until the next call on this encoder).
        let size = unsafe {
            x::x264_encoder_encode(self.enc, &mut nals, &mut n, &mut pic, out.as_mut_ptr())
        };
        if size < 0 {
            return Err(EncodeError::Encode(size));
        }
        // SAFETY: plain query on an open encoder.
        let delayed = unsafe { x::x264_encoder_delayed_frames(self.enc) };
        if size == 0 || n == 0 || delayed != 0 {
            return Err(EncodeError::Delayed {
                pts: self.pts,
                delayed,
            });
        }
        // SAFETY: x264 wrote `out` because it returned a frame (size > 0).
        let out = unsafe { out.assume_init() };
        if out.i_pts != self.pts {
            return Err(EncodeError::Delayed {
                pts: self.pts,
                delayed,
            });
        }
        self.pts += 1;
        // SAFETY: x264 returned n >= 1 NAL entries; its docs guarantee the payloads are
        // sequential in memory, which we check before making one slice of them.
        let (first, last) = unsafe { (&*nals, &*nals.add(n as usize - 1)) };
        // SAFETY: p_payload + i_payload of the last NAL is the end of its payload.
        let end = unsafe { last.p_payload.add(last.i_payload as usize) };
        let total: usize = (0..n as usize)
            // SAFETY: i < n.
            .map(|i| unsafe { (*nals.add(i)).i_payload as usize })
            .sum();
        let contiguous = end as usize - first.p_payload as usize == total;
        let data: &[u8] = if contiguous {
            // SAFETY: contiguous payloads: `total` bytes from the first payload, owned by x264
            // until the next call on this encoder (the borrow of self ensures that).
            unsafe { std::slice::from_raw_parts(first.p_payload, total) }
        } else {
            self.scratch.clear();
            for i in 0..n as usize {
                // SAFETY: i < n; each payload is i_payload bytes.
                let nal = unsafe { &*nals.add(i) };
                // SAFETY: as above.
                self.scratch.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(nal.p_payload, nal.i_payload as usize)
                });
            }
            &self.scratch
        };
        Ok(Encoded {
            data,
            keyframe: out.b_keyframe != 0,
            nal_count: n as usize,
            qp: out.i_qpplus1 - 1,
        })
    }

    /// Changes the target/maximum bitrate (kbit/s) from the next frame on, keeping the VBV
    /// buffer at the same number of ms (x264_encoder_reconfig).
    fn set_bitrate(&mut self, kbps: u32) -> Result<(), EncodeError> {
        self.param.rc.i_bitrate = kbps as i32;
        self.param.rc.i_vbv_max_bitrate = kbps as i32;
        self.param.rc.i_vbv_buffer_size = vbv_kbit(kbps, self.vbv_buffer_ms);
        // SAFETY: enc is open and `param` is the full parameter set it was opened with.
        let r = unsafe { x::x264_encoder_reconfig(self.enc, &mut self.param) };
        if r < 0 {
            return Err(EncodeError::Open(format!(
                "reconfig to {kbps} kbit/s refused"
            )));
        }
        self.bitrate_kbps = kbps;
        Ok(())
    }

    /// Current target bitrate, kbit/s.
    fn bitrate_kbps(&self) -> u32 {
        self.bitrate_kbps
    }
}

impl Drop for X264Encoder {
    fn drop(&mut self) {
        // SAFETY: enc was opened by x264_encoder_open and is closed exactly once.
        unsafe { x::x264_encoder_close(self.enc) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncoderConfig;
    use crate::source::pattern;

    fn params() -> EncoderParams {
        EncoderParams {
            format: SourceFormat {
                width: 320,
                height: 240,
                fps_num: 60,
                fps_den: 1,
            },
            enc: EncoderConfig {
                backend: "x264".into(),
                device: "/dev/video11".into(),
                bitrate_kbps: 2000,
                vbv_buffer_ms: 100,
                keyint: 30,
                intra_refresh: false,
                threads: 1,
                preset: "ultrafast".into(),
                profile: "high".into(),
            },
        }
    }

    #[test]
    fn every_frame_comes_out_of_its_own_call() {
        let p = params();
        let mut e = X264Encoder::new(&p).unwrap();
        let hdr = e.headers().unwrap();
        assert_eq!(&hdr[..4], &[0, 0, 0, 1]);
        assert_eq!(hdr[4] & 0x1f, 7, "SPS first");
        let mut buf = vec![0u8; p.format.frame_bytes()];
        let mut keyframes = vec![];
        for i in 0..65u64 {
            pattern::draw(&mut buf, 320, 240, i);
            let force = i == 40;
            let out = e.encode(&buf, force).unwrap();
            assert!(out.data.starts_with(&[0, 0, 0, 1]) || out.data.starts_with(&[0, 0, 1]));
            if out.keyframe {
                keyframes.push(i);
                // SPS/PPS repeated before each IDR.
                assert_eq!(out.data[4] & 0x1f, 7);
            }
        }
        assert_eq!(keyframes, vec![0, 30, 40], "periodic and forced IDRs");
        e.set_bitrate(500).unwrap();
        assert_eq!(e.bitrate_kbps(), 500);
        assert!(e.encode(&buf[..10], false).is_err());
    }

    #[test]
    fn bitrate_change_at_run_time_takes_effect() {
        let p = params();
        let mut e = X264Encoder::new(&p).unwrap();
        let mut buf = vec![0u8; p.format.frame_bytes()];
        let mut x = 1u32;
        let mut sizes = vec![];
        for i in 0..120u64 {
            if i == 60 {
                e.set_bitrate(300).unwrap();
            }
            // Noise, so the rate control (not the content) decides the size.
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            sizes.push(e.encode(&buf, false).unwrap().data.len());
        }
        let before: usize = sizes[30..60].iter().sum();
        let after: usize = sizes[90..120].iter().sum();
        // 2000 -> 300 kbit/s: 30 frames at 60 fps should shrink to about 15%.
        assert!(after * 3 < before, "before {before} B, after {after} B");
        let kbps = |b: usize| b as f64 * 8.0 / 0.5 / 1000.0;
        assert!(
            kbps(after) < 300.0 * 1.6,
            "{} kbit/s after the change",
            kbps(after)
        );
    }

    #[test]
    fn bad_preset_is_an_error() {
        let mut p = params();
        p.enc.preset = "nope".into();
        assert!(X264Encoder::new(&p).is_err());
    }
}
