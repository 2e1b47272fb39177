//! YOLOv3-tiny against YOLO11n, the two detectors scripts/fetch-yolo.sh fetches, at the
//! input sides a Pi 5 can afford (320 and 416), in one run: what each finds on the six
//! photos of Debian's `darknet` package (the objects a person sees in them, listed below)
//! and what one inference costs through the Rust detector (letterbox + ONNX Runtime
//! session + decode + NMS, one intra-op thread as `detect.threads` defaults to),
//! p50/p99/max. The default model (`detect::assets::DEFAULT_MODEL`) is chosen from this.
//!
//! Run: `cargo bench --bench yolo_models` (20 timed runs per photo). Under `cargo test` it
//! runs 2 per photo.

#[path = "../tests/support/yolo.rs"]
mod yolo;

use hdrhistogram::Histogram;
use vr_stream::detect::onnx::{Detector, DetectorParams, load_runtime};
use yolo::rgb_of;

/// Each photo and the COCO classes in it (any one of a `|` group counts: a pickup is a
/// truck or a car).
const PHOTOS: [(&str, &[&[u16]]); 6] = [
    ("dog", &[&[16], &[1], &[7, 2]]),  // dog, bicycle, truck|car
    ("person", &[&[0], &[17], &[16]]), // person, horse, dog
    ("horses", &[&[17]]),              // horse
    ("eagle", &[&[14]]),               // bird
    ("giraffe", &[&[23], &[22]]),      // giraffe, zebra
    ("kite", &[&[0], &[33]]),          // person, kite
];

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 20 } else { 2 };
    let (dir, lib) = yolo::fetch();
    load_runtime(&lib).unwrap();
    let photos: Vec<_> = PHOTOS
        .iter()
        .map(|(name, want)| {
            let jpeg = std::fs::read(dir.join(format!("photos/{name}.jpg"))).unwrap();
            (*name, *want, rgb_of(&jpeg))
        })
        .collect();
    let objects: usize = PHOTOS.iter().map(|(_, w)| w.len()).sum();
    println!(
        "YOLO models on the 6 darknet photos, 1 thread, {runs} timed runs per photo; found = objects \
         of the {objects} listed that the model detects (score >= 0.25, >= 0.5), mean score = of their best boxes"
    );
    println!(
        "{:<22} {:>6} {:>6} {:>10} {:>9} {:>9} {:>9}",
        "model", "found", ">=0.5", "mean score", "p50 ms", "p99 ms", "max ms"
    );
    for (model, file) in [
        ("YOLOv3-tiny", "yolov3-tiny-{}.onnx"),
        ("YOLO11n", "yolo11n.onnx"),
    ] {
        for size in [320u32, 416] {
            let mut det = Detector::open(DetectorParams {
                model: dir.join(file.replace("{}", &size.to_string())),
                size,
                threads: 1,
                conf: 0.25,
                iou: 0.45,
                classes: vec![],
                max: 100,
            })
            .unwrap();
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let (mut found, mut found_half, mut score_sum) = (0, 0, 0.0f32);
            let mut missed = vec![];
            for (name, want, (rgb, w, h)) in &photos {
                let _ = det.detect_rgb(rgb, *w, *h).unwrap(); // warm-up
                let mut dets = vec![];
                for _ in 0..runs {
                    let t = std::time::Instant::now();
                    dets = det.detect_rgb(rgb, *w, *h).unwrap().0;
                    hist.record(t.elapsed().as_micros() as u64).unwrap();
                }
                for group in *want {
                    let best = dets
                        .iter()
                        .filter(|d| group.contains(&d.class))
                        .map(|d| d.score)
                        .fold(None, |m: Option<f32>, s| Some(m.map_or(s, |m| m.max(s))));
                    match best {
                        Some(s) => {
                            found += 1;
                            found_half += usize::from(s >= 0.5);
                            score_sum += s;
                        }
                        None => missed.push(format!("{name}: class {:?}", group)),
                    }
                }
            }
            let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "{:<22} {:>3}/{objects:<2} {:>3}/{objects:<2} {:>10.3} {:>9.1} {:>9.1} {:>9.1}",
                format!("{model} {size}"),
                found,
                found_half,
                score_sum / found.max(1) as f32,
                ms(0.5),
                ms(0.99),
                hist.max() as f64 / 1000.0
            );
            if !missed.is_empty() {
                println!("  missed: {}", missed.join("; "));
            }
        }
    }
}
