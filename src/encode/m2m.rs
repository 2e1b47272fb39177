//! The pure half of the V4L2 memory-to-memory (stateful) H.264 encoder: which controls to
//! set and to what, which raw format to feed and how a frame is laid out in the driver's
//! buffers, and how dequeued CAPTURE buffers become access units. No I/O, no `unsafe`: the
//! device half (`v4l2m2m.rs`, feature `v4l2-m2m`) asks the driver (VIDIOC_QUERYCTRL,
//! VIDIOC_QUERYMENU, VIDIOC_ENUM_FMT, VIDIOC_S_FMT) and hands the answers to these
//! functions, so every decision is unit-tested here without a device.
//!
//! Sources: the stateful encoder interface (kernel doc
//! `userspace-api/media/v4l/dev-encoder.rst`), the codec controls
//! (`ext-ctrls-codec.rst`, ids from `include/uapi/linux/v4l2-controls.h`), H.264 Annex A
//! Table A-1 for levels.

use crate::config::EncoderConfig;
use crate::rtp::nal_units;
use crate::source::SourceFormat;
use std::collections::BTreeMap;

/// The control ids (`V4L2_CID_MPEG_VIDEO_*`, kernel doc
/// `userspace-api/media/v4l/ext-ctrls-codec.rst`), from the kernel's `<linux/v4l2-controls.h>`
/// as bindgen generates it for crate v4l2-sys-mit (the `v4l` crate's bindings, built anyway):
/// no id is typed by hand. What each one is:
/// - B_FRAMES (integer); GOP_SIZE (integer, frames); H264_I_PERIOD (integer, frames
///   between IDRs);
/// - BITRATE_MODE (menu: VBR 0, CBR 1, CQ 2); BITRATE (integer, bit/s);
/// - CYCLIC_INTRA_REFRESH_MB (integer, macroblocks per frame); INTRA_REFRESH_PERIOD
///   (integer, frames; kernel 6.1+);
/// - HEADER_MODE (menu: separate 0, joined with the 1st frame 1); REPEAT_SEQ_HEADER
///   (boolean): SPS/PPS before every IDR; FORCE_KEY_FRAME (button): the next frame is an
///   IDR;
/// - H264_LEVEL (menu, [`H264_LEVELS`] order); H264_PROFILE (menu: baseline 0,
///   constrained baseline 1, main 2, extended 3, high 4, ...).
pub use v4l2_sys_mit::{
    V4L2_CID_MPEG_VIDEO_B_FRAMES as CID_B_FRAMES, V4L2_CID_MPEG_VIDEO_BITRATE as CID_BITRATE,
    V4L2_CID_MPEG_VIDEO_BITRATE_MODE as CID_BITRATE_MODE,
    V4L2_CID_MPEG_VIDEO_CYCLIC_INTRA_REFRESH_MB as CID_CYCLIC_INTRA_REFRESH_MB,
    V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME as CID_FORCE_KEY_FRAME,
    V4L2_CID_MPEG_VIDEO_GOP_SIZE as CID_GOP_SIZE,
    V4L2_CID_MPEG_VIDEO_H264_I_PERIOD as CID_H264_I_PERIOD,
    V4L2_CID_MPEG_VIDEO_H264_LEVEL as CID_H264_LEVEL,
    V4L2_CID_MPEG_VIDEO_H264_PROFILE as CID_H264_PROFILE,
    V4L2_CID_MPEG_VIDEO_HEADER_MODE as CID_HEADER_MODE,
    V4L2_CID_MPEG_VIDEO_INTRA_REFRESH_PERIOD as CID_INTRA_REFRESH_PERIOD,
    V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER as CID_REPEAT_SEQ_HEADER,
};

/// Every control the negotiation may look at, with its name for messages; the device half
/// queries exactly these.
pub const CONTROLS: &[(u32, &str)] = &[
    (CID_B_FRAMES, "b_frames"),
    (CID_GOP_SIZE, "gop_size"),
    (CID_BITRATE_MODE, "bitrate_mode"),
    (CID_BITRATE, "video_bitrate"),
    (CID_CYCLIC_INTRA_REFRESH_MB, "cyclic_intra_refresh_mb"),
    (CID_HEADER_MODE, "sequence_header_mode"),
    (CID_REPEAT_SEQ_HEADER, "repeat_sequence_header"),
    (CID_FORCE_KEY_FRAME, "force_key_frame"),
    (CID_INTRA_REFRESH_PERIOD, "intra_refresh_period"),
    (CID_H264_I_PERIOD, "h264_i_frame_period"),
    (CID_H264_LEVEL, "h264_level"),
    (CID_H264_PROFILE, "h264_profile"),
];

/// The name of control `id` as `v4l2-ctl --list-ctrls` prints it (or the hex id).
pub fn control_name(id: u32) -> String {
    CONTROLS
        .iter()
        .find(|c| c.0 == id)
        .map(|c| c.1.to_string())
        .unwrap_or_else(|| format!("{id:#x}"))
}

const PROFILE_BASELINE: i64 = 0;
const PROFILE_CONSTRAINED_BASELINE: i64 = 1;
const PROFILE_MAIN: i64 = 2;
const PROFILE_HIGH: i64 = 4;
const BITRATE_MODE_CBR: i64 = 1;
const BITRATE_MODE_VBR: i64 = 0;
const HEADER_MODE_JOINED: i64 = 1;

/// One H.264 level of Annex A Table A-1: its name, the V4L2 menu index, max macroblocks
/// per second (MaxMBPS), max frame size in macroblocks (MaxFS) and max video bitrate for
/// Baseline/Main (MaxBR, kbit/s; High allows 1.25x).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H264Level {
    /// "3.1" and so on.
    pub name: &'static str,
    /// `enum v4l2_mpeg_video_h264_level` value.
    pub v4l2: i64,
    /// MaxMBPS, macroblocks/s.
    pub max_mbps: u64,
    /// MaxFS, macroblocks.
    pub max_fs: u64,
    /// MaxBR, kbit/s (Baseline/Main).
    pub max_br_kbps: u64,
}

/// H.264 Table A-1 (level 1b left out: it is never the smallest level that fits).
pub const H264_LEVELS: &[H264Level] = &[
    H264Level {
        name: "1.0",
        v4l2: 0,
        max_mbps: 1485,
        max_fs: 99,
        max_br_kbps: 64,
    },
    H264Level {
        name: "1.1",
        v4l2: 2,
        max_mbps: 3000,
        max_fs: 396,
        max_br_kbps: 192,
    },
    H264Level {
        name: "1.2",
        v4l2: 3,
        max_mbps: 6000,
        max_fs: 396,
        max_br_kbps: 384,
    },
    H264Level {
        name: "1.3",
        v4l2: 4,
        max_mbps: 11880,
        max_fs: 396,
        max_br_kbps: 768,
    },
    H264Level {
        name: "2.0",
        v4l2: 5,
        max_mbps: 11880,
        max_fs: 396,
        max_br_kbps: 2000,
    },
    H264Level {
        name: "2.1",
        v4l2: 6,
        max_mbps: 19800,
        max_fs: 792,
        max_br_kbps: 4000,
    },
    H264Level {
        name: "2.2",
        v4l2: 7,
        max_mbps: 20250,
        max_fs: 1620,
        max_br_kbps: 4000,
    },
    H264Level {
        name: "3.0",
        v4l2: 8,
        max_mbps: 40500,
        max_fs: 1620,
        max_br_kbps: 10000,
    },
    H264Level {
        name: "3.1",
        v4l2: 9,
        max_mbps: 108000,
        max_fs: 3600,
        max_br_kbps: 14000,
    },
    H264Level {
        name: "3.2",
        v4l2: 10,
        max_mbps: 216000,
        max_fs: 5120,
        max_br_kbps: 20000,
    },
    H264Level {
        name: "4.0",
        v4l2: 11,
        max_mbps: 245760,
        max_fs: 8192,
        max_br_kbps: 20000,
    },
    H264Level {
        name: "4.1",
        v4l2: 12,
        max_mbps: 245760,
        max_fs: 8192,
        max_br_kbps: 50000,
    },
    H264Level {
        name: "4.2",
        v4l2: 13,
        max_mbps: 522240,
        max_fs: 8704,
        max_br_kbps: 50000,
    },
    H264Level {
        name: "5.0",
        v4l2: 14,
        max_mbps: 589824,
        max_fs: 22080,
        max_br_kbps: 135000,
    },
    H264Level {
        name: "5.1",
        v4l2: 15,
        max_mbps: 983040,
        max_fs: 36864,
        max_br_kbps: 240000,
    },
    H264Level {
        name: "5.2",
        v4l2: 16,
        max_mbps: 2073600,
        max_fs: 36864,
        max_br_kbps: 240000,
    },
];

/// The smallest level whose frame size, macroblock rate, frame dimensions
/// (each side ≤ √(8·MaxFS) macroblocks, A.3.1) and bitrate (×1.25 for High) admit the
/// stream; `None` if even 5.2 does not.
pub fn h264_level_for(f: SourceFormat, bitrate_kbps: u32, profile: &str) -> Option<H264Level> {
    let (wmb, hmb) = (f.width.div_ceil(16) as u64, f.height.div_ceil(16) as u64);
    let fs = wmb * hmb;
    // Macroblocks per second, rounded up: fps = num/den.
    let mbps = (fs * f.fps_num as u64).div_ceil(f.fps_den.max(1) as u64);
    let br_factor = if profile == "high" { 1.25 } else { 1.0 };
    H264_LEVELS.iter().copied().find(|l| {
        let side = ((8 * l.max_fs) as f64).sqrt() as u64;
        fs <= l.max_fs
            && mbps <= l.max_mbps
            && wmb <= side
            && hmb <= side
            && bitrate_kbps as f64 <= l.max_br_kbps as f64 * br_factor
    })
}

/// What VIDIOC_QUERYCTRL (and, for menus, VIDIOC_QUERYMENU) told about one control.
#[derive(Debug, Clone, PartialEq)]
pub struct CtrlInfo {
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
    /// Step between values (1 for menus and booleans).
    pub step: u64,
    /// For menu controls, the item values the driver implements (QUERYMENU succeeded);
    /// `None` for other types.
    pub menu: Option<Vec<i64>>,
    /// The control is a button (write-only trigger).
    pub button: bool,
}

impl CtrlInfo {
    /// An integer control `min..=max` with step 1.
    pub fn int(min: i64, max: i64) -> CtrlInfo {
        CtrlInfo {
            min,
            max,
            step: 1,
            menu: None,
            button: false,
        }
    }
    /// Setting control `id` (this one) to `value`, when the value is in its range.
    ///
    /// Errors: [`NegotiationError::OutOfRange`] naming `key` (what the value is for: a
    /// config key, or a fixed choice such as "B-frames"), the control and `unit`.
    fn set(
        &self,
        id: u32,
        key: &'static str,
        value: i64,
        unit: &'static str,
    ) -> Result<CtrlSet, NegotiationError> {
        if value < self.min || value > self.max {
            return Err(NegotiationError::OutOfRange {
                key,
                value,
                control: control_name(id),
                min: self.min,
                max: self.max,
                unit,
            });
        }
        Ok(CtrlSet { id, value })
    }
    /// A boolean control.
    pub fn boolean() -> CtrlInfo {
        CtrlInfo::int(0, 1)
    }
    /// A button control.
    pub fn button() -> CtrlInfo {
        CtrlInfo {
            min: 0,
            max: 0,
            step: 0,
            menu: None,
            button: true,
        }
    }
    /// A menu control implementing `items`.
    pub fn menu(items: &[i64]) -> CtrlInfo {
        let (min, max) = (
            items.iter().copied().min().unwrap_or(0),
            items.iter().copied().max().unwrap_or(0),
        );
        CtrlInfo {
            min,
            max,
            step: 1,
            menu: Some(items.to_vec()),
            button: false,
        }
    }
    fn has_item(&self, v: i64) -> bool {
        self.menu
            .as_ref()
            .map(|m| m.contains(&v))
            .unwrap_or(v >= self.min && v <= self.max)
    }
}

/// The controls a device has: control id → what it reported. Ids it lacks are absent.
pub type DeviceControls = BTreeMap<u32, CtrlInfo>;

/// One control to set, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct CtrlSet {
    /// Control id.
    pub id: u32,
    /// Value to write.
    pub value: i64,
}

/// The outcome of [`negotiate_controls`]: what to set before streaming, and how to drive
/// the encoder afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    /// Controls to set (VIDIOC_S_EXT_CTRLS), in this order.
    pub set: Vec<CtrlSet>,
    /// The level chosen.
    pub level: H264Level,
    /// The bitrate range the device takes, bit/s (run-time changes are clamped to it).
    pub bitrate_range_bps: (i64, i64),
    /// The device repeats SPS/PPS before IDRs itself; otherwise the access-unit assembler
    /// inserts them.
    pub repeats_headers: bool,
    /// Things worth telling the user (settings the device cannot honour exactly).
    pub notes: Vec<String>,
}

/// Why the device cannot encode the configured stream. Every message names the control or
/// the config key and what the device allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NegotiationError {
    /// A control the configuration needs is missing.
    #[error("the encoder has no {control} control, needed for {needed_for}")]
    Missing {
        /// Control name.
        control: String,
        /// What it is needed for.
        needed_for: &'static str,
    },
    /// A configured value is outside what the device accepts.
    #[error(
        "{key} = {value} is outside what the encoder's {control} control accepts ({min}..={max}{unit})"
    )]
    OutOfRange {
        /// Config key.
        key: &'static str,
        /// The configured value in the control's unit.
        value: i64,
        /// Control name.
        control: String,
        /// Device minimum.
        min: i64,
        /// Device maximum.
        max: i64,
        /// Unit suffix.
        unit: &'static str,
    },
    /// The profile is not in the device's menu.
    #[error("encoder.profile = {wanted:?} is not offered by the encoder (it has {offered})")]
    Profile {
        /// Configured profile.
        wanted: String,
        /// The profiles the device offers.
        offered: String,
    },
    /// The stream needs a higher level than the device offers.
    #[error(
        "{w}x{h} at {fps} fps and {kbps} kbit/s needs H.264 level {needed}, the encoder offers up to {max}"
    )]
    Level {
        /// Width.
        w: u32,
        /// Height.
        h: u32,
        /// Frame rate.
        fps: String,
        /// Bitrate, kbit/s.
        kbps: u32,
        /// Level needed.
        needed: String,
        /// Highest level offered.
        max: String,
    },
}

fn profile_value(name: &str) -> i64 {
    match name {
        "baseline" => PROFILE_BASELINE,
        "main" => PROFILE_MAIN,
        _ => PROFILE_HIGH,
    }
}

fn profile_name(v: i64) -> &'static str {
    match v {
        PROFILE_BASELINE => "baseline",
        PROFILE_CONSTRAINED_BASELINE => "constrained baseline",
        PROFILE_MAIN => "main",
        3 => "extended",
        PROFILE_HIGH => "high",
        _ => "other",
    }
}

/// Decides every control from the `[encoder]` configuration and the stream format, against
/// what the device reported.
///
/// Rules: bitrate (bit/s) must be within the control's range (error naming
/// `encoder.bitrate_kbps` otherwise); CBR when offered, else VBR (noted); IDR period from
/// `encoder.keyint` through H264_I_PERIOD, or GOP_SIZE when the driver has only that
/// (`keyint = 0` → the largest period); B-frames 0 when the control exists (a B-frame adds
/// a frame of delay); the profile from `encoder.profile`, `baseline` mapped to constrained
/// baseline when offered; the smallest sufficient level ([`h264_level_for`]), raised to
/// the smallest the device offers; headers joined with the first frame and repeated before
/// IDRs when offered; intra refresh (`encoder.intra_refresh`) through
/// INTRA_REFRESH_PERIOD or CYCLIC_INTRA_REFRESH_MB, an error if neither exists; a
/// FORCE_KEY_FRAME button is required (IDR on demand: PLI, a restarted stage, a dropped
/// access unit).
///
/// Errors: [`NegotiationError`].
pub fn negotiate_controls(
    enc: &EncoderConfig,
    f: SourceFormat,
    dev: &DeviceControls,
) -> Result<Negotiated, NegotiationError> {
    let mut plan = Plan::default();
    plan.force_key_frame(dev)?;
    plan.profile(enc, dev)?;
    let level = plan.level(enc, f, dev)?;
    let bitrate_range_bps = plan.rate_control(enc, dev)?;
    plan.gop(enc, dev)?;
    if enc.intra_refresh {
        plan.intra_refresh(enc, f, dev)?;
    }
    let repeats_headers = plan.headers(dev);
    Ok(Negotiated {
        set: plan.set,
        level,
        bitrate_range_bps,
        repeats_headers,
        notes: plan.notes,
    })
}

/// What [`negotiate_controls`] has decided so far: the controls to set, in order, and the
/// notes for the user.
#[derive(Default)]
struct Plan {
    set: Vec<CtrlSet>,
    notes: Vec<String>,
}

impl Plan {
    fn push(&mut self, id: u32, value: i64) {
        self.set.push(CtrlSet { id, value });
    }

    /// FORCE_KEY_FRAME is required: IDR on demand (PLI, a restarted stage, a dropped
    /// access unit).
    fn force_key_frame(&mut self, dev: &DeviceControls) -> Result<(), NegotiationError> {
        let name = control_name(CID_FORCE_KEY_FRAME);
        let Some(force) = dev.get(&CID_FORCE_KEY_FRAME) else {
            return Err(NegotiationError::Missing {
                control: name,
                needed_for: "IDR on demand",
            });
        };
        if !force.button {
            self.notes.push(format!("{name} is not a button control"));
        }
        Ok(())
    }

    /// The profile from `encoder.profile`, `baseline` mapped to constrained baseline when
    /// offered; the device's default (noted) when it has no profile control.
    fn profile(
        &mut self,
        enc: &EncoderConfig,
        dev: &DeviceControls,
    ) -> Result<(), NegotiationError> {
        let Some(c) = dev.get(&CID_H264_PROFILE) else {
            self.notes.push(format!(
                "no {} control: the encoder's default profile is used",
                control_name(CID_H264_PROFILE)
            ));
            return Ok(());
        };
        let want = profile_value(&enc.profile);
        let v = if want == PROFILE_BASELINE && c.has_item(PROFILE_CONSTRAINED_BASELINE) {
            PROFILE_CONSTRAINED_BASELINE
        } else if c.has_item(want) {
            want
        } else {
            let offered: Vec<&str> = c
                .menu
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|&v| profile_name(v))
                .collect();
            return Err(NegotiationError::Profile {
                wanted: enc.profile.clone(),
                offered: offered.join(", "),
            });
        };
        self.push(CID_H264_PROFILE, v);
        Ok(())
    }

    /// The smallest sufficient level ([`h264_level_for`]), raised to the smallest the
    /// device offers; assumed (noted) when it has no level control.
    fn level(
        &mut self,
        enc: &EncoderConfig,
        f: SourceFormat,
        dev: &DeviceControls,
    ) -> Result<H264Level, NegotiationError> {
        let too_high = |needed: &str, max: &str| NegotiationError::Level {
            w: f.width,
            h: f.height,
            fps: if f.fps_den <= 1 {
                f.fps_num.to_string()
            } else {
                format!("{}/{}", f.fps_num, f.fps_den)
            },
            kbps: enc.bitrate_kbps,
            needed: needed.into(),
            max: max.into(),
        };
        let Some(l) = h264_level_for(f, enc.bitrate_kbps, &enc.profile) else {
            return Err(too_high("above 5.2", "-"));
        };
        let Some(c) = dev.get(&CID_H264_LEVEL) else {
            let name = control_name(CID_H264_LEVEL);
            self.notes
                .push(format!("no {name} control: level {} assumed", l.name));
            return Ok(l);
        };
        let offered: Vec<H264Level> = H264_LEVELS
            .iter()
            .copied()
            .filter(|x| c.has_item(x.v4l2))
            .collect();
        match offered.iter().find(|x| x.v4l2 >= l.v4l2) {
            Some(&chosen) => {
                self.push(CID_H264_LEVEL, chosen.v4l2);
                Ok(chosen)
            }
            None => {
                let max = offered.last().map(|x| x.name).unwrap_or("none");
                Err(too_high(l.name, max))
            }
        }
    }

    /// CBR when offered, else VBR (noted); the bitrate (bit/s) within the control's range.
    /// Returns that range.
    fn rate_control(
        &mut self,
        enc: &EncoderConfig,
        dev: &DeviceControls,
    ) -> Result<(i64, i64), NegotiationError> {
        if let Some(c) = dev.get(&CID_BITRATE_MODE) {
            if c.has_item(BITRATE_MODE_CBR) {
                self.push(CID_BITRATE_MODE, BITRATE_MODE_CBR);
            } else if c.has_item(BITRATE_MODE_VBR) {
                self.push(CID_BITRATE_MODE, BITRATE_MODE_VBR);
                self.notes.push(
                    "the encoder has no CBR mode: VBR at the target bitrate (frame sizes vary more)"
                        .into(),
                );
            }
        }
        let Some(c) = dev.get(&CID_BITRATE) else {
            return Err(NegotiationError::Missing {
                control: control_name(CID_BITRATE),
                needed_for: "encoder.bitrate_kbps",
            });
        };
        let bps = enc.bitrate_kbps as i64 * 1000;
        self.set
            .push(c.set(CID_BITRATE, "encoder.bitrate_kbps", bps, " bit/s")?);
        Ok((c.min, c.max))
    }

    /// No B-frames (each would hold a frame back); the IDR period from `encoder.keyint`
    /// through H264_I_PERIOD, or GOP_SIZE when the driver has only that (`keyint = 0` →
    /// the largest period).
    fn gop(&mut self, enc: &EncoderConfig, dev: &DeviceControls) -> Result<(), NegotiationError> {
        if let Some(c) = dev.get(&CID_B_FRAMES) {
            self.set.push(c.set(CID_B_FRAMES, "B-frames", 0, "")?);
        }
        let period_ctrl = [CID_H264_I_PERIOD, CID_GOP_SIZE]
            .into_iter()
            .find(|id| dev.contains_key(id));
        match period_ctrl {
            Some(id) => {
                let c = &dev[&id];
                let v = if enc.keyint == 0 {
                    c.max
                } else {
                    enc.keyint as i64
                };
                self.set.push(c.set(id, "encoder.keyint", v, " frames")?);
            }
            None if enc.keyint > 0 => {
                return Err(NegotiationError::Missing {
                    control: format!(
                        "{} or {}",
                        control_name(CID_H264_I_PERIOD),
                        control_name(CID_GOP_SIZE)
                    ),
                    needed_for: "encoder.keyint",
                });
            }
            None => {}
        }
        Ok(())
    }

    /// Intra refresh: one sweep per `keyint` frames (per second of frames with keyint 0)
    /// through INTRA_REFRESH_PERIOD or CYCLIC_INTRA_REFRESH_MB; an error if neither exists.
    fn intra_refresh(
        &mut self,
        enc: &EncoderConfig,
        f: SourceFormat,
        dev: &DeviceControls,
    ) -> Result<(), NegotiationError> {
        let period = if enc.keyint > 0 {
            enc.keyint as i64
        } else {
            f.fps_num.div_ceil(f.fps_den.max(1)).max(1) as i64
        };
        if let Some(c) = dev.get(&CID_INTRA_REFRESH_PERIOD) {
            self.push(CID_INTRA_REFRESH_PERIOD, period.clamp(c.min, c.max));
        } else if let Some(c) = dev.get(&CID_CYCLIC_INTRA_REFRESH_MB) {
            let mbs = (f.width.div_ceil(16) * f.height.div_ceil(16)) as i64;
            let per_frame = (mbs + period - 1).div_euclid(period);
            self.push(
                CID_CYCLIC_INTRA_REFRESH_MB,
                per_frame.clamp(c.min.max(1), c.max),
            );
        } else {
            return Err(NegotiationError::Missing {
                control: format!(
                    "{} or {}",
                    control_name(CID_INTRA_REFRESH_PERIOD),
                    control_name(CID_CYCLIC_INTRA_REFRESH_MB)
                ),
                needed_for: "encoder.intra_refresh = true",
            });
        }
        Ok(())
    }

    /// Headers joined with the first frame and repeated before every IDR, when offered.
    /// Returns whether they are repeated.
    fn headers(&mut self, dev: &DeviceControls) -> bool {
        if let Some(c) = dev.get(&CID_HEADER_MODE)
            && c.has_item(HEADER_MODE_JOINED)
        {
            self.push(CID_HEADER_MODE, HEADER_MODE_JOINED);
        }
        let repeats = dev.contains_key(&CID_REPEAT_SEQ_HEADER);
        if repeats {
            self.push(CID_REPEAT_SEQ_HEADER, 1);
        }
        repeats
    }
}

/// A run-time bitrate request (kbit/s) clamped to the device's range, as bit/s.
pub fn clamp_bitrate_bps(kbps: u32, range: (i64, i64)) -> i64 {
    (kbps as i64 * 1000).clamp(range.0, range.1)
}

/// A V4L2 pixel format code (`v4l2_fourcc`), as its four characters.
pub type FourCc = [u8; 4];
/// `V4L2_PIX_FMT_YUV420`: planar Y, U, V in one buffer.
pub const YU12: FourCc = *b"YU12";
/// `V4L2_PIX_FMT_YUV420M`: Y, U, V in three buffers (multi-planar).
pub const YM12: FourCc = *b"YM12";
/// `V4L2_PIX_FMT_NV12`: Y, then interleaved U/V, one buffer.
pub const NV12: FourCc = *b"NV12";
/// `V4L2_PIX_FMT_NV12M`: Y and interleaved U/V in two buffers.
pub const NM12: FourCc = *b"NM12";
/// `V4L2_PIX_FMT_H264`: H.264 Annex-B byte stream.
pub const H264: FourCc = *b"H264";

/// Raw formats we can feed, best first: I420 needs only a copy per row; NV12 interleaves
/// the chroma.
pub const OUTPUT_PREFERENCE: &[FourCc] = &[YU12, YM12, NV12, NM12];

/// Errors of format negotiation and frame layout.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    /// The device takes none of the raw formats we produce.
    #[error("the encoder takes none of YU12, YM12, NV12, NM12 on its OUTPUT queue (it offers {0})")]
    NoRawFormat(String),
    /// The device does not produce H.264.
    #[error("the encoder does not produce H264 on its CAPTURE queue (it offers {0})")]
    NoH264(String),
    /// The driver changed the size.
    #[error(
        "the encoder adjusted {want_w}x{want_h} to {got_w}x{got_h}: set source.width/height to a size it takes"
    )]
    Size {
        /// Requested width.
        want_w: u32,
        /// Requested height.
        want_h: u32,
        /// Width the driver set.
        got_w: u32,
        /// Height the driver set.
        got_h: u32,
    },
    /// The driver's plane description does not hold a frame.
    #[error("the encoder's {fourcc} layout cannot hold {w}x{h}: {why}")]
    Layout {
        /// Format.
        fourcc: String,
        /// Width.
        w: u32,
        /// Height.
        h: u32,
        /// What is wrong.
        why: String,
    },
    /// The frame handed in is not one I420 frame of the configured size.
    #[error("frame has {got} bytes, expected {want} (I420)")]
    Frame {
        /// Bytes given.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
}

/// Text of a fourcc list for messages.
pub fn fourcc_list(v: &[FourCc]) -> String {
    if v.is_empty() {
        return "nothing".into();
    }
    v.iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the raw format for the OUTPUT queue from what VIDIOC_ENUM_FMT listed.
///
/// Errors: [`FormatError::NoRawFormat`].
pub fn pick_output_format(offered: &[FourCc]) -> Result<FourCc, FormatError> {
    OUTPUT_PREFERENCE
        .iter()
        .copied()
        .find(|f| offered.contains(f))
        .ok_or_else(|| FormatError::NoRawFormat(fourcc_list(offered)))
}

/// Checks that the CAPTURE queue offers H.264.
///
/// Errors: [`FormatError::NoH264`].
pub fn check_capture_format(offered: &[FourCc]) -> Result<(), FormatError> {
    if offered.contains(&H264) {
        Ok(())
    } else {
        Err(FormatError::NoH264(fourcc_list(offered)))
    }
}

/// Size of the CAPTURE buffers to ask for, bytes: the largest access unit the VBV allows
/// (bitrate × VBV buffer), doubled, at least 512 KiB and at most one raw frame.
pub fn capture_buffer_bytes(enc: &EncoderConfig, f: SourceFormat) -> u32 {
    let vbv = enc.bitrate_kbps as u64 * 1000 / 8 * enc.vbv_buffer_ms.max(1) as u64 / 1000;
    (vbv * 2)
        .max(512 << 10)
        .min(f.frame_bytes().max(512 << 10) as u64) as u32
}

/// One memory plane as VIDIOC_S_FMT returned it (`v4l2_plane_pix_format`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaneFmt {
    /// Bytes per line of this plane's first component.
    pub bytesperline: u32,
    /// Bytes of the plane.
    pub sizeimage: u32,
}

/// The OUTPUT format VIDIOC_S_FMT returned.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceFormat {
    /// Pixel format.
    pub fourcc: FourCc,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Memory planes.
    pub planes: Vec<PlaneFmt>,
}

/// Where one component (Y, U, V or interleaved UV) lives in the driver's buffers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Memory plane index.
    pub plane: usize,
    /// Byte offset of the first row in that plane.
    pub offset: usize,
    /// Bytes per row.
    pub stride: usize,
}

impl Placement {
    /// A component at byte `offset` of memory plane `plane`, `stride` bytes per row.
    pub const fn at(plane: usize, offset: usize, stride: usize) -> Self {
        Placement {
            plane,
            offset,
            stride,
        }
    }
}

/// How an I420 frame is written into one OUTPUT buffer: component placements (for NV12
/// formats `u` is the interleaved UV plane and `v` is unused) and bytes used per plane.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputLayout {
    /// Pixel format.
    pub fourcc: FourCc,
    /// Width, pixels.
    pub width: usize,
    /// Height, pixels.
    pub height: usize,
    /// Luma.
    pub y: Placement,
    /// Cb (or interleaved CbCr).
    pub u: Placement,
    /// Cr (unused for NV12/NM12).
    pub v: Placement,
    /// `bytesused` to queue for each memory plane.
    pub bytesused: Vec<usize>,
}

/// Works out where each component goes from the format the driver set. Drivers pad rows
/// (bytesperline > width) and, for single-buffer formats, rows of the luma plane
/// (bcm2835-codec aligns the height to 16): the chroma starts after
/// `sizeimage / bytesperline × 2/3` luma rows.
///
/// Errors: [`FormatError::Size`] if the driver changed the size, [`FormatError::Layout`]
/// if the planes cannot hold the frame.
pub fn output_layout(want: SourceFormat, got: &DeviceFormat) -> Result<OutputLayout, FormatError> {
    let (w, h) = (want.width as usize, want.height as usize);
    if got.width != want.width || got.height != want.height {
        return Err(FormatError::Size {
            want_w: want.width,
            want_h: want.height,
            got_w: got.width,
            got_h: got.height,
        });
    }
    let bad = |why: String| FormatError::Layout {
        fourcc: String::from_utf8_lossy(&got.fourcc).into_owned(),
        w: want.width,
        h: want.height,
        why,
    };
    let need_planes = match got.fourcc {
        YU12 | NV12 => 1,
        NM12 => 2,
        YM12 => 3,
        other => {
            return Err(bad(format!(
                "unsupported format {}",
                String::from_utf8_lossy(&other)
            )));
        }
    };
    if got.planes.len() != need_planes {
        return Err(bad(format!(
            "{} memory planes, expected {need_planes}",
            got.planes.len()
        )));
    }
    let p = &got.planes;
    let ys = p[0].bytesperline as usize;
    if ys < w {
        return Err(bad(format!("bytesperline {ys} < width {w}")));
    }
    let (ch, cw) = (h / 2, w / 2);
    let y = Placement::at(0, 0, ys);
    // (u, v, bytes used per plane); for NV12 formats u = v = the interleaved UV plane.
    let (u, v, bytesused) = match got.fourcc {
        YU12 | NV12 => {
            // Luma rows allocated: sizeimage = ys × rows × 3/2.
            let rows = (p[0].sizeimage as usize * 2) / (3 * ys);
            if rows < h {
                return Err(bad(format!(
                    "sizeimage {} holds {rows} rows of {ys} bytes, fewer than {h}",
                    p[0].sizeimage
                )));
            }
            let c_off = ys * rows;
            let (u, v) = if got.fourcc == YU12 {
                let cs = ys / 2;
                let v_off = c_off + cs * (rows / 2);
                (Placement::at(0, c_off, cs), Placement::at(0, v_off, cs))
            } else {
                (Placement::at(0, c_off, ys), Placement::at(0, c_off, ys))
            };
            (u, v, vec![p[0].sizeimage as usize])
        }
        NM12 => {
            let cs = p[1].bytesperline as usize;
            if cs < w || (p[1].sizeimage as usize) < cs * ch {
                return Err(bad(format!(
                    "chroma plane {}x{} bytes cannot hold {w}x{ch}",
                    cs, p[1].sizeimage
                )));
            }
            let uv = Placement::at(1, 0, cs);
            (
                uv,
                uv,
                vec![p[0].sizeimage as usize, p[1].sizeimage as usize],
            )
        }
        _ => {
            for (i, q) in p.iter().enumerate().skip(1) {
                let cs = q.bytesperline as usize;
                if cs < cw || (q.sizeimage as usize) < cs * ch {
                    return Err(bad(format!(
                        "chroma plane {i}: {}-byte rows, {} bytes cannot hold {cw}x{ch}",
                        cs, q.sizeimage
                    )));
                }
            }
            (
                Placement::at(1, 0, p[1].bytesperline as usize),
                Placement::at(2, 0, p[2].bytesperline as usize),
                p.iter().map(|q| q.sizeimage as usize).collect(),
            )
        }
    };
    let layout = OutputLayout {
        fourcc: got.fourcc,
        width: w,
        height: h,
        y,
        u,
        v,
        bytesused,
    };
    if (p[0].sizeimage as usize) < ys * h {
        return Err(bad(format!(
            "luma plane of {} bytes < {} rows of {ys}",
            p[0].sizeimage, h
        )));
    }
    Ok(layout)
}

/// Copies one I420 frame (`width × height × 3/2` bytes, tightly packed) into the driver's
/// plane buffers as `layout` says, interleaving the chroma for NV12. Padding bytes are
/// left as they are.
///
/// Errors: [`FormatError::Frame`] for a short frame, [`FormatError::Layout`] if a plane
/// buffer is smaller than the layout needs.
pub fn copy_i420(
    layout: &OutputLayout,
    i420: &[u8],
    planes: &mut [&mut [u8]],
) -> Result<(), FormatError> {
    let (w, h) = (layout.width, layout.height);
    let (cw, ch) = (w / 2, h / 2);
    let want = w * h + 2 * cw * ch;
    if i420.len() < want {
        return Err(FormatError::Frame {
            got: i420.len(),
            want,
        });
    }
    let short = |plane: usize, need: usize, have: usize| FormatError::Layout {
        fourcc: String::from_utf8_lossy(&layout.fourcc).into_owned(),
        w: w as u32,
        h: h as u32,
        why: format!("plane {plane} buffer has {have} bytes, needs {need}"),
    };
    let (sy, rest) = i420.split_at(w * h);
    let (su, sv) = rest.split_at(cw * ch);
    let mut rows =
        |pl: Placement, src: &[u8], row_bytes: usize, n: usize| -> Result<(), FormatError> {
            let need = pl.offset + pl.stride * (n - 1) + row_bytes;
            let buf = planes.get_mut(pl.plane).ok_or(short(pl.plane, need, 0))?;
            if buf.len() < need {
                return Err(short(pl.plane, need, buf.len()));
            }
            for r in 0..n {
                let d = pl.offset + r * pl.stride;
                buf[d..d + row_bytes].copy_from_slice(&src[r * row_bytes..(r + 1) * row_bytes]);
            }
            Ok(())
        };
    rows(layout.y, sy, w, h)?;
    if matches!(layout.fourcc, NV12 | NM12) {
        let pl = layout.u;
        let need = pl.offset + pl.stride * (ch - 1) + 2 * cw;
        let buf = planes.get_mut(pl.plane).ok_or(short(pl.plane, need, 0))?;
        if buf.len() < need {
            return Err(short(pl.plane, need, buf.len()));
        }
        for r in 0..ch {
            let d = &mut buf[pl.offset + r * pl.stride..pl.offset + r * pl.stride + 2 * cw];
            let (u, v) = (&su[r * cw..(r + 1) * cw], &sv[r * cw..(r + 1) * cw]);
            for ((pair, &a), &b) in d.chunks_exact_mut(2).zip(u).zip(v) {
                pair[0] = a;
                pair[1] = b;
            }
        }
    } else {
        rows(layout.u, su, cw, ch)?;
        rows(layout.v, sv, cw, ch)?;
    }
    Ok(())
}

/// What [`AuAssembler::push`] found in a completed access unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuInfo {
    /// It holds an IDR slice.
    pub keyframe: bool,
    /// NAL units in it (after any SPS/PPS insertion).
    pub nal_count: usize,
}

/// Turns dequeued CAPTURE buffers into whole access units.
///
/// A stateful encoder may return the SPS/PPS in a buffer of their own (header mode
/// "separate", or a driver that ignores the control) before the first frame; such
/// header-only buffers are held and put in front of the next buffer that carries a slice.
/// The latest SPS/PPS are kept, and put in front of an IDR that arrives without them (a
/// device without REPEAT_SEQ_HEADER), so every IDR can start a decoder.
#[derive(Debug, Default)]
pub struct AuAssembler {
    params: Vec<u8>,
    held: Vec<u8>,
    au: Vec<u8>,
}

const START: &[u8] = &[0, 0, 0, 1];

impl AuAssembler {
    /// An empty assembler.
    pub fn new() -> AuAssembler {
        AuAssembler::default()
    }

    /// The latest SPS and PPS NAL units (Annex-B), empty until seen.
    pub fn parameter_sets(&self) -> &[u8] {
        &self.params
    }

    /// The access unit completed by the last [`push`](Self::push) that returned `Some`.
    pub fn au(&self) -> &[u8] {
        &self.au
    }

    /// Feeds one CAPTURE buffer's bytes (Annex-B). Returns `Some` when it completed an
    /// access unit (it held a slice NAL unit: types 1–5), now in [`au`](Self::au);
    /// `None` when it only held parameter sets or SEI, kept for the next one.
    pub fn push(&mut self, buf: &[u8]) -> Option<AuInfo> {
        let mut has_vcl = false;
        let mut idr = false;
        let (mut sps, mut pps) = (None, None);
        for nal in nal_units(buf) {
            match nal[0] & 0x1f {
                1..=5 => {
                    has_vcl = true;
                    idr |= nal[0] & 0x1f == 5;
                }
                7 => sps = Some(nal),
                8 => pps = Some(nal),
                _ => {}
            }
        }
        if sps.is_some() || pps.is_some() {
            // Keep the last complete pair: a lone SPS or PPS replaces only its half.
            let old: Vec<Vec<u8>> = nal_units(&self.params).map(|n| n.to_vec()).collect();
            let old_sps = old.iter().find(|n| n[0] & 0x1f == 7).cloned();
            let old_pps = old.iter().find(|n| n[0] & 0x1f == 8).cloned();
            self.params.clear();
            for n in [
                sps.map(|s| s.to_vec()).or(old_sps),
                pps.map(|p| p.to_vec()).or(old_pps),
            ]
            .into_iter()
            .flatten()
            {
                self.params.extend_from_slice(START);
                self.params.extend_from_slice(&n);
            }
        }
        if !has_vcl {
            self.held.extend_from_slice(buf);
            return None;
        }
        self.au.clear();
        let held = std::mem::take(&mut self.held);
        let carries_params = sps.is_some() || nal_units(&held).any(|n| n[0] & 0x1f == 7);
        if idr && !carries_params && !self.params.is_empty() {
            self.au.extend_from_slice(&self.params);
        }
        self.au.extend_from_slice(&held);
        self.au.extend_from_slice(buf);
        self.held = held;
        self.held.clear();
        let nal_count = nal_units(&self.au).count();
        Some(AuInfo {
            keyframe: idr,
            nal_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver's VIDIOC_S_FMT answer: `fourcc` at `width`x`height` with one
    /// (bytesperline, sizeimage) per memory plane.
    fn answer(fourcc: FourCc, width: u32, height: u32, planes: &[(u32, u32)]) -> DeviceFormat {
        let plane = |&(bytesperline, sizeimage)| PlaneFmt {
            bytesperline,
            sizeimage,
        };
        DeviceFormat {
            fourcc,
            width,
            height,
            planes: planes.iter().map(plane).collect(),
        }
    }

    fn enc() -> EncoderConfig {
        EncoderConfig {
            backend: "v4l2m2m".into(),
            device: "/dev/video11".into(),
            bitrate_kbps: 8000,
            vbv_buffer_ms: 100,
            keyint: 60,
            intra_refresh: false,
            threads: 1,
            preset: "ultrafast".into(),
            profile: "high".into(),
        }
    }

    fn fmt(w: u32, h: u32, fps: u32) -> SourceFormat {
        SourceFormat {
            width: w,
            height: h,
            fps_num: fps,
            fps_den: 1,
        }
    }

    /// The H.264 controls of the Raspberry Pi's bcm2835-codec encoder (/dev/video11) as its
    /// driver (drivers/staging/vc04_services/bcm2835-codec) registers them: bitrate
    /// 25 kbit/s..25 Mbit/s, VBR/CBR, header mode, repeat sequence header, I period,
    /// profiles baseline/constrained baseline/main/high, levels 1.0..4.2, force key
    /// frame; no B-frame or intra-refresh control.
    fn bcm2835() -> DeviceControls {
        let mut m = DeviceControls::new();
        m.insert(CID_BITRATE_MODE, CtrlInfo::menu(&[0, 1]));
        m.insert(CID_BITRATE, CtrlInfo::int(25_000, 25_000_000));
        m.insert(CID_HEADER_MODE, CtrlInfo::menu(&[0, 1]));
        m.insert(CID_REPEAT_SEQ_HEADER, CtrlInfo::boolean());
        m.insert(CID_H264_I_PERIOD, CtrlInfo::int(0, 0x7fff_ffff));
        m.insert(CID_H264_PROFILE, CtrlInfo::menu(&[0, 1, 2, 4]));
        m.insert(
            CID_H264_LEVEL,
            CtrlInfo::menu(&(0..=13).collect::<Vec<_>>()),
        );
        m.insert(CID_FORCE_KEY_FRAME, CtrlInfo::button());
        m
    }

    fn value(n: &Negotiated, id: u32) -> Option<i64> {
        n.set.iter().find(|c| c.id == id).map(|c| c.value)
    }

    #[test]
    fn levels_follow_table_a1() {
        let l = |w, h, fps, kbps, p| h264_level_for(fmt(w, h, fps), kbps, p).map(|l| l.name);
        assert_eq!(l(1280, 720, 60, 8000, "high"), Some("3.2"));
        assert_eq!(l(1280, 720, 30, 8000, "high"), Some("3.1"));
        assert_eq!(l(1920, 1080, 30, 8000, "high"), Some("4.0"));
        assert_eq!(l(1920, 1080, 30, 30000, "high"), Some("4.1"));
        assert_eq!(l(1920, 1080, 60, 8000, "high"), Some("4.2"));
        assert_eq!(l(640, 480, 30, 2000, "main"), Some("3.0"));
        // 3.1 MaxBR 14000 (17500 for High): 16 Mbit/s fits High but not Main.
        assert_eq!(l(1280, 720, 30, 16000, "high"), Some("3.1"));
        assert_eq!(l(1280, 720, 30, 16000, "main"), Some("3.2"));
        assert_eq!(l(176, 144, 15, 64, "baseline"), Some("1.0"));
        // A 4000x64 strip: 1000 MBs fit level 3.0's MaxFS, but a side of 250 MBs needs
        // √(8·MaxFS) ≥ 250, i.e. level 4.0.
        assert_eq!(l(4000, 64, 1, 100, "main"), Some("4.0"));
        assert_eq!(l(8192, 8192, 60, 8000, "high"), None);
    }

    #[test]
    fn bcm2835_720p60_gets_cbr_high_32_and_headers_before_idrs() {
        let n = negotiate_controls(&enc(), fmt(1280, 720, 60), &bcm2835()).unwrap();
        assert_eq!(value(&n, CID_BITRATE), Some(8_000_000));
        assert_eq!(value(&n, CID_BITRATE_MODE), Some(1));
        assert_eq!(value(&n, CID_H264_PROFILE), Some(4));
        assert_eq!(value(&n, CID_H264_LEVEL), Some(10));
        assert_eq!(n.level.name, "3.2");
        assert_eq!(value(&n, CID_H264_I_PERIOD), Some(60));
        assert_eq!(value(&n, CID_REPEAT_SEQ_HEADER), Some(1));
        assert_eq!(value(&n, CID_HEADER_MODE), Some(1));
        assert_eq!(value(&n, CID_GOP_SIZE), None);
        assert!(n.repeats_headers);
        assert_eq!(n.bitrate_range_bps, (25_000, 25_000_000));
        assert!(n.notes.is_empty(), "{:?}", n.notes);
    }

    #[test]
    fn baseline_prefers_constrained_baseline() {
        let mut e = enc();
        e.profile = "baseline".into();
        let n = negotiate_controls(&e, fmt(1280, 720, 60), &bcm2835()).unwrap();
        assert_eq!(value(&n, CID_H264_PROFILE), Some(1));
        let mut dev = bcm2835();
        dev.insert(CID_H264_PROFILE, CtrlInfo::menu(&[0, 2]));
        let n = negotiate_controls(&e, fmt(1280, 720, 60), &dev).unwrap();
        assert_eq!(value(&n, CID_H264_PROFILE), Some(0));
        e.profile = "high".into();
        let err = negotiate_controls(&e, fmt(1280, 720, 60), &dev).unwrap_err();
        assert_eq!(
            err.to_string(),
            "encoder.profile = \"high\" is not offered by the encoder (it has baseline, main)"
        );
    }

    #[test]
    fn bitrate_outside_the_device_range_names_the_key() {
        let mut e = enc();
        e.bitrate_kbps = 40_000;
        let err = negotiate_controls(&e, fmt(1280, 720, 60), &bcm2835()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("encoder.bitrate_kbps = 40000000")
                && msg.contains("25000..=25000000 bit/s"),
            "{msg}"
        );
        assert_eq!(clamp_bitrate_bps(40_000, (25_000, 25_000_000)), 25_000_000);
        assert_eq!(clamp_bitrate_bps(10, (25_000, 25_000_000)), 25_000);
        assert_eq!(clamp_bitrate_bps(3000, (25_000, 25_000_000)), 3_000_000);
    }

    #[test]
    fn level_above_the_device_maximum_is_an_error() {
        let mut dev = bcm2835();
        dev.insert(
            CID_H264_LEVEL,
            CtrlInfo::menu(&(0..=12).collect::<Vec<_>>()),
        );
        let err = negotiate_controls(&enc(), fmt(1920, 1080, 60), &dev).unwrap_err();
        assert_eq!(
            err.to_string(),
            "1920x1080 at 60 fps and 8000 kbit/s needs H.264 level 4.2, the encoder offers up to 4.1"
        );
        // A device whose lowest level is above the one needed: the lowest it has.
        dev.insert(CID_H264_LEVEL, CtrlInfo::menu(&[11, 12]));
        let n = negotiate_controls(&enc(), fmt(640, 480, 30), &dev).unwrap();
        assert_eq!(n.level.name, "4.0");
    }

    #[test]
    fn intra_refresh_needs_a_control_and_uses_the_newer_one_first() {
        let mut e = enc();
        e.intra_refresh = true;
        e.keyint = 0;
        let err = negotiate_controls(&e, fmt(1280, 720, 60), &bcm2835()).unwrap_err();
        assert!(
            err.to_string()
                .contains("needed for encoder.intra_refresh = true"),
            "{err}"
        );
        let mut dev = bcm2835();
        dev.insert(CID_CYCLIC_INTRA_REFRESH_MB, CtrlInfo::int(0, 8160));
        let n = negotiate_controls(&e, fmt(1280, 720, 60), &dev).unwrap();
        // 3600 macroblocks refreshed over 60 frames.
        assert_eq!(value(&n, CID_CYCLIC_INTRA_REFRESH_MB), Some(60));
        // keyint 0: the longest IDR period the device has.
        assert_eq!(value(&n, CID_H264_I_PERIOD), Some(0x7fff_ffff));
        dev.insert(CID_INTRA_REFRESH_PERIOD, CtrlInfo::int(0, 1000));
        let n = negotiate_controls(&e, fmt(1280, 720, 60), &dev).unwrap();
        assert_eq!(value(&n, CID_INTRA_REFRESH_PERIOD), Some(60));
        assert_eq!(value(&n, CID_CYCLIC_INTRA_REFRESH_MB), None);
    }

    #[test]
    fn gop_size_drivers_no_b_frames_vbr_only_and_missing_controls() {
        // A Hantro/Venus-style driver: GOP_SIZE instead of H264_I_PERIOD, B-frames
        // control, VBR only, no header controls.
        let mut dev = DeviceControls::new();
        dev.insert(CID_BITRATE_MODE, CtrlInfo::menu(&[0]));
        dev.insert(CID_BITRATE, CtrlInfo::int(1, 160_000_000));
        dev.insert(CID_GOP_SIZE, CtrlInfo::int(0, 300));
        dev.insert(CID_B_FRAMES, CtrlInfo::int(0, 2));
        dev.insert(CID_FORCE_KEY_FRAME, CtrlInfo::button());
        let n = negotiate_controls(&enc(), fmt(1280, 720, 60), &dev).unwrap();
        assert_eq!(value(&n, CID_GOP_SIZE), Some(60));
        assert_eq!(value(&n, CID_B_FRAMES), Some(0));
        assert_eq!(value(&n, CID_BITRATE_MODE), Some(0));
        assert!(!n.repeats_headers);
        assert_eq!(n.notes.len(), 3, "{:?}", n.notes); // VBR, no profile, no level
        let mut e = enc();
        e.keyint = 600;
        let err = negotiate_controls(&e, fmt(1280, 720, 60), &dev).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("encoder.keyint = 600 is outside"),
            "{err}"
        );
        dev.remove(&CID_FORCE_KEY_FRAME);
        let err = negotiate_controls(&enc(), fmt(1280, 720, 60), &dev).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the encoder has no force_key_frame control, needed for IDR on demand"
        );
    }

    #[test]
    fn output_format_preference_and_capture_check() {
        assert_eq!(pick_output_format(&[*b"RGB3", NV12, YU12]).unwrap(), YU12);
        assert_eq!(pick_output_format(&[*b"RGB3", NM12]).unwrap(), NM12);
        let err = pick_output_format(&[*b"RGB3", *b"BGR4"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the encoder takes none of YU12, YM12, NV12, NM12 on its OUTPUT queue (it offers RGB3, BGR4)"
        );
        assert!(check_capture_format(&[*b"H264", *b"MJPG"]).is_ok());
        assert!(
            check_capture_format(&[*b"MJPG"])
                .unwrap_err()
                .to_string()
                .contains("offers MJPG")
        );
    }

    fn i420(w: usize, h: usize) -> Vec<u8> {
        // Y = 1.., U = 100 + .., V = 200 + .. so every byte's origin is recognisable.
        let mut f = vec![0u8; w * h * 3 / 2];
        for (i, b) in f[..w * h].iter_mut().enumerate() {
            *b = (i % 97) as u8;
        }
        for (i, b) in f[w * h..w * h * 5 / 4].iter_mut().enumerate() {
            *b = 100 + (i % 50) as u8;
        }
        for (i, b) in f[w * h * 5 / 4..].iter_mut().enumerate() {
            *b = 200 + (i % 50) as u8;
        }
        f
    }

    #[test]
    fn yu12_with_padded_rows_and_aligned_height_like_bcm2835() {
        // 1920x1080 YU12: bcm2835-codec answers bytesperline 1920 and sizeimage for 1088
        // rows (height aligned to 16).
        let (w, h) = (64usize, 40usize);
        let (stride, rows) = (96usize, 48usize);
        let planes = [(stride as u32, (stride * rows * 3 / 2) as u32)];
        let got = answer(YU12, w as u32, h as u32, &planes);
        let l = output_layout(fmt(w as u32, h as u32, 30), &got).unwrap();
        assert_eq!(
            l.u,
            Placement {
                plane: 0,
                offset: stride * rows,
                stride: stride / 2
            }
        );
        assert_eq!(
            l.v,
            Placement {
                plane: 0,
                offset: stride * rows + stride / 2 * rows / 2,
                stride: stride / 2
            }
        );
        let src = i420(w, h);
        let mut buf = vec![0xEEu8; stride * rows * 3 / 2];
        copy_i420(&l, &src, &mut [&mut buf[..]]).unwrap();
        for r in 0..h {
            assert_eq!(&buf[r * stride..r * stride + w], &src[r * w..(r + 1) * w]);
            assert!(
                buf[r * stride + w..(r + 1) * stride]
                    .iter()
                    .all(|&b| b == 0xEE),
                "padding untouched"
            );
        }
        let (cw, ch) = (w / 2, h / 2);
        for r in 0..ch {
            let u = l.u.offset + r * l.u.stride;
            assert_eq!(&buf[u..u + cw], &src[w * h + r * cw..w * h + (r + 1) * cw]);
            let v = l.v.offset + r * l.v.stride;
            assert_eq!(
                &buf[v..v + cw],
                &src[w * h + cw * ch + r * cw..w * h + cw * ch + (r + 1) * cw]
            );
        }
        // A buffer one byte short is refused, not overrun.
        let mut small = vec![0u8; l.v.offset + l.v.stride * (ch - 1) + cw - 1];
        assert!(copy_i420(&l, &src, &mut [&mut small[..]]).is_err());
        assert!(
            copy_i420(&l, &src[..10], &mut [&mut buf[..]])
                .unwrap_err()
                .to_string()
                .contains("expected 3840")
        );
    }

    #[test]
    fn nv12_interleaves_and_multiplanar_formats_use_their_planes() {
        let (w, h) = (16usize, 8usize);
        let src = i420(w, h);
        let got = answer(NV12, 16, 8, &[(32, 32 * 8 * 3 / 2)]);
        let l = output_layout(fmt(16, 8, 30), &got).unwrap();
        let mut buf = vec![0u8; 32 * 12];
        copy_i420(&l, &src, &mut [&mut buf[..]]).unwrap();
        let uv = &buf[32 * 8..32 * 8 + 16];
        let (u, v) = (&src[w * h..w * h + 8], &src[w * h + 32..w * h + 40]);
        for i in 0..8 {
            assert_eq!((uv[2 * i], uv[2 * i + 1]), (u[i], v[i]));
        }
        let got = answer(YM12, 16, 8, &[(16, 128), (8, 32), (8, 32)]);
        let l = output_layout(fmt(16, 8, 30), &got).unwrap();
        let (mut y, mut u, mut v) = (vec![0u8; 128], vec![0u8; 32], vec![0u8; 32]);
        copy_i420(&l, &src, &mut [&mut y[..], &mut u[..], &mut v[..]]).unwrap();
        assert_eq!([&y[..], &u[..], &v[..]].concat(), src);
        assert_eq!(l.bytesused, vec![128, 32, 32]);
        let got = answer(NM12, 16, 8, &[(16, 128), (16, 64)]);
        let l = output_layout(fmt(16, 8, 30), &got).unwrap();
        assert_eq!(
            l.u,
            Placement {
                plane: 1,
                offset: 0,
                stride: 16
            }
        );
    }

    #[test]
    fn driver_answers_that_cannot_work_are_errors() {
        let f = fmt(1280, 720, 60);
        let one = |fourcc, bpl, size| answer(fourcc, 1280, 720, &[(bpl, size)]);
        let e = output_layout(
            f,
            &DeviceFormat {
                width: 1280,
                height: 736,
                ..one(YU12, 1280, 1280 * 736 * 3 / 2)
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the encoder adjusted 1280x720 to 1280x736: set source.width/height to a size it takes"
        );
        assert!(
            output_layout(f, &one(YU12, 1024, 1024 * 720 * 3 / 2))
                .unwrap_err()
                .to_string()
                .contains("bytesperline 1024 < width 1280")
        );
        assert!(
            output_layout(f, &one(YU12, 1280, 1280 * 700))
                .unwrap_err()
                .to_string()
                .contains("fewer than 720")
        );
        assert!(
            output_layout(f, &one(YM12, 1280, 1280 * 720))
                .unwrap_err()
                .to_string()
                .contains("1 memory planes, expected 3")
        );
    }

    #[test]
    fn capture_buffers_hold_the_largest_vbv_burst() {
        let e = enc(); // 8000 kbit/s, 100 ms: 100 kB → 200 kB, raised to 512 KiB
        assert_eq!(capture_buffer_bytes(&e, fmt(1280, 720, 60)), 512 << 10);
        let mut e = enc();
        e.bitrate_kbps = 25_000;
        e.vbv_buffer_ms = 1000; // 3.1 MB → 6.25 MB, capped at one raw 1080p frame
        assert_eq!(
            capture_buffer_bytes(&e, fmt(1920, 1080, 30)),
            1920 * 1080 * 3 / 2
        );
    }

    fn nal(t: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, 0x60 | t];
        v.extend(std::iter::repeat_n(0xAB, len));
        v
    }

    #[test]
    fn separate_header_buffer_is_joined_to_the_first_frame() {
        let mut a = AuAssembler::new();
        let hdr = [nal(7, 10), nal(8, 4)].concat();
        assert_eq!(a.push(&hdr), None);
        assert_eq!(a.parameter_sets(), &hdr[..]);
        let idr = nal(5, 100);
        let info = a.push(&idr).unwrap();
        assert_eq!(
            info,
            AuInfo {
                keyframe: true,
                nal_count: 3
            }
        );
        assert_eq!(a.au(), &[hdr.clone(), idr].concat()[..]);
        let p = nal(1, 50);
        assert_eq!(
            a.push(&p),
            Some(AuInfo {
                keyframe: false,
                nal_count: 1
            })
        );
        assert_eq!(a.au(), &p[..]);
    }

    #[test]
    fn idr_without_parameter_sets_gets_the_last_ones() {
        let mut a = AuAssembler::new();
        let hdr = [nal(7, 10), nal(8, 4)].concat();
        a.push(&[hdr.clone(), nal(5, 80)].concat()).unwrap();
        a.push(&nal(1, 20)).unwrap();
        // A driver without REPEAT_SEQ_HEADER: the next IDR comes bare.
        let info = a.push(&nal(5, 90)).unwrap();
        assert!(info.keyframe);
        assert_eq!(a.au(), &[hdr.clone(), nal(5, 90)].concat()[..]);
        // Already carrying them: nothing added.
        let with = [nal(7, 11), nal(8, 4), nal(5, 70)].concat();
        a.push(&with).unwrap();
        assert_eq!(a.au(), &with[..]);
        // The new SPS replaced the old one; the PPS stayed the same.
        assert_eq!(a.parameter_sets(), &[nal(7, 11), nal(8, 4)].concat()[..]);
        // An SEI-only buffer is held like a header.
        assert_eq!(a.push(&nal(6, 5)), None);
        a.push(&nal(1, 5)).unwrap();
        assert_eq!(a.au(), &[nal(6, 5), nal(1, 5)].concat()[..]);
    }
}
