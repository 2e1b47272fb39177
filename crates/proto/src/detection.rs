//! One object detection, as the detector stage publishes it in the stats segment (`vr-shm`)
//! and the network and web stages send it on ([`wire`]: RTCP APP "VRDT").

pub mod wire;

/// Most detections in one result (the stats segment's slots, the wire format's count).
pub const MAX_DETECTIONS: usize = 32;

/// One detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Class index (COCO: 0 person, 1 bicycle, 2 car, 7 truck, 16 dog...).
    pub class: u16,
    /// Confidence 0..1.
    pub score: f32,
    /// Box corners (x0, y0, x1, y1), pixels (of the model input, or of the source frame
    /// after `vr_stream::detect::Letterbox::to_source`).
    pub bbox: [f32; 4],
}

impl Detection {
    /// Intersection over union with `o` (0 when either box is empty).
    pub fn iou(&self, o: &Detection) -> f32 {
        iou(&self.bbox, &o.bbox)
    }
}

/// Intersection over union of two (x0, y0, x1, y1) boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}
