//! The detector's ONNX Runtime session (`ort` with `load-dynamic`: the library is opened at
//! run time, never downloaded or linked at build time).
//!
//! Library: found by [`super::assets`] (`detect.onnxruntime`, else `ORT_DYLIB_PATH`, else
//! where `vr-stream-fetch-yolo` put it). It comes from the PyPI wheel `onnxruntime` (file
//! `onnxruntime/capi/libonnxruntime.so.VERSION`; `scripts/fetch-yolo.sh` fetches it), at
//! least ONNX Runtime 1.22 (`ort` feature `api-22`). A missing or too old library is an
//! error naming the path and how to install it, returned before any stage starts.

use super::{Detection, Layout, Letterbox, PrepError, decode, nms};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a detection returns: the detections, best first, in source pixels, and the time
/// each part took.
pub type Detected = Result<(Vec<Detection>, Timing), DetectError>;

/// A letterbox into the model input (`super::letterbox_i420`, `super::letterbox_rgb`).
type Prep = fn(&[u8], &Letterbox, &mut [f32]) -> Result<(), PrepError>;

/// How to get the library, for errors about a configured one.
pub const INSTALL_HINT: &str = "run vr-stream-fetch-yolo (it fetches ONNX Runtime >= 1.22 and YOLO11n where --yolo \
     looks), or take onnxruntime/capi/libonnxruntime.so.1.31.1 from the PyPI wheel onnxruntime==1.31.1 and set \
     detect.onnxruntime or ORT_DYLIB_PATH to it";

/// Errors of the detector.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// Neither configured nor fetched: `file` is in none of the directories `looked`
    /// ([`super::assets`]).
    #[error(
        "{what} not found ({file} is in none of {}): run {}",
        looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        super::assets::FETCH_COMMAND
    )]
    NotFetched {
        /// What is missing ("ONNX Runtime", "the detection model").
        what: &'static str,
        /// The file looked for in each directory.
        file: String,
        /// The directories looked in, in order.
        looked: Vec<PathBuf>,
    },
    /// The ONNX Runtime library could not be loaded (missing, not ONNX Runtime, too old).
    #[error("ONNX Runtime library {path}: {reason}; {INSTALL_HINT}")]
    Library {
        /// The path tried.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The model file is missing or ONNX Runtime refused it.
    #[error("detection model {path}: {reason}")]
    Model {
        /// The model path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The model's input or output is not a YOLO detector's.
    #[error("detection model {path}: {reason}")]
    Shape {
        /// The model path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A frame did not fit its stated size.
    #[error(transparent)]
    Prep(#[from] PrepError),
    /// Inference failed.
    #[error("inference: {0}")]
    Run(String),
}

/// Loads ONNX Runtime from `path` once per process (later calls with any path are no-ops
/// once it loaded).
///
/// Errors: [`DetectError::Library`] naming the path and how to install the library.
pub fn load_runtime(path: &Path) -> Result<(), DetectError> {
    if ENV.get().is_some() {
        return Ok(());
    }
    let lib_err = |reason: String| DetectError::Library {
        path: path.to_path_buf(),
        reason,
    };
    if !path.exists() {
        return Err(lib_err("no such file".into()));
    }
    let env = ort::init_from(path)
        .map_err(|e| lib_err(e.to_string()))?
        .with_name("vr-stream")
        .build()
        .map_err(|e| lib_err(e.to_string()))?;
    let _ = ENV.set(env);
    Ok(())
}

static ENV: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();

/// Detector settings (the `[detect]` section).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorParams {
    /// The ONNX model.
    pub model: PathBuf,
    /// Input side when the model's input has free dimensions, pixels.
    pub size: u32,
    /// Intra-op threads.
    pub threads: usize,
    /// Least score kept, 0..1.
    pub conf: f32,
    /// NMS IoU threshold, 0..1.
    pub iou: f32,
    /// Classes kept (empty = all).
    pub classes: Vec<u16>,
    /// Most detections per frame.
    pub max: usize,
}

/// What one detection run cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// Letterbox and colour conversion.
    pub prep: Duration,
    /// `Session::run`.
    pub infer: Duration,
    /// Decoding and NMS.
    pub post: Duration,
}

/// A loaded model with its input buffer.
pub struct Detector {
    session: Session,
    params: DetectorParams,
    input_name: String,
    size: u32,
    input: Vec<f32>,
}

impl Detector {
    /// Opens `p.model` (ONNX Runtime must be loaded: [`load_runtime`]). The input side
    /// is the model's when fixed, else `p.size`.
    ///
    /// Errors: [`DetectError::Model`] (missing file, refused model), [`DetectError::Shape`]
    /// (input not `[1, 3, S, S]`).
    pub fn open(p: DetectorParams) -> Result<Detector, DetectError> {
        let model_err = |reason: String| DetectError::Model {
            path: p.model.clone(),
            reason,
        };
        if !p.model.is_file() {
            return Err(model_err("no such file".into()));
        }
        let env = ENV
            .get()
            .ok_or_else(|| model_err("ONNX Runtime is not loaded (load_runtime first)".into()))?;
        let session = Session::builder(env)
            .map_err(|e| model_err(e.to_string()))?
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
            .map_err(|e| model_err(e.to_string()))?
            .with_intra_threads(p.threads.max(1))
            .map_err(|e| model_err(e.to_string()))?
            .commit_from_file(&p.model)
            .map_err(|e| model_err(e.to_string()))?;
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| model_err("no input".into()))?;
        let input_name = input.name().to_string();
        let shape: Vec<i64> = input
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let size = match shape.as_slice() {
            [_, 3, h, w] if *h > 0 && h == w => *h as u32,
            [_, 3, h, w] if *h <= 0 && *w <= 0 => p.size,
            _ => {
                return Err(DetectError::Shape {
                    path: p.model.clone(),
                    reason: format!(
                        "input {input_name} has shape {shape:?}: expected [1, 3, S, S]"
                    ),
                });
            }
        };
        Ok(Detector {
            session,
            input_name,
            size,
            input: vec![0.0; 3 * (size * size) as usize],
            params: p,
        })
    }

    /// The model input side, pixels.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The model file this detector runs.
    pub fn model(&self) -> &Path {
        &self.params.model
    }

    /// Letterboxes an I420 frame of `w × h` into the input buffer (the frame is not needed
    /// after this); returns the mapping for [`Self::infer`].
    ///
    /// Errors: [`DetectError::Prep`] for a short frame.
    pub fn prepare_i420(&mut self, frame: &[u8], w: u32, h: u32) -> Result<Letterbox, DetectError> {
        let lb = Letterbox::new(w, h, self.size);
        super::letterbox_i420(frame, &lb, &mut self.input)?;
        Ok(lb)
    }

    /// Runs the model on the prepared input; boxes in source pixels, best first.
    ///
    /// Errors: [`DetectError::Run`], [`DetectError::Shape`].
    pub fn infer(&mut self, lb: Letterbox) -> Result<Vec<Detection>, DetectError> {
        Ok(self.finish(lb, Duration::ZERO)?.0)
    }

    /// Detects in an I420 frame of `w × h`; boxes in frame pixels, best first.
    ///
    /// Errors: [`DetectError::Prep`] for a short frame, [`DetectError::Run`],
    /// [`DetectError::Shape`] for an output of neither YOLO layout.
    pub fn detect_i420(&mut self, frame: &[u8], w: u32, h: u32) -> Detected {
        self.detect(super::letterbox_i420, frame, w, h)
    }

    /// Detects in an interleaved 8-bit RGB picture of `w × h`; as [`Self::detect_i420`].
    ///
    /// Errors: as [`Self::detect_i420`].
    pub fn detect_rgb(&mut self, rgb: &[u8], w: u32, h: u32) -> Detected {
        self.detect(super::letterbox_rgb, rgb, w, h)
    }

    /// Letterboxes `pixels` (`w × h`) into the model input with `prep`, then runs the model;
    /// the letterbox's time is [`Timing::prep`].
    fn detect(&mut self, prep: Prep, pixels: &[u8], w: u32, h: u32) -> Detected {
        let t0 = Instant::now();
        let lb = Letterbox::new(w, h, self.size);
        prep(pixels, &lb, &mut self.input)?;
        self.finish(lb, t0.elapsed())
    }

    fn finish(&mut self, lb: Letterbox, prep: Duration) -> Detected {
        let s = self.size as i64;
        let t1 = Instant::now();
        let tensor = TensorRef::from_array_view(([1i64, 3, s, s], &self.input[..]))
            .map_err(|e| DetectError::Run(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| DetectError::Run(e.to_string()))?;
        let infer = t1.elapsed();
        let t2 = Instant::now();
        let (shape, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| DetectError::Run(e.to_string()))?;
        let shape: Vec<i64> = shape.iter().copied().collect();
        let layout = Layout::from_shape(&shape).map_err(|e| DetectError::Shape {
            path: self.params.model.clone(),
            reason: e.to_string(),
        })?;
        let classes = &self.params.classes;
        let cands = decode(data, layout, self.params.conf, |c| {
            classes.is_empty() || classes.contains(&c)
        });
        let mut dets = nms(cands, self.params.iou, self.params.max);
        for d in &mut dets {
            d.bbox = lb.to_source(d.bbox);
        }
        Ok((
            dets,
            Timing {
                prep,
                infer,
                post: t2.elapsed(),
            },
        ))
    }
}
