//! Frame sources: the `vr-source` crate (every source behind [`FrameSource`]), and
//! [`open`], which opens the one vr-stream's configuration (`[source]`, `--source`) names.

pub use vr_source::*;

/// Opens the source described by `cfg` (`uri`, `loop`, pattern/v4l2 size and rate); with
/// `stereo`, a [`stereo::StereoSource`] of `uri` (left) and `right_uri` (right).
pub fn open(cfg: &crate::config::SourceConfig) -> Result<Box<dyn FrameSource>, SourceError> {
    if !cfg.stereo {
        return open_one(cfg, &cfg.uri, 0);
    }
    let right_uri = if cfg.right_uri.is_empty() {
        &cfg.uri
    } else {
        &cfg.right_uri
    };
    let left = open_one(cfg, &cfg.uri, 0)?;
    let right = open_one(cfg, right_uri, stereo::RIGHT_PATTERN_ID_OFFSET)?;
    Ok(Box::new(stereo::StereoSource::new(left, right)?))
}

/// Opens one source; a pattern draws its ids plus `pattern_id_offset`.
fn open_one(
    cfg: &crate::config::SourceConfig,
    uri: &str,
    pattern_id_offset: u64,
) -> Result<Box<dyn FrameSource>, SourceError> {
    match SourceSpec::parse(uri).map_err(|e| SourceError::BadUri(uri.to_string(), e))? {
        SourceSpec::Pattern => Ok(Box::new(pattern::PatternSource::with_id_offset(
            SourceFormat {
                width: cfg.width,
                height: cfg.height,
                fps_num: cfg.fps,
                fps_den: 1,
            },
            pattern_id_offset,
        ))),
        SourceSpec::File(p) => Ok(Box::new(y4m::Y4mSource::open(&p, cfg.looping)?)),
        SourceSpec::Pipe(input) => {
            let format = pipe::PipeFormat::parse(&cfg.pipe_format).map_err(|e| {
                SourceError::BadUri(
                    uri.to_string(),
                    format!("source.pipe_format {:?}: {e}", cfg.pipe_format),
                )
            })?;
            if let Some(s) = pipe::PipeSource::from_stage_stdin(input.name(), format) {
                return Ok(Box::new(s));
            }
            let raw = SourceFormat {
                width: cfg.width,
                height: cfg.height,
                fps_num: cfg.fps,
                fps_den: 1,
            };
            Ok(Box::new(pipe::PipeSource::open(&input, format, raw)?))
        }
        SourceSpec::V4l2(p) => Ok(Box::new(v4l2::V4l2Source::open(
            &p,
            cfg.width,
            cfg.height,
            cfg.fps,
            cfg.buffers,
        )?)),
        SourceSpec::Libcamera(c) => open_libcamera(
            &c,
            cfg.width,
            cfg.height,
            cfg.fps,
            cfg.buffers,
            cfg.exposure_us,
        ),
    }
}
