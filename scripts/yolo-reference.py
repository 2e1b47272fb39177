#!/usr/bin/env python3
"""Reference detections for a YOLO on a photo, from an implementation independent of
vr-stream's detector (src/detect), which the tests compare with:

    yolo-reference.py DARKNET_DIR PHOTO [--size 320] [--conf 0.25] [--nms 0.45]
    yolo-reference.py MODEL.onnx PHOTO [--size 320] [--conf 0.25] [--nms 0.45]

DARKNET_DIR (yolov3-tiny.cfg, .weights, coco.names): the darknet model run by OpenCV's own
darknet loader (cv2.dnn.readNetFromDarknet); rows [x, y, w, h, objectness, C scores],
score = objectness x class score (OpenCV multiplies already).
MODEL.onnx: a YOLOv8/YOLO11 export (output [1, 4 + C, N]: cx, cy, w, h in input pixels, then
C class scores, no objectness; coco.names beside it), run by onnxruntime's Python API,
decoded here with numpy; score = the best class score.

The photo is letterboxed to SIZE x SIZE (scale to fit, centred, grey 0.5 padding, bilinear
by OpenCV) as vr-stream does; boxes with score >= conf, per-class NMS at IoU nms
(cv2.dnn.NMSBoxes). Prints JSON: {"size", "photo": [w, h], "detections":
[{"class": id, "name", "score", "box": [x0, y0, x1, y1] in photo pixels}]}, best first.
"""
import argparse
import json
import os

import cv2
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="darknet directory or YOLOv8/11 .onnx")
    ap.add_argument("photo")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--nms", type=float, default=0.45)
    a = ap.parse_args()
    onnx_model = a.model.endswith(".onnx")
    d = os.path.dirname(a.model) if onnx_model else a.model
    names = open(os.path.join(d, "coco.names")).read().split("\n")
    img = cv2.imread(a.photo)
    if img is None:
        raise SystemExit(f"{a.photo}: cannot read")
    img = np.ascontiguousarray(img[:, :, ::-1])
    h, w = img.shape[:2]
    s = a.size
    r = min(s / w, s / h)
    nw, nh = round(w * r), round(h * r)
    dx, dy = (s - nw) // 2, (s - nh) // 2
    lb = np.full((s, s, 3), 127.5, np.float32)
    lb[dy:dy + nh, dx:dx + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    blob = np.ascontiguousarray((lb / 255.0).transpose(2, 0, 1)[None]).astype(np.float32)
    if onnx_model:
        import onnxruntime
        sess = onnxruntime.InferenceSession(a.model, providers=["CPUExecutionProvider"])
        out = sess.run(None, {sess.get_inputs()[0].name: blob})[0][0].T  # [N, 4 + C]
        # In input pixels already; scores without objectness.
        rows = [(r[:4], r[4:]) for r in out]
    else:
        net = cv2.dnn.readNetFromDarknet(os.path.join(d, "yolov3-tiny.cfg"), os.path.join(d, "yolov3-tiny.weights"))
        net.setInput(blob)
        out = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()), 0)
        # Relative to the input side; OpenCV already multiplied the class scores by the
        # objectness.
        rows = [(r[:4] * s, r[5:]) for r in out]
    boxes, scores, classes = [], [], []
    for xywh, cls in rows:
        c = int(np.argmax(cls))
        score = float(cls[c])
        if score < a.conf:
            continue
        cx, cy, bw, bh = xywh
        x0, y0 = (cx - bw / 2 - dx) / r, (cy - bh / 2 - dy) / r
        boxes.append([float(x0), float(y0), float(bw / r), float(bh / r)])
        scores.append(score)
        classes.append(c)
    dets = []
    for c in sorted(set(classes)):
        idx = [i for i in range(len(boxes)) if classes[i] == c]
        keep = cv2.dnn.NMSBoxes([boxes[i] for i in idx], [scores[i] for i in idx], a.conf, a.nms)
        for k in np.array(keep).flatten():
            i = idx[int(k)]
            x, y, bw, bh = boxes[i]
            dets.append({"class": c, "name": names[c], "score": round(scores[i], 5),
                         "box": [round(x, 2), round(y, 2), round(x + bw, 2), round(y + bh, 2)]})
    dets.sort(key=lambda d: -d["score"])
    print(json.dumps({"size": s, "photo": [w, h], "detections": dets}, indent=1))


if __name__ == "__main__":
    main()
